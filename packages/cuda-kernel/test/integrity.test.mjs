// Checksums on the GPU: df11-sum64 computed on the device equals the CPU codec's; loading checks the
// stored tensors where they were uploaded and, with verifyWeights, each module's decoded weights right
// after its decode. Skipped, with the reason, without a GPU.
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import { checksumHex, encodeModule, moduleTensorBytes, syntheticWeights } from "../../codec/dist/index.js";
import { ChecksumMismatchError, loadCausalLM, readRecordedChecksums, writeSyntheticModel } from "../../models/dist/index.js";
import { readModelConfig, SafetensorsCollection } from "../../hub-loader/dist/index.js";
import { compressModel } from "../../cli/dist/index.js";
import { gpuTest } from "./gpu-helpers.mjs";
import { CudaBackend, CudaStream, DeviceBuffer, DeviceChecksum, DeviceModule, DeviceWeights, PinnedBuffer, deviceChecksumHex } from "../dist/index.js";

const work = mkdtempSync(join(tmpdir(), "df11-gpu-integrity-"));
after(() => rmSync(work, { recursive: true, force: true }));

const randomBytes = (n, seed) => {
  let s = seed >>> 0;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 24;
  return out;
};

gpuTest("df11-sum64 on the GPU equals the CPU codec's, for any length, and window sums add up", () => {
  for (const n of [0, 1, 2, 3, 4, 5, 15, 16, 17, 1000, 1003, 65_536 + 7, 5_000_001]) {
    const bytes = randomBytes(n, n + 3);
    const buf = DeviceBuffer.from(bytes.length ? bytes : new Uint8Array(16));
    assert.equal(deviceChecksumHex(buf.address, n), checksumHex(bytes), `${n} bytes`);
    buf.dispose();
  }
  // 300 MB, summed in windows into one accumulator (as verifyWeights does after each decode window).
  const big = randomBytes(300_000_000, 5);
  const buf = DeviceBuffer.from(big);
  const sum = new DeviceChecksum();
  const window = 64 * 1024 * 1024;
  for (let lo = 0; lo < big.length; lo += window) sum.add(buf.address + lo, Math.min(window, big.length - lo), lo / 4);
  assert.equal(sum.hex(), checksumHex(big));
  sum.dispose();
  buf.dispose();
});

gpuTest("DeviceModule.storedChecksums: the uploaded tensors sum to what the CPU sums of the stored bytes", () => {
  const parts = [syntheticWeights(1_000_003, 1), syntheticWeights(2_000_000, 2)];
  const { module } = encodeModule(parts);
  const gpu = DeviceModule.upload(module);
  const stored = moduleTensorBytes(module);
  const got = gpu.storedChecksums();
  gpu.dispose();
  for (const name of ["luts", "encoded_exponent", "sign_mantissa", "gaps"]) assert.equal(got[name], checksumHex(stored[name]), name);
});

/** A copy of `dir` with one bit of `tensor` flipped. */
function flipBit(dir, name, tensor, at = 33) {
  const out = join(work, name);
  cpSync(dir, out, { recursive: true });
  const file = join(out, "model.safetensors");
  const bytes = readFileSync(file);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString("utf8"));
  bytes[8 + n + header[tensor].data_offsets[0] + at] ^= 0x10;
  writeFileSync(file, bytes);
  return out;
}

gpuTest("loading on the GPU checks stored tensors by default, and decoded weights with verifyWeights; corruption is named", async () => {
  const bf16 = join(work, "bf16");
  await writeSyntheticModel(bf16, { vocab: 1000, hidden: 256, intermediate: 512, layers: 2, heads: 4, kvHeads: 2 }, { seed: 4 });
  const df11 = join(work, "df11");
  await compressModel(bf16, df11, { threads: 2 });

  const clean = await CudaBackend.load(df11, { verifyWeights: true });
  assert.equal(clean.loadChecks.decodedModules, 4);
  assert.equal(clean.loadChecks.storedTensors, 4 * 6 + 5); // 4 modules × 6 tensors + 5 norms
  clean.dispose();

  const flipped = flipBit(df11, "flipped", "model.layers.1.sign_mantissa");
  await assert.rejects(CudaBackend.load(flipped), (e) => e instanceof ChecksumMismatchError && /model\.layers\.1\.sign_mantissa: checksum/.test(e.message));
  // Skipping the stored check, the weights check still sees it (the flipped byte changes a weight).
  await assert.rejects(CudaBackend.load(flipped, { checkStored: false, verifyWeights: true }), /model\.layers\.1: its decoded weights have checksum/);
  // Through the public loader too.
  await assert.rejects(loadCausalLM(flipped, { device: "cuda" }), /model\.layers\.1\.sign_mantissa/);

  const flippedBf16 = flipBit(join(work, "bf16"), "flipped-bf16-copy", "model.layers.0.mlp.up_proj.weight");
  (await CudaBackend.load(flippedBf16)).dispose(); // a BF16 model from elsewhere records nothing: nothing to check
});

