// Workload for Nsight Compute: a 64-token prefill per sequence and 4 decode steps (CUDA-graph replays)
// of a model in one layout, so that `ncu` reads each inference kernel's counters (see all.sh's `ncu`
// stage and ncu-summary.mjs). With ROWS > 1, ROWS sequences decode together (a serving batch: each step
// has ROWS rows). Load-time kernels are left out by ncu's kernel-name filter.
//   ncu ... node scripts/gpu/ncu-decode.mjs MODEL_DIR LAYOUT [ROWS]
import { CausalLM } from "../../packages/models/dist/index.js";
import { CudaBackend } from "../../packages/cuda-kernel/dist/index.js";

const [dir, layout = "fused", rowsArg = "1"] = process.argv.slice(2);
const rows = Number(rowsArg);
if (!(Number.isInteger(rows) && rows >= 1 && rows <= 64)) throw new Error(`ROWS must be 1…64, got ${rowsArg}`);
const backend = await CudaBackend.load(dir, { maxContext: 128, slots: rows, gpuWeights: layout });
const model = new CausalLM(backend.config, backend);
const vocab = backend.config.vocabSize;
if (rows === 1) {
  let id = model.forwardGreedy(Array.from({ length: 64 }, (_, i) => (i * 7919 + 13) % vocab));
  for (let i = 0; i < 4; i++) id = model.forwardGreedy([id]);
} else {
  // Each forward pass ends with its argmax (ncu-summary.mjs counts steps by it).
  let ids = [];
  for (let s = 0; s < rows; s++) ids.push(model.forwardGreedy(Array.from({ length: 64 }, (_, i) => (i * 7919 + 13 * s + 1) % vocab), s));
  for (let i = 0; i < 4; i++) ids = Array.from(backend.argmax(model.step(ids.map((id, slot) => ({ slot, tokens: [id] })))));
}
backend.synchronize();
model.dispose();
console.log(`ncu workload done: ${dir} (${layout}, ${rows} row${rows > 1 ? "s" : ""} per decode step)`);
