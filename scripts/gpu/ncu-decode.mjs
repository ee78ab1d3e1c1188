// Workload for Nsight Compute: a 64-token prefill and 4 one-token steps (CUDA-graph replays) of a model
// in one layout, so that `ncu` reads each inference kernel's counters (see all.sh's `ncu` stage and
// ncu-summary.mjs). Load-time kernels are left out by ncu's kernel-name filter.
//   ncu ... node scripts/gpu/ncu-decode.mjs MODEL_DIR LAYOUT
import { CausalLM } from "../../packages/models/dist/index.js";
import { CudaBackend } from "../../packages/cuda-kernel/dist/index.js";

const [dir, layout = "fused"] = process.argv.slice(2);
const backend = await CudaBackend.load(dir, { maxContext: 128, gpuWeights: layout });
const model = new CausalLM(backend.config, backend);
const prompt = Array.from({ length: 64 }, (_, i) => (i * 7919 + 13) % backend.config.vocabSize);
let id = model.forwardGreedy(prompt);
for (let i = 0; i < 4; i++) id = model.forwardGreedy([id]);
backend.synchronize();
model.dispose();
console.log(`ncu workload done: ${dir} (${layout})`);
