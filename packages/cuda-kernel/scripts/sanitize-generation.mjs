// Small generation workload for compute-sanitizer (prefill on the tensor cores, one-token steps replayed
// from a CUDA graph; BF16, the fused layout from BF16 and DF11, Huffman windows; embedding rows; a prompt
// longer than 64 rows through the tensor-core prefill attention):
//   compute-sanitizer --tool memcheck node packages/cuda-kernel/scripts/sanitize-generation.mjs
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CausalLM, generate } from "../../models/dist/index.js";
import { compressModel } from "../../cli/dist/index.js";
import { CudaBackend } from "../dist/index.js";

const dirs = ["test-support/reference-models/gemma2-tiny/bf16", "test-support/reference-models/qwen2-tiny/bf16"];
const work = mkdtempSync(join(tmpdir(), "df11-sanitize-"));
try {
  for (const [i, bf16] of dirs.entries()) {
    const df11 = join(work, String(i));
    await compressModel(bf16, df11, { threads: 1 });
    const tokens = { 9: [], 65: [] };
    // Small windows (4096 elements: many per matrix), and the default (capped at the largest matrix: one window exactly its size).
    // gemmMinRows 65 (the default): the 20-token prefill runs through the GEMV (20 rows: from x's BF16 copy).
    for (const [dir, gpuWeights, decodeChunkElements, gemmMinRows = 9] of [[bf16, "bf16", 4096], [bf16, "fused", 4096], [df11, "fused", 4096], [df11, "huffman", 4096], [df11, "fused"], [df11, "huffman"], [bf16, "bf16", 4096, 65], [df11, "fused", undefined, 65]]) {
      // verifyWeights: the load-time checksum kernels (stored tensors on the device, decode + sum per window) run too;
      // the fused layout is transcoded on the GPU and read by the fused GEMV and the unpack kernel.
      const backend = await CudaBackend.load(dir, { maxContext: 48, maxRows: gemmMinRows === 9 ? 16 : 40, decodeChunkElements, gemmMinRows, verifyWeights: true, gpuWeights });
      const model = new CausalLM(backend.config, backend);
      const ids = [];
      // 20 prompt tokens with maxRows 16: two prefill steps (tensor-core GEMM for 16 rows, GEMV for 4); with 40, one.
      for await (const t of generate(model, Array.from({ length: 20 }, (_, j) => (j * 37 + 1) % 256), { maxTokens: 12, stopTokenIds: [] })) ids.push(t.id);
      model.dispose();
      tokens[gemmMinRows].push(ids.join(","));
    }
    // Same prefill kernels, same tokens (the GEMM and the GEMV sum in different orders: compared apart).
    for (const group of Object.values(tokens)) if (new Set(group).size !== 1) throw new Error(`${bf16}: the layouts' tokens differ: ${group.join(" | ")}`);
    console.log(`${bf16}: ${tokens[9][0]} (GEMV prefill: ${tokens[65][0]})`);
    // Pipelined greedy decoding (the scheduler's path): each step's tokens copied on the device from the
    // previous step's argmax, the argmax copied to pinned host memory behind the step; the same tokens as
    // steps from the host's tokens.
    {
      const runs = [];
      for (const pipelined of [false, true]) {
        const backend = await CudaBackend.load(df11, { maxContext: 48, slots: 3, gpuWeights: "fused" });
        const model = new CausalLM(backend.config, backend);
        let next = [0, 1, 2].map((slot) => model.forwardGreedy([slot + 5, 17, 40 + slot], slot));
        const seen = [next.join(",")];
        let logits = model.step(next.map((t, slot) => ({ slot, tokens: [t] })));
        for (let i = 0; i < 10; i++) {
          if (pipelined) {
            const pending = model.greedyAsync(logits);
            logits = model.stepGreedy(pending);
            next = [...pending.read()];
          } else {
            next = [...model.backend.argmax(logits)];
            logits = model.step(next.map((t, slot) => ({ slot, tokens: [t] })));
          }
          seen.push(next.join(","));
        }
        model.dispose();
        runs.push(seen.join(" "));
      }
      if (runs[0] !== runs[1]) throw new Error(`${bf16}: pipelined greedy tokens differ: ${runs.join(" | ")}`);
      console.log(`${bf16}: pipelined greedy steps, 3 sequences: ${runs[1]}`);
    }
    // A 150-token prompt in steps of 80 and 70 rows of one sequence: the tensor-core prefill attention
    // (attention-prefill.cu; head size 16, gemma2's sliding window and soft-capping), the second step's
    // keys including the first's cached positions.
    {
      const backend = await CudaBackend.load(bf16, { maxContext: 192, maxRows: 80, gpuWeights: "bf16" });
      const model = new CausalLM(backend.config, backend);
      const ids = [];
      for await (const t of generate(model, Array.from({ length: 150 }, (_, j) => (j * 53 + 7) % 256), { maxTokens: 4, stopTokenIds: [] })) ids.push(t.id);
      model.dispose();
      console.log(`${bf16}: 150-token prompt (prefill attention on the tensor cores): ${ids.join(",")}`);
    }
  }
  console.log("sanitize generation workload: done");
} finally {
  rmSync(work, { recursive: true, force: true });
}
