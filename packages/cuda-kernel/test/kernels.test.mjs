// GPU tests of single inference kernels against float64 references on random data: GEMV (1…8 rows),
// tensor-core GEMM (more rows), the float32 fallback (odd K), windowed and row-wise DF11 decode, argmax.
// Skipped, each with the reason, without a GPU.
import assert from "node:assert/strict";
import { encodeModule, mulberry32, syntheticWeights } from "../../codec/dist/index.js";
import { fromBf16, gpuTest, relError, toBf16 } from "./gpu-helpers.mjs";
import { DeviceBuffer, DeviceModule, nativeAddon, synchronize } from "../dist/index.js";


function randomLinear(N, K, rows, seed) {
  const rand = mulberry32(seed);
  const w = new Uint16Array(N * K);
  for (let i = 0; i < w.length; i++) w[i] = toBf16((rand() * 2 - 1) / Math.sqrt(K));
  const x = Float32Array.from({ length: rows * K }, () => rand() * 4 - 2);
  const bias = Float32Array.from({ length: N }, () => rand() - 0.5);
  const start = Float32Array.from({ length: rows * N }, () => rand());
  return { w, x, bias, start };
}


function runLinear({ N, K, rows, accumulate, withBias }, seed) {
  const addon = nativeAddon();
  const { w, x, bias, start } = randomLinear(N, K, rows, seed);
  const gemm = rows > 64;
  const bufs = [DeviceBuffer.from(w), DeviceBuffer.from(x), DeviceBuffer.from(bias), DeviceBuffer.alloc(rows * N * 4), DeviceBuffer.alloc(rows * K * 2 + 16), DeviceBuffer.alloc(32 << 20)];
  const [dw, dx, db, dout, dxb, workspace] = bufs;
  try {
    if (accumulate) dout.upload(start);
    else dout.fill(0xff); // NaN: every output must be written
    if (gemm) addon.toBf16(dx.address, rows * K, dxb.address);
    addon.linear(dw.address, N, K, dx.address, K, rows, withBias ? db.address : 0, dout.address, N, accumulate, dxb.address, undefined, workspace.address, workspace.byteLength, gemm);
    synchronize();
    const got = dout.download(new Float32Array(rows * N));
    // The tensor cores (GEMV up to 64 rows, GEMM beyond) multiply BF16-rounded activations when K suits
    // them (K % 8 == 0); the float32 fallbacks use x as it is.
    const tensorCores = K % 8 === 0;
    const expected = new Float64Array(rows * N);
    for (let r = 0; r < rows; r++) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += (tensorCores ? fromBf16(toBf16(x[r * K + k])) : x[r * K + k]) * fromBf16(w[n * K + k]);
        expected[r * N + n] = s + (withBias ? bias[n] : 0) + (accumulate ? start[r * N + n] : 0);
      }
    }
    return relError(got, expected);
  } finally {
    for (const b of bufs) b.dispose();
  }
}

gpuTest("linear: GEMV (1…64 rows), tensor-core GEMM and the float32 fallbacks match float64 on random data", () => {
  const shapes = [
    { N: 1, K: 8, rows: 1 },
    { N: 77, K: 264, rows: 3, withBias: true },
    { N: 300, K: 4096, rows: 8, accumulate: true },
    { N: 4099, K: 512, rows: 1 },
    { N: 33, K: 100, rows: 2, withBias: true },
    { N: 130, K: 1000, rows: 9 },
    { N: 1000, K: 2048, rows: 16, withBias: true },
    { N: 300, K: 512, rows: 17 },
    { N: 257, K: 136, rows: 130, withBias: true, accumulate: true },
    { N: 640, K: 2048, rows: 512 },
    { N: 1024, K: 14336, rows: 64, withBias: true, accumulate: true }, // split over K (few row tiles)
    { N: 1000, K: 4096, rows: 40 },
    { N: 33, K: 100, rows: 20 },
    { N: 4096, K: 14336, rows: 1 },
    { N: 6144, K: 4096, rows: 33, withBias: true },
    { N: 517, K: 1032, rows: 12, accumulate: true },
  ];
  shapes.forEach((shape, i) => {
    const err = runLinear(shape, 100 + i);
    console.log(`# linear ${JSON.stringify(shape)}: relative error ${err.toExponential(2)}`);
    // float32 sums in a different order than float64's (the tensor cores add 16 products at a time): ~1e-7
    // per term, growing with K; a wrong index or a missed term is orders of magnitude more.
    assert.ok(err < 1e-5, `${JSON.stringify(shape)}: relative error ${err}`);
  });
});

