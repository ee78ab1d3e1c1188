// Small generation workload for compute-sanitizer (prefill on the tensor cores, one-token steps replayed
// from a CUDA graph, DF11 windows and embedding rows):
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
    const tokens = [];
    for (const dir of [bf16, df11]) {
      // verifyWeights: the load-time checksum kernels (stored tensors on the device, decode + sum per window) run too.
      const backend = await CudaBackend.load(dir, { maxContext: 48, maxRows: 16, decodeChunkElements: 4096, gemmMinRows: 9, verifyWeights: true });
      const model = new CausalLM(backend.config, backend);
      const ids = [];
      // 20 prompt tokens with maxRows 16: two prefill steps (tensor-core GEMM for 16 rows, GEMV for 4).
      for await (const t of generate(model, Array.from({ length: 20 }, (_, j) => (j * 37 + 1) % 256), { maxTokens: 12, stopTokenIds: [] })) ids.push(t.id);
      model.dispose();
      tokens.push(ids.join(","));
    }
    if (tokens[0] !== tokens[1]) throw new Error(`${bf16}: BF16 and DF11 tokens differ`);
    console.log(`${bf16}: ${tokens[0]}`);
  }
  console.log("sanitize generation workload: done");
} finally {
  rmSync(work, { recursive: true, force: true });
}
