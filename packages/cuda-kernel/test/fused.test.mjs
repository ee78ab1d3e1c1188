// GPU tests of the DF11 fused layout: the GPU transcoder writes exactly the bytes of the reference
// encoder (@df11/codec encodeFusedMatrix), the layout round-trips ≥ 200 M realistic weights and crafted
// ones bit for bit, and the fused GEMV gives bit-identical outputs to the BF16 GEMV on the same weights
// for every batch of 1…64 rows, slices, bias and accumulation; the fused GEMM inside the Hopper kernel is
// bit-identical to the BF16 GEMM for 65…700 rows. Skipped, each with the reason, without a GPU.
import assert from "node:assert/strict";
import { encodeFusedMatrix, mergeBF16, mulberry32, syntheticWeights } from "../../codec/dist/index.js";
import { gpuTest } from "./gpu-helpers.mjs";
import { CudaStream, currentDevice, DeviceBuffer, devices, FusedDeviceMatrix, nativeAddon } from "../dist/index.js";

/** Runs `fn` with `own(x)` registering x for dispose() when fn ends (Node 20 has no `using` in JavaScript). */
function withDisposables(fn) {
  const bag = [];
  try {
    return fn((x) => (bag.push(x), x));
  } finally {
    for (const x of bag.reverse()) x.dispose();
  }
}

const sameBytes = (a, b) => a.byteLength === b.byteLength && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/** Uploads BF16 bits and transcodes them on the GPU in windows of `windowRows` rows. */
function transcode(bits, rows, cols, stream, windowRows = Math.ceil(rows / 8) * 8) {
  const src = DeviceBuffer.from(bits);
  try {
    const m = FusedDeviceMatrix.transcode(rows, cols, { windowRows, fill: (r0) => src.address + r0 * cols * 2 }, stream);
    stream.synchronize();
    return m;
  } finally {
    src.dispose();
  }
}

/** Crafted rows: every exponent value, more than 32 escapes per step, NaN/±Inf/−0/denormals, one exponent only. */
function crafted(cols) {
  const rand = mulberry32(3);
  const w = new Uint16Array(4 * cols);
  const specials = [0x7fc0, 0xffc1, 0x7f81, 0x7f80, 0xff80, 0x8000, 0x0000, 0x0001, 0x807f, 0x0040, 0x3f80, 0xbf80];
  for (let k = 0; k < cols; k++) {
    w[k] = mergeBF16((k * 37) % 256, Math.floor(rand() * 256));
    w[cols + k] = specials[Math.floor(rand() * specials.length)];
    w[2 * cols + k] = mergeBF16(120, Math.floor(rand() * 256));
    w[3 * cols + k] = mergeBF16(rand() < 0.5 ? 118 + Math.floor(rand() * 5) : Math.floor(rand() * 256), Math.floor(rand() * 256));
  }
  return w;
}

/**
 * Realistic [N, K] weights for the product tests, with escapes of many kinds in the first two rows too
 * (crafted rows, exponents clamped to 130: no overflow in the products).
 */
function productWeights(N, K) {
  const bits = syntheticWeights(N * K, N + K, 0.5 / Math.sqrt(K));
  bits.set(crafted(K).subarray(0, 2 * K), 0);
  for (let i = 0; i < 2 * K; i++) {
    const e = (bits[i] >> 7) & 0xff;
    if (e > 130) bits[i] = mergeBF16(130 - (e % 9), ((bits[i] >> 8) & 0x80) | (bits[i] & 0x7f));
  }
  return bits;
}