gpuTest("decodeRange decodes any 8-aligned window exactly; decodeRows picks rows chosen on the device", () => {
  const rand = mulberry32(7);
  const cols = 4096;
  const rowsTotal = 300;
  const weights = syntheticWeights(rowsTotal * cols, 21, 0.02);
  const { module } = encodeModule([weights]);
  const gpu = DeviceModule.upload(module);
  const out = DeviceBuffer.alloc(rowsTotal * cols * 2 + 64);
  try {
    for (let t = 0; t < 40; t++) {
      const lo = Math.floor((rand() * rowsTotal * cols) / 8) * 8;
      const hi = Math.min(rowsTotal * cols, lo + 1 + Math.floor(rand() * 200_000));
      out.fill(0xee);
      gpu.decodeRange(out.address, lo, hi);
      const got = out.download(new Uint16Array(hi - lo + 8));
      const bad = weights.subarray(lo, hi).findIndex((v, i) => v !== got[i]);
      assert.equal(bad, -1, `window [${lo}, ${hi}): first mismatch at ${bad}`);
      assert.equal(got[hi - lo], 0xeeee, `window [${lo}, ${hi}) wrote past its end`);
    }
    const ids = Int32Array.from([0, 299, 17, 17, 150, 1]);
    const idBuf = DeviceBuffer.from(ids);
    try {
      gpu.decodeRows(idBuf.address, ids.length, cols, out.address);
      const got = out.download(new Uint16Array(ids.length * cols));
      ids.forEach((id, r) => assert.deepEqual(got.subarray(r * cols, (r + 1) * cols), weights.subarray(id * cols, (id + 1) * cols), `row ${r} (id ${id})`));
    } finally {
      idBuf.dispose();
    }
    assert.throws(() => gpu.decodeRange(out.address, 3, 100), /multiple of 8/);
    assert.throws(() => gpu.decodeRange(out.address, 0, rowsTotal * cols + 1), /outside the module/);
  } finally {
    gpu.dispose();
    out.dispose();
  }
});

gpuTest("argmax takes the first of equal maxima, per row", () => {
  const addon = nativeAddon();
  const rows = 3;
  const n = 128_256;
  const x = new Float32Array(rows * n).map((_, i) => Math.sin(i));
  x[5] = 7;
  x[n + 9] = 7;
  x[n + 100_000] = 7;
  x[2 * n + n - 1] = 9;
  const dx = DeviceBuffer.from(x);
  const out = DeviceBuffer.alloc(rows * 4);
  try {
    addon.argmax(dx.address, rows, n, out.address);
    assert.deepEqual([...out.download(new Int32Array(rows))], [5, 9, n - 1]);
  } finally {
    dx.dispose();
    out.dispose();
  }
});

// ---- The GEMM's kernels: the Hopper one (wgmma + TMA, compute capability 9.0) and mma.sync ----------

/** out (+)= x·Wᵀ + bias through linear(…, gemm = true) with the GEMM kernel `variant`; out has row stride ldo. */
function gemmOnDevice({ N, K, rows, ldo = N, accumulate = false, withBias = false, workspaceBytes = 32 << 20 }, data, variant, columns = [[0, N]]) {
  const addon = nativeAddon();
  const { w, x, bias, start } = data;
  const bufs = [DeviceBuffer.from(w), DeviceBuffer.from(x), DeviceBuffer.from(bias), DeviceBuffer.alloc(rows * ldo * 4), DeviceBuffer.alloc(rows * K * 2 + 16), DeviceBuffer.alloc(Math.max(workspaceBytes, 16))];
  const [dw, dx, db, dout, dxb, workspace] = bufs;
  try {
    addon.setGemmVariant(variant);
    if (accumulate) {
      const s = new Float32Array(rows * ldo).fill(NaN);
      for (let r = 0; r < rows; r++) for (let n = 0; n < N; n++) s[r * ldo + n] = start[r * N + n];
      dout.upload(s);
    } else dout.fill(0xff); // NaN: every output must be written
    addon.toBf16(dx.address, rows * K, dxb.address);
    // Column ranges of W as separate products (DF11 windows): must give the same bits as one product.
    for (const [c0, c1] of columns)
      addon.linear(dw.address + c0 * K * 2, c1 - c0, K, dx.address, K, rows, withBias ? db.address + c0 * 4 : 0, dout.address + c0 * 4, ldo, accumulate, dxb.address, undefined, workspace.address, workspaceBytes, true);
    synchronize();
    const all = dout.download(new Float32Array(rows * ldo));
    for (let r = 0; r < rows; r++) for (let n = N; n < ldo; n++) if (!Number.isNaN(all[r * ldo + n])) throw new Error(`wrote past N at row ${r}, column ${n}`);
    const got = new Float32Array(rows * N);
    for (let r = 0; r < rows; r++) got.set(all.subarray(r * ldo, r * ldo + N), r * N);
    return got;
  } finally {
    addon.setGemmVariant("auto");
    for (const b of bufs) b.dispose();
  }
}

/** float64 reference of the GEMM (BF16-rounded x) at the given output indices (all when omitted). */
function gemmReference({ N, K, rows, accumulate = false, withBias = false }, { w, x, bias, start }, indices) {
  const at = indices ?? Array.from({ length: rows * N }, (_, i) => i);
  const xr = new Float64Array(K);
  const wf = indices ? undefined : Float32Array.from(w, fromBf16); // whole products: W converted once
  let lastRow = -1;
  return Float64Array.from(at, (i) => {
    const r = Math.floor(i / N);
    const n = i % N;
    if (r !== lastRow) {
      for (let k = 0; k < K; k++) xr[k] = fromBf16(toBf16(x[r * K + k]));
      lastRow = r;
    }
    let s = 0;
    if (wf) for (let k = 0; k < K; k++) s += xr[k] * wf[n * K + k];
    else for (let k = 0; k < K; k++) s += xr[k] * fromBf16(w[n * K + k]);
    return s + (withBias ? bias[n] : 0) + (accumulate ? start[i] : 0);
  });
}

