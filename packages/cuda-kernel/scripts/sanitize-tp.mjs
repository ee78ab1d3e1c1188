// Small tensor-parallel generation workload for compute-sanitizer, over every visible GPU (at most 2;
// one GPU runs a clique of one): slices decoded at load (small windows), NCCL all-reduces, one-token
// graphs with collectives, vocabulary-shard argmax; BF16 and the fused layout from DF11; CPU offload of
// the last layers' slices.
//   compute-sanitizer --tool memcheck node packages/cuda-kernel/scripts/sanitize-tp.mjs
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CausalLM, generate } from "../../models/dist/index.js";
import { compressModel } from "../../cli/dist/index.js";
import { deviceCount, TensorParallelBackend } from "../dist/index.js";

const devices = Array.from({ length: Math.min(2, deviceCount()) }, (_, i) => i);
const bf16 = "test-support/reference-models/qwen2-tiny/bf16";
const work = mkdtempSync(join(tmpdir(), "df11-sanitize-tp-"));
try {
  const df11 = join(work, "df11");
  await compressModel(bf16, df11, { threads: 1 });
  const tokens = [];
  // The last two: each GPU's slices of the last two layers offloaded to pinned host memory (CPU offload).
  for (const [dir, gpuWeights, offloadLayers] of [[bf16, "bf16"], [df11, "fused"], [df11, "bf16"], [df11, "fused", 2], [bf16, "bf16", 2]]) {
    const backend = await TensorParallelBackend.load(dir, { devices, maxContext: 48, maxRows: 16, decodeChunkElements: 4096, gemmMinRows: 9, verifyWeights: true, gpuWeights, offloadLayers });
    const model = new CausalLM(backend.config, backend);
    const ids = [];
    for await (const t of generate(model, Array.from({ length: 20 }, (_, j) => (j * 37 + 1) % 256), { maxTokens: 12, stopTokenIds: [] })) ids.push(t.id);
    model.dispose();
    tokens.push(ids.join(","));
  }
  if (new Set(tokens).size !== 1) throw new Error(`the layouts' tokens differ: ${tokens.join(" | ")}`);
  console.log(`tensor parallel over GPUs ${devices.join(",")}: ${tokens[0]}`);
  console.log("sanitize tensor-parallel workload: done");
} finally {
  rmSync(work, { recursive: true, force: true });
}