gpuTest("GPU transcoding writes exactly the reference encoder's fused layout (realistic, crafted, unaligned shapes, windows)", () => withDisposables((own) => {
  const stream = own(new CudaStream());
  const cases = [
    ["realistic 300×4096", syntheticWeights(300 * 4096, 1, 0.5 / 64), 300, 4096, 40],
    ["realistic 23×14344", syntheticWeights(23 * 14344, 2, 0.5 / 120), 23, 14344, 8],
    ["realistic 9×344", syntheticWeights(9 * 344, 3), 9, 344, 16],
    ["crafted 4×3072", crafted(3072), 4, 3072, 8],
    ["crafted 4×1000", crafted(1000), 4, 1000, 8],
  ];
  for (const [label, bits, rows, cols, windowRows] of cases) {
    const expected = encodeFusedMatrix(bits, rows, cols);
    const m = own(transcode(bits, rows, cols, stream, windowRows));
    const got = m.toHost();
    for (const key of ["data", "tables", "escapeOffsets", "escapePositions", "escapeExponents"]) {
      assert.ok(sameBytes(got[key], expected[key]), `${label}: ${key} differs from the reference encoder's`);
    }
  }
}));

gpuTest("the fused layout round-trips 256 M realistic weights and crafted ones bit for bit on the GPU (transcode, unpack, gather rows)", () => withDisposables((own) => {
  const stream = own(new CudaStream());
  const addon = nativeAddon();
  // 8 matrices of 32 Mi weights with the spreads of a Llama-3.1-8B layer's fan-ins.
  let total = 0;
  for (let i = 0; i < 8; i++) {
    const cols = [4096, 4096, 14336, 4096, 8192, 4096, 14336, 4096][i];
    const rows = Math.floor((32 * 1024 * 1024) / cols);
    const bits = syntheticWeights(rows * cols, 100 + i, 0.5 / Math.sqrt(cols));
    const m = own(transcode(bits, rows, cols, stream, 1000 - (1000 % 8)));
    const back = own(DeviceBuffer.alloc(rows * cols * 2));
    back.fill(0xff);
    m.decodeRows(0, rows, back.address, stream);
    stream.synchronize();
    assert.ok(sameBytes(back.download(new Uint16Array(rows * cols)), bits), `matrix ${i} (${rows}×${cols}) did not round-trip`);
    total += rows * cols;
  }
  assert.ok(total >= 200e6, `${total} weights`);
  // Crafted, and rows gathered by device ids (the embedding lookup).
  const cols = 3072;
  const bits = crafted(cols);
  const m = own(transcode(bits, 4, cols, stream));
  const ids = DeviceBuffer.from(new Int32Array([3, 0, 2, 1, 3]));
  const out = own(DeviceBuffer.alloc(5 * cols * 2));
  try {
    m.gatherRows(ids.address, 5, out.address, stream);
    stream.synchronize();
    const got = out.download(new Uint16Array(5 * cols));
    [3, 0, 2, 1, 3].forEach((r, i) => assert.ok(sameBytes(got.subarray(i * cols, (i + 1) * cols), bits.subarray(r * cols, (r + 1) * cols)), `gathered row ${r}`));
  } finally {
    ids.dispose();
  }
  addon.synchronize();
}));