const hopperGemm = () => {
  const on = nativeAddon().setGemmVariant("sm90");
  nativeAddon().setGemmVariant("auto");
  return on;
};

gpuTest("GEMM: the Hopper kernel (wgmma + TMA) and mma.sync match float64 at the edges (ragged M, N; K = 8·odd, K < 64; bias, accumulate, ldo > N; split K)", () => {
  const shapes = [
    { N: 1, K: 8, rows: 1 },
    { N: 77, K: 24, rows: 65, withBias: true },
    { N: 257, K: 136, rows: 130, withBias: true, accumulate: true },
    { N: 300, K: 520, rows: 200, ldo: 333, accumulate: true },
    { N: 129, K: 4104, rows: 1, withBias: true }, // split over K
    { N: 700, K: 2048, rows: 70, withBias: true, workspaceBytes: 4 * 4 * 70 * 256 }, // split, columns in workspace-sized pieces
    { N: 1000, K: 2056, rows: 257, ldo: 1002, withBias: true },
    { N: 513, K: 1032, rows: 1030, accumulate: true }, // 9 row tiles: 256-column tiles
  ];
  const variants = hopperGemm() ? ["sm90", "sm90-128", "sm90-256", "mma"] : ["mma"];
  if (variants.length === 1) console.log("# no Hopper GEMM on this device: mma.sync only");
  shapes.forEach((shape, i) => {
    const data = randomLinear(shape.N, shape.K, shape.rows, 300 + i);
    const expected = gemmReference(shape, data);
    for (const v of variants) {
      const err = relError(gemmOnDevice(shape, data, v), expected);
      console.log(`# gemm ${v} ${JSON.stringify(shape)}: relative error ${err.toExponential(2)}`);
      assert.ok(err < 1e-5, `${v} ${JSON.stringify(shape)}: relative error ${err}`);
    }
  });
});

gpuTest("GEMM on the 8B shapes at 512 rows: Hopper kernel = mma.sync within float32 rounding, deterministic, and windows of W's rows and both column tiles give the same bits", () => {
  if (!hopperGemm()) return void console.log("# no Hopper GEMM on this device: nothing to compare");
  const shapes = [
    { N: 6144, K: 4096, rows: 512, withBias: true },
    { N: 4096, K: 4096, rows: 512, accumulate: true },
    { N: 1024, K: 4096, rows: 512 },
    { N: 28672, K: 4096, rows: 512 },
    { N: 4096, K: 14336, rows: 512, accumulate: true },
    { N: 4096, K: 4096, rows: 100 }, // split over K
    { N: 4096, K: 4096, rows: 2048 }, // 256-column tiles
  ];
  const rand = mulberry32(5);
  shapes.forEach((shape, i) => {
    const data = randomLinear(shape.N, shape.K, shape.rows, 400 + i);
    const mma = gemmOnDevice(shape, data, "mma");
    const sm90 = gemmOnDevice(shape, data, "sm90");
    const again = gemmOnDevice(shape, data, "sm90");
    // DF11 multiplies windows of rows of W (multiples of 128): same kernel, tiles and splits, same bits.
    const cut = Math.max(128, Math.floor(shape.N / 3 / 128) * 128);
    const windows = gemmOnDevice(shape, data, "sm90", [[0, cut], [cut, shape.N]]);
    const indices = Array.from({ length: 300 }, () => Math.floor(rand() * shape.rows * shape.N));
    const expected = gemmReference(shape, data, indices);
    const sample = (a) => Float32Array.from(indices, (j) => a[j]);
    const errMma = relError(sample(mma), expected);
    const errSm90 = relError(sample(sm90), expected);
    const agree = relError(sm90, mma);
    console.log(`# gemm ${JSON.stringify(shape)}: sm90 vs float64 ${errSm90.toExponential(2)}, mma vs float64 ${errMma.toExponential(2)}, sm90 vs mma ${agree.toExponential(2)}`);
    // The wgmma sums lose a little more than mma.sync's over K = 14336 (~1e-5); a wrong index is ~1.
    assert.ok(errSm90 < 4e-5 && errMma < 4e-5 && agree < 4e-5, JSON.stringify({ shape, errSm90, errMma, agree }));
    assert.ok(Buffer.from(sm90.buffer).equals(Buffer.from(again.buffer)), "sm90 not deterministic");
    assert.ok(Buffer.from(sm90.buffer).equals(Buffer.from(windows.buffer)), "windows of W gave other bits");
    // The column tile is chosen from N (so windows may get another): both tiles must give the same bits.
    for (const v of ["sm90-128", "sm90-256"]) assert.ok(Buffer.from(sm90.buffer).equals(Buffer.from(gemmOnDevice(shape, data, v).buffer)), `${v} gave other bits`);
  });
});
