// Small decode workload for compute-sanitizer:  compute-sanitizer --tool memcheck node sanitize.mjs
import { encodeModule, mergeBF16, syntheticWeights } from "../../codec/dist/index.js";
import { CudaStream, currentDevice, DeviceBuffer, DeviceModule, devices, FusedDeviceMatrix, nativeAddon, synchronize } from "../dist/index.js";

// SANITIZE_ONLY=gemv: the GEMV block alone (for racecheck / synccheck, which are slow).
const only = process.env.SANITIZE_ONLY || undefined;
if (only !== undefined && only !== "gemv") throw new Error(`SANITIZE_ONLY=${only}: only "gemv" is known`);

const addon = nativeAddon();
if (!only) {
  const cases = [
    [new Uint16Array([0x3f80])],
    [syntheticWeights(4095, 2), syntheticWeights(1, 3), syntheticWeights(12347, 4)],
    [Uint16Array.from({ length: 240 }, (_, e) => mergeBF16(e, e))],
    [syntheticWeights(300_001, 5)],
  ];
  for (const parts of cases) {
    const { module } = encodeModule(parts);
    const gpu = DeviceModule.upload(module);
    const out = DeviceBuffer.alloc(gpu.elements * 2);
    gpu.decode(out);
    synchronize();
    const got = out.download(new Uint16Array(gpu.elements));
    gpu.dispose();
    out.dispose();
    const expected = parts.flatMap((p) => [...p]);
    const bad = got.findIndex((v, i) => v !== expected[i]);
    if (bad >= 0) throw new Error(`mismatch at ${bad}`);
  }
  console.log(`sanitize workload: ${cases.length} modules decoded`);

  // The GEMM's kernels (the Hopper wgmma + TMA one where the device has it, and mma.sync) on ragged shapes:
  // tiles past M, N and K, split K with the columns in workspace-sized pieces, ldo > N, bias + accumulate.
  const gemmShapes = [
    { N: 257, K: 136, rows: 130, ldo: 260 },
    { N: 700, K: 2056, rows: 70, ldo: 700, workspaceBytes: 4 * 4 * 70 * 256 },
    { N: 513, K: 24, rows: 1030, ldo: 515 },
    { N: 3, K: 4104, rows: 1, ldo: 3 },
  ];
  const hopper = addon.setGemmVariant("sm90");
  let products = 0;
  for (const variant of hopper ? ["sm90", "sm90-128", "sm90-256", "mma"] : ["mma"]) {
    addon.setGemmVariant(variant);
    for (const { N, K, rows, ldo, workspaceBytes = 1 << 20 } of gemmShapes) {
      const w = DeviceBuffer.from(syntheticWeights(N * K, 9, 0.02));
      const x = DeviceBuffer.from(Float32Array.from({ length: rows * K }, (_, i) => Math.sin(i)));
      const xb = DeviceBuffer.alloc(rows * K * 2);
      const bias = DeviceBuffer.from(new Float32Array(N).fill(0.5));
      const out = DeviceBuffer.alloc(rows * ldo * 4);
      const workspace = DeviceBuffer.alloc(workspaceBytes);
      out.fill(0);
      addon.toBf16(x.address, rows * K, xb.address);
      addon.linear(w.address, N, K, x.address, K, rows, bias.address, out.address, ldo, true, xb.address, undefined, workspace.address, workspaceBytes, true);
      synchronize();
      const got = out.download(new Float32Array(rows * ldo));
      if (!got.every(Number.isFinite)) throw new Error(`gemm ${variant} ${N}×${K}×${rows}: not finite`);
      for (const b of [w, x, xb, bias, out, workspace]) b.dispose();
      products++;
    }
  }
  addon.setGemmVariant("auto");
  console.log(`sanitize workload: ${products} GEMMs (${hopper ? "Hopper wgmma kernel and mma.sync" : "mma.sync"})`);

  // The fused GEMM (fused tiles decoded inside the Hopper kernel) on the same ragged shapes (K % 8 == 0),
  // and on a slice of rows; its output must equal the BF16 kernel's.
  if (hopper) {
    addon.setFusedGemm("always");
    const stream = new CudaStream();
    let fusedProducts = 0;
    for (const { N, K, rows, ldo, workspaceBytes = 1 << 20 } of gemmShapes.filter((s) => s.K % 8 === 0 && s.rows > 64)) {
      const bits = syntheticWeights(N * K, 10, 0.02);
      const w = DeviceBuffer.from(bits);
      const m = FusedDeviceMatrix.transcode(N, K, { windowRows: 64, fill: (r0) => w.address + r0 * K * 2 }, stream);
      const x = DeviceBuffer.from(Float32Array.from({ length: rows * K }, (_, i) => Math.cos(i)));
      const xb = DeviceBuffer.alloc(rows * K * 2);
      const outs = [DeviceBuffer.alloc(rows * ldo * 4), DeviceBuffer.alloc(rows * ldo * 4)];
      const workspace = DeviceBuffer.alloc(workspaceBytes);
      addon.toBf16(x.address, rows * K, xb.address, stream.native);
      for (const [r0, r1] of [[0, N], [8, N - 1]]) {
        for (const o of outs) o.fill(0);
        addon.linear(w.address + r0 * K * 2, r1 - r0, K, x.address, K, rows, 0, outs[0].address, ldo, false, xb.address, stream.native, workspace.address, workspaceBytes, true);
        const ran = m.gemm({ rowBegin: r0, rowEnd: r1, xBf16: xb.address, rows, bias: 0, out: outs[1].address, ldo, accumulate: false, workspace: workspace.address, workspaceBytes, stream });
        stream.synchronize();
        if (!ran) throw new Error(`fused gemm ${N}×${K}×${rows}: declined on a Hopper device`);
        const [a, b] = outs.map((o) => o.download(new Float32Array(rows * ldo)));
        if (a.some((v, i) => !Object.is(v, b[i]))) throw new Error(`fused gemm ${N}×${K}×${rows} rows ${r0}…${r1}: differs from the BF16 GEMM`);
        fusedProducts++;
      }
      for (const b of [w, x, xb, workspace, ...outs]) b.dispose();
      m.dispose();
    }
    stream.dispose();
    addon.setFusedGemm("auto");
    console.log(`sanitize workload: ${fusedProducts} fused GEMMs, equal to the BF16 GEMM`);
  }
}