gpuTest("the fused GEMV is bit-identical to the BF16 GEMV: rows 1…64, slices, bias, accumulate, N and K aligned and not; both the same bits from x's BF16 copy", () => withDisposables((own) => {
  const stream = own(new CudaStream());
  const addon = nativeAddon();
  for (const [N, K] of [
    [1003, 4096],
    [257, 1032],
    [61, 344],
    [4096, 14336],
  ]) {
    const bits = productWeights(N, K);
    const m = own(transcode(bits, N, K, stream, 96));
    const w = own(DeviceBuffer.from(bits));
    const rand = mulberry32(K);
    const x = own(DeviceBuffer.from(Float32Array.from({ length: 64 * K }, () => rand() * 2 - 1)));
    const xb = own(DeviceBuffer.alloc(64 * K * 2));
    const bias = own(DeviceBuffer.from(Float32Array.from({ length: N }, () => rand() - 0.5)));
    const start = Float32Array.from({ length: 64 * N }, () => rand());
    const a = own(DeviceBuffer.alloc(64 * N * 4));
    const b = own(DeviceBuffer.alloc(64 * N * 4));
    for (const rows of [1, 2, 3, 5, 8, 9, 13, 16, 17, 31, 33, 64]) {
      for (const [r0, r1, withBias, accumulate] of [
        [0, N, false, false],
        [8, N - 3, true, true],
      ]) {
        const n = r1 - r0;
        for (const out of [a, b]) accumulate ? out.upload(start) : out.fill(0xff);
        addon.linear(w.address + r0 * K * 2, n, K, x.address, K, rows, withBias ? bias.address : 0, a.address, N, accumulate, 0, stream.native, 0, 0, false);
        m.gemv({ rowBegin: r0, rowEnd: r1, x: x.address, ldx: K, rows, bias: withBias ? bias.address : 0, out: b.address, ldo: N, accumulate, stream });
        stream.synchronize();
        const ga = a.download(new Float32Array(64 * N));
        const gb = b.download(new Float32Array(64 * N));
        const bad = ga.findIndex((v, i) => !Object.is(v, gb[i]));
        assert.equal(bad, -1, `[${N}, ${K}] rows ${rows}, slice ${r0}…${r1}: output ${bad} is ${gb[bad]}, BF16 gives ${ga[bad]}`);
        assert.ok(ga.subarray(0, rows * N).every((v, i) => i % N >= n || Number.isFinite(v)), "every output written");
        if (rows > 8) {
          // x's BF16 copy (read instead of x above 8 rows, as the backend passes it): the same bits, both layouts.
          addon.toBf16(x.address, rows * K, xb.address, stream.native);
          for (const layout of ["bf16", "fused"]) {
            accumulate ? b.upload(start) : b.fill(0xff);
            if (layout === "bf16") addon.linear(w.address + r0 * K * 2, n, K, x.address, K, rows, withBias ? bias.address : 0, b.address, N, accumulate, xb.address, stream.native, 0, 0, false, true);
            else m.gemv({ rowBegin: r0, rowEnd: r1, x: x.address, ldx: K, rows, xBf16: xb.address, bias: withBias ? bias.address : 0, out: b.address, ldo: N, accumulate, stream });
            stream.synchronize();
            const gx = b.download(new Float32Array(64 * N));
            const diff = ga.findIndex((v, i) => !Object.is(v, gx[i]));
            assert.equal(diff, -1, `[${N}, ${K}] rows ${rows}, ${layout} from x's BF16 copy: output ${diff} is ${gx[diff]}, from x ${ga[diff]}`);
          }
        }
      }
    }
  }
}));

