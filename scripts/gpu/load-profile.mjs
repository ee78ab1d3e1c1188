// Where a load's time and device memory go, for one layout, in this process (run it under
// `node --cpu-prof` for the host side): node scripts/gpu/load-profile.mjs DIR LAYOUT [maxContext=1024]
// Prints wall time, CudaBackend.loadTimes, df11's own allocations and the device-wide memory the load
// took (cudaMemGetInfo before/after, the CUDA context created first so it is not counted).
import { allocationStats, CudaBackend, currentDevice, memoryInfo } from "../../packages/cuda-kernel/dist/index.js";

const [dir, gpuWeights = "fused", maxContext = "1024"] = process.argv.slice(2);
if (!dir) {
  console.error("usage: node scripts/gpu/load-profile.mjs DIR [layout] [maxContext]");
  process.exit(2);
}
const GB = 1e9;
memoryInfo();
const before = memoryInfo().free;
const ownBefore = allocationStats(currentDevice()).allocated;
const t = performance.now();
const backend = await CudaBackend.load(dir, { maxContext: Number(maxContext), gpuWeights });
const seconds = (performance.now() - t) / 1000;
const used = before - memoryInfo().free;
const own = allocationStats(currentDevice()).allocated - ownBefore;
const phases = Object.entries(backend.loadTimes).map(([k, v]) => `${k.replace(/Ms$/, "")} ${typeof v === "number" ? v.toFixed(0) : v}`);
console.log(`${gpuWeights}: load ${seconds.toFixed(3)} s; host ms: ${phases.join(", ")}`);
console.log(`${gpuWeights}: device-wide ${(used / GB).toFixed(3)} GB, df11 allocations ${(own / GB).toFixed(3)} GB, difference ${((used - own) / 1e6).toFixed(0)} MB; weights ${(backend.weights.residentBytes / GB).toFixed(3)} GB`);
backend.dispose();