gpuTest("files streamed through a ring of tiny pinned chunks (4 KiB × 2: hundreds of pieces, each chunk reused behind its copy) land byte for byte, every layout; corruption still named, nothing left hanging", async () => {
  const bf16 = join(work, "bf16-staging");
  await writeSyntheticModel(bf16, { vocab: 1000, hidden: 256, intermediate: 512, layers: 2, heads: 4, kvHeads: 2 }, { seed: 9 });
  const df11 = join(work, "df11-staging");
  await compressModel(bf16, df11, { threads: 2 });
  const staging = { chunkBytes: 4096, chunks: 2, readsPerChunk: 2 };
  const load = async (dir, layout) => {
    const config = await readModelConfig(dir);
    const files = await SafetensorsCollection.openDirectory(dir);
    try {
      const patternDict = config.dfloat11_config?.pattern_dict;
      const checks = { recorded: readRecordedChecksums(files), stored: true, weights: !!patternDict };
      const w = await DeviceWeights.load(files, patternDict, { layout, config, checks, staging });
      return w;
    } finally {
      await files.close();
    }
  };
  for (const layout of ["huffman", "fused", "bf16"]) {
    const w = await load(df11, layout);
    // Stored tensors were summed on the device where they landed, decoded weights after each module.
    assert.equal(w.checks.storedTensors, 4 * 6 + 5, layout);
    assert.equal(w.checks.decodedModules, 4, layout);
    w.dispose();
  }
  // The BF16 checkpoint (which records no checksums) streamed the same way, kept BF16 and fused: every matrix read back
  // from the device (BF16 rows, or the fused layout unpacked) equals the file's bytes.
  const files = await SafetensorsCollection.openDirectory(bf16);
  const stream = new CudaStream();
  try {
    for (const layout of ["bf16", "fused"]) {
      const w = await load(bf16, layout);
      let checked = 0;
      for (const name of files.names().filter((n) => files.info(n).shape.length === 2 && w.has(n))) {
        const { matrix, firstRow, rows } = w.matrix(name);
        const bytes = rows * matrix.cols * 2;
        const host = PinnedBuffer.alloc(bytes);
        const scratch = DeviceBuffer.alloc(bytes + 64);
        try {
          const at = matrix.address !== undefined ? matrix.address + firstRow * matrix.cols * 2 : matrix.decodeRows?.(firstRow, firstRow + rows, scratch.address, stream);
          if (at === undefined) continue;
          host.copyFromDevice(0, at, bytes, stream);
          stream.synchronize();
          assert.ok(Buffer.from(host.bytes.subarray(0, bytes)).equals(Buffer.from(await files.read(name))), `${layout}: ${name} differs from the file`);
          checked++;
        } finally {
          host.dispose();
          scratch.dispose();
        }
      }
      assert.ok(checked >= 2 * 7, `${layout}: only ${checked} matrices read back`);
      w.dispose();
    }
  } finally {
    stream.dispose();
    await files.close();
  }
  const flipped = flipBit(df11, "flipped-staging", "model.layers.0.encoded_exponent");
  await assert.rejects(load(flipped, "fused"), (e) => e instanceof ChecksumMismatchError && /model\.layers\.0\.encoded_exponent: checksum/.test(e.message));
});

gpuTest("a read failing in one half of a pinned chunk while the other half is slow: the load fails naming the tensor, and no read lands in the ring after it is freed", async () => {
  // embed_tokens (32 MiB) is one 32 MiB chunk, read as two 16 MiB halves at once; the second fails at once (EIO),
  // the first takes 300 ms. Before readInto waited for both, the ring was freed under the first (a write into freed
  // pinned memory: a crash, or `late` > 0).
  const dir = join(work, "bf16-read-error");
  await writeSyntheticModel(dir, { vocab: 32768, hidden: 512, intermediate: 1024, layers: 1, heads: 8, kvHeads: 4 }, { seed: 5 });
  const config = await readModelConfig(dir);
  const files = await SafetensorsCollection.openDirectory(dir);
  try {
    const name = "model.embed_tokens.weight";
    const info = files.info(name);
    assert.ok(info.byteLength >= 32 << 20, `${name}: ${info.byteLength} bytes`);
    const handle = info.file.handle; // the file's FileHandle (private in TypeScript)
    const real = handle.read.bind(handle);
    let settled = false;
    let late = 0;
    handle.read = async (buffer, offset, length, position) => {
      const at = position - info.fileOffset;
      if (at >= 16 << 20 && at < 32 << 20) throw Object.assign(new Error("EIO: i/o error, read"), { code: "EIO" });
      if (at >= 0 && at < 16 << 20) await new Promise((r) => setTimeout(r, 300));
      const result = await real(buffer, offset, length, position);
      if (settled) late++;
      return result;
    };
    await assert.rejects(DeviceWeights.load(files, undefined, { layout: "bf16", config }), (e) => {
      settled = true;
      return /model\.embed_tokens\.weight/.test(e.message) && /EIO/.test(e.message);
    });
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(late, 0, "a read finished into a pinned chunk after the load had freed the ring");
  } finally {
    await files.close();
  }
});
