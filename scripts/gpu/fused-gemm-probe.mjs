// On the GPU host: the DF11 fused GEMM (fused tiles decoded inside the Hopper kernel) against the BF16
// Hopper GEMM on the given shapes, ms per launch (host clock over 20 launches) — a quick check, and the
// workload to run under ncu (apps/bench/results/fused-gemm-profile-h200.md). The fused GEMM runs at
// every size here ("always"; the backend takes it for ≤ 128 rows).
//   node scripts/gpu/fused-gemm-probe.mjs N,K,M [N,K,M …]     e.g. 28672,4096,512
import { syntheticWeights } from "../../packages/codec/dist/index.js";
import { CudaStream, DeviceBuffer, FusedDeviceMatrix, nativeAddon } from "../../packages/cuda-kernel/dist/index.js";
const addon = nativeAddon();
addon.setFusedGemm("always");
const stream = new CudaStream();
const ws = DeviceBuffer.alloc(64 << 20);
for (const spec of process.argv.slice(2)) {
  const [N, K, M] = spec.split(",").map(Number);
  const launches = 20;
  const w = DeviceBuffer.from(syntheticWeights(N * K, 3, 0.5 / Math.sqrt(K)));
  const m = FusedDeviceMatrix.transcode(N, K, { windowRows: FusedDeviceMatrix.windowRows(1 << 26, K), fill: (r0) => w.address + r0 * K * 2 }, stream);
  const xb = DeviceBuffer.alloc(M * K * 2);
  xb.fill(0x3c);
  const out = DeviceBuffer.alloc(M * N * 4);
  const call = { rowBegin: 0, rowEnd: N, xBf16: xb.address, rows: M, bias: 0, out: out.address, ldo: N, accumulate: false, workspace: ws.address, workspaceBytes: ws.byteLength, stream };
  const bf = () => addon.linear(w.address, N, K, 0, K, M, 0, out.address, N, false, xb.address, stream.native, ws.address, ws.byteLength, true);
  const timeIt = (fn) => {
    fn();
    stream.synchronize();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < launches; i++) fn();
    stream.synchronize();
    return Number(process.hrtime.bigint() - t0) / 1e6 / launches;
  };
  const ms = timeIt(() => {
    if (!m.gemm(call)) throw new Error("the fused GEMM does not run on this device (a Hopper GPU and the sm_90a build are needed)");
  });
  const bms = timeIt(bf);
  const tf = (t) => ((2 * M * N * K) / t / 1e9).toFixed(0);
  console.log(`${N}x${K} M=${M}: fused ${ms.toFixed(3)} ms (${tf(ms)} TFLOP/s), bf16 ${bms.toFixed(3)} ms (${tf(bms)})`);
  for (const b of [w, xb, out]) b.dispose();
  m.dispose();
}