// gemv.cu: the fused layout at 9…16 rows multiplies two groups per warp on matrices of at least 5 groups
// per SM (kTwoGroupsMinGroupsPerSm), and both layouts do at 17…32 rows; an odd group count clamps the
// last pair. Sized from this GPU's SM count so that those kernels run.
gpuTest("the fused GEMV with two groups per warp (a matrix of ≥ 5 groups per SM, an odd group count): bit-identical to the BF16 GEMV at 9…32 rows, and each row equal to that row multiplied alone", () => withDisposables((own) => {
  const stream = own(new CudaStream());
  const addon = nativeAddon();
  const sms = devices()[currentDevice()].multiprocessors;
  const N = 8 * (5 * sms + 1) + 3; // 5·SMs + 2 groups (the last one partial), N − 8: 5·SMs + 1; one of the two counts is odd (the last pair clamped)
  for (const [n, K] of [[N, 4096], [N - 8, 776]]) {
    const bits = productWeights(n, K);
    const m = own(transcode(bits, n, K, stream, 1024));
    const w = own(DeviceBuffer.from(bits));
    const rand = mulberry32(n + K);
    const x = own(DeviceBuffer.from(Float32Array.from({ length: 32 * K }, () => rand() * 2 - 1)));
    const xb = own(DeviceBuffer.alloc(32 * K * 2));
    const a = own(DeviceBuffer.alloc(32 * n * 4));
    const b = own(DeviceBuffer.alloc(32 * n * 4));
    const one = own(DeviceBuffer.alloc(n * 4));
    for (const rows of [9, 12, 16, 17, 24, 32]) {
      addon.toBf16(x.address, rows * K, xb.address, stream.native);
      addon.linear(w.address, n, K, x.address, K, rows, 0, a.address, n, false, xb.address, stream.native, 0, 0, false, true);
      m.gemv({ rowBegin: 0, rowEnd: n, x: x.address, ldx: K, rows, xBf16: xb.address, bias: 0, out: b.address, ldo: n, accumulate: false, stream });
      stream.synchronize();
      const ga = a.download(new Float32Array(rows * n));
      const gb = b.download(new Float32Array(rows * n));
      const bad = ga.findIndex((v, i) => !Object.is(v, gb[i]));
      assert.equal(bad, -1, `[${n}, ${K}] rows ${rows}: fused output ${bad} is ${gb[bad]}, BF16 gives ${ga[bad]}`);
      assert.ok(gb.every(Number.isFinite), "every output written");
      // Batch invariance: rows 0, middle and last, each multiplied alone (the one-row kernel, one group per warp).
      for (const r of [0, rows >> 1, rows - 1]) {
        m.gemv({ rowBegin: 0, rowEnd: n, x: x.address + r * K * 4, ldx: K, rows: 1, bias: 0, out: one.address, ldo: n, accumulate: false, stream });
        stream.synchronize();
        const alone = one.download(new Float32Array(n));
        const diff = alone.findIndex((v, i) => !Object.is(v, gb[r * n + i]));
        assert.equal(diff, -1, `[${n}, ${K}] rows ${rows}: row ${r}'s output ${diff} is ${gb[r * n + diff]} in the batch, ${alone[diff]} alone`);
      }
    }
  }
}));

