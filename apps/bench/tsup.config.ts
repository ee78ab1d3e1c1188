import { defineConfig } from "tsup";

export default defineConfig({
  entry: ["src/index.ts", "src/kernel.ts", "src/gpu-generate.ts", "src/offload-generate.ts", "src/gpu-serve.ts", "src/serve-client.ts", "src/checksum-bench.ts", "src/batch-generate.ts", "src/gemv-kernels.ts", "src/gemm-kernels.ts", "src/tp-generate.ts", "src/make-bench-model.ts", "src/bench-model/synthetic-worker.ts"],
  format: ["esm"],
  sourcemap: true,
  clean: true,
  target: "node20",
  platform: "node",
});