// The GEMV (BF16 rows and the fused layout, one kernel body) at every row class — 1…8 (x rounded as it is
// read), 9…16, 17…32, 33…64 (from x's BF16 copy) — on ragged shapes: an odd number of 8-row groups, N not
// a multiple of 8, K not a multiple of the 256-element tile, a slice starting on a later group, ldo > N,
// bias + accumulate, a matrix with groups enough for two per warp at 9…16 rows (fused); the fused output
// must equal the BF16 output bit for bit.
{
  const stream = new CudaStream();
  let gemvs = 0;
  // Two groups per warp for the fused layout at 9…16 rows need ≥ 5 groups per SM: the last shape has 5·SMs + 2
  // groups, its slice from row 8 5·SMs + 1 (one of the two counts is odd: the last pair clamped).
  const sms = devices()[currentDevice()].multiprocessors;
  for (const { N, K } of [{ N: 257, K: 776 }, { N: 72, K: 4096 }, { N: 13, K: 264 }, { N: 8 * (5 * sms + 1) + 3, K: 520 }]) {
    const bits = syntheticWeights(N * K, 11, 0.03);
    const w = DeviceBuffer.from(bits);
    const m = FusedDeviceMatrix.transcode(N, K, { windowRows: 64, fill: (r0) => w.address + r0 * K * 2 }, stream);
    const bias = DeviceBuffer.from(Float32Array.from({ length: N }, (_, i) => i / 7));
    for (const rows of [1, 7, 12, 16, 24, 40, 64]) {
      const ldo = N + 3;
      const x = DeviceBuffer.from(Float32Array.from({ length: rows * K }, (_, i) => Math.sin(0.37 * i)));
      const xb = DeviceBuffer.alloc(rows * K * 2);
      const outs = [DeviceBuffer.alloc(rows * ldo * 4), DeviceBuffer.alloc(rows * ldo * 4)];
      addon.toBf16(x.address, rows * K, xb.address, stream.native);
      const xBf16 = rows > 8 ? xb.address : 0;
      for (const [r0, r1] of [[0, N], [8, N]]) {
        if (r1 <= r0) continue;
        for (const o of outs) o.fill(1);
        addon.linear(w.address + r0 * K * 2, r1 - r0, K, x.address, K, rows, bias.address + r0 * 4, outs[0].address + r0 * 4, ldo, true, xBf16, stream.native, 0, 0, false, xBf16 !== 0);
        m.gemv({ rowBegin: r0, rowEnd: r1, x: x.address, ldx: K, rows, xBf16, bias: bias.address + r0 * 4, out: outs[1].address + r0 * 4, ldo, accumulate: true, stream });
        stream.synchronize();
        const [a, b] = outs.map((o) => o.download(new Float32Array(rows * ldo)));
        if (a.some((v, i) => !Object.is(v, b[i]))) throw new Error(`fused gemv ${N}×${K}×${rows} rows ${r0}…${r1}: differs from the BF16 GEMV`);
        if (!a.every(Number.isFinite)) throw new Error(`gemv ${N}×${K}×${rows}: not finite`);
        gemvs++;
      }
      for (const b of [x, xb, ...outs]) b.dispose();
    }
    for (const b of [w, bias]) b.dispose();
    m.dispose();
  }
  stream.dispose();
  console.log(`sanitize workload: ${gemvs} GEMVs (1…64 rows), fused equal to BF16`);
}