gpuTest("the fused GEMM (tiles decoded inside the Hopper kernel) is bit-identical to the BF16 GEMM: rows 65…700, K splits, slices, bias, accumulate, N and K aligned and not, three quarters of a matrix's weights escaped", () => withDisposables((own) => {
  const stream = own(new CudaStream());
  const addon = nativeAddon();
  if (!addon.setGemmVariant("auto")) {
    // Not a Hopper device (or no sm_90a code in this build): the fused GEMM declines, DF11 decodes windows.
    const bits = syntheticWeights(64 * 256, 1);
    const m = own(transcode(bits, 64, 256, stream));
    const ws = own(DeviceBuffer.alloc(1 << 20));
    const xb = own(DeviceBuffer.alloc(128 * 256 * 2));
    const out = own(DeviceBuffer.alloc(128 * 64 * 4));
    assert.equal(m.gemm({ rowBegin: 0, rowEnd: 64, xBf16: xb.address, rows: 128, bias: 0, out: out.address, ldo: 64, accumulate: false, workspace: ws.address, workspaceBytes: ws.byteLength, stream }), false);
    console.log("no Hopper GEMM on this device: checked that the fused GEMM declines");
    return;
  }
  const workspace = own(DeviceBuffer.alloc(64 * 1024 * 1024));
  addon.setFusedGemm("always"); // every size (auto leaves more than 128 rows to windows)
  const cases = [
    [1003, 4096, [65, 128, 200, 700]],
    [257, 1032, [65, 129, 512]],
    [61, 344, [100, 300]],
    [4096, 14336, [128, 512]],
    [130, 264, [96, 600]],  // every weight escaped (below)
  ];
  for (const [N, K, rowCounts] of cases) {
    let bits;
    if (K === 264) {
      const rand = mulberry32(5);
      bits = new Uint16Array(N * K);
      // Exponents 100…130 in turn: 31 equally common per row, so 23 in 31 weights are escapes (tiles of more than 64).
      for (let i = 0; i < bits.length; i++) bits[i] = mergeBF16(100 + ((i * 7) % 31), Math.floor(rand() * 256));
    } else {
      bits = productWeights(N, K);
    }
    const m = own(transcode(bits, N, K, stream, 96));
    const w = own(DeviceBuffer.from(bits));
    const maxRows = Math.max(...rowCounts);
    const rand = mulberry32(K + 1);
    const x = own(DeviceBuffer.from(Float32Array.from({ length: maxRows * K }, () => rand() * 2 - 1)));
    const xb = own(DeviceBuffer.alloc(maxRows * K * 2));
    const bias = own(DeviceBuffer.from(Float32Array.from({ length: N }, () => rand() - 0.5)));
    const start = Float32Array.from({ length: maxRows * N }, () => rand());
    const a = own(DeviceBuffer.alloc(maxRows * N * 4));
    const b = own(DeviceBuffer.alloc(maxRows * N * 4));
    for (const rows of rowCounts) {
      addon.toBf16(x.address, rows * K, xb.address, stream.native);
      for (const [r0, r1, withBias, accumulate] of [
        [0, N, false, false],
        [8, N - 3, true, true],
      ]) {
        const n = r1 - r0;
        for (const out of [a, b]) accumulate ? out.upload(start) : out.fill(0xff);
        addon.linear(w.address + r0 * K * 2, n, K, x.address, K, rows, withBias ? bias.address : 0, a.address, N, accumulate, xb.address, stream.native, workspace.address, workspace.byteLength, true);
        const ran = m.gemm({ rowBegin: r0, rowEnd: r1, xBf16: xb.address, rows, bias: withBias ? bias.address : 0, out: b.address, ldo: N, accumulate, workspace: workspace.address, workspaceBytes: workspace.byteLength, stream });
        assert.ok(ran, "the fused GEMM runs on a Hopper device");
        stream.synchronize();
        const ga = a.download(new Float32Array(maxRows * N));
        const gb = b.download(new Float32Array(maxRows * N));
        const bad = ga.findIndex((v, i) => !Object.is(v, gb[i]));
        assert.equal(bad, -1, `[${N}, ${K}] rows ${rows}, slice ${r0}…${r1}: output ${bad} is ${gb[bad]}, BF16 gives ${ga[bad]}`);
        assert.ok(gb.subarray(0, rows * N).every((v, i) => i % N >= n || Number.isFinite(v)), "every output written and finite");
      }
    }
  }
  // Where the BF16 path would not take the Hopper kernel, neither does the fused one (DF11 = BF16 holds);
  // auto leaves more than 128 rows to windows.
  const small = own(transcode(syntheticWeights(64 * 256, 2), 64, 256, stream));
  const call = { rowBegin: 0, rowEnd: 64, xBf16: workspace.address, rows: 128, bias: 0, out: workspace.address + (1 << 20), ldo: 64, accumulate: false, workspace: workspace.address + (2 << 20), workspaceBytes: 1 << 20, stream };
  try {
    addon.setGemmVariant("mma");
    assert.equal(small.gemm(call), false, "DF11_GEMM=mma: the fused GEMM declines");
    addon.setGemmVariant("auto");
    addon.setFusedGemm("off");
    assert.equal(small.gemm(call), false, "setFusedGemm(off): declines");
    addon.setFusedGemm("auto");
    assert.equal(small.gemm({ ...call, rows: 129 }), false, "auto: more than 128 rows decline");
    assert.equal(small.gemm({ ...call, rows: 128 }), true, "auto: 128 rows run");
    assert.equal(small.gemm({ ...call, rowBegin: 4 }), false, "a slice that does not start on a group of 8 rows: declines");
    assert.throws(() => addon.setFusedGemm("sometimes"), TypeError);
  } finally {
    addon.setGemmVariant("auto");
    addon.setFusedGemm("auto");
  }
  stream.synchronize();
}));
