// Load a model onto the GPU in each layout, a few times, and print where the load's host time went
// (CudaBackend.loadTimes): node scripts/gpu/load-phases.mjs DIR [layouts=fused,huffman,bf16] [repeat=2]
import { CudaBackend } from "../../packages/cuda-kernel/dist/index.js";

const [dir, layouts = "fused,huffman,bf16", repeat = "2"] = process.argv.slice(2);
if (!dir) {
  console.error("usage: node scripts/gpu/load-phases.mjs DIR [layouts] [repeat]");
  process.exit(2);
}
for (let i = 0; i < Number(repeat); i++) {
  for (const gpuWeights of layouts.split(",")) {
    const t = performance.now();
    const backend = await CudaBackend.load(dir, { maxContext: 1024, gpuWeights });
    const seconds = (performance.now() - t) / 1000;
    const phases = Object.entries(backend.loadTimes).map(([k, v]) => `${k.replace(/Ms$/, "")} ${v.toFixed(0)}`);
    console.log(`${gpuWeights}: load ${seconds.toFixed(2)} s; host ms: ${phases.join(", ")}`);
    backend.dispose();
  }
}
