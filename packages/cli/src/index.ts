/**
 * @df11/cli — the `df11` command, and its jobs as a library: compress, decompress, inspect and
 * verify DFloat11 models, plus a worker-thread pool for the codec.
 *
 * @example
 * ```ts
 * import { compressModel, verifyModel } from "@df11/cli";
 * await compressModel("./Llama-3.1-8B", "./Llama-3.1-8B-DF11");
 * await verifyModel("./Llama-3.1-8B-DF11", { against: "./Llama-3.1-8B" });
 * ```
 */
export * from "./errors.js";
export { bytesOf, compressedModulesOf, isModuleTensor, moduleTensors, readDF11Module } from "@df11/models";
export * from "./pool.js";
export * from "./compress.js";
export * from "./decompress.js";
export * from "./verify.js";
export * from "./inspect.js";
export * from "./seal.js";
export { DEMO_SHAPE, writeSyntheticModel, type SyntheticModelShape } from "@df11/models";
export * from "./report.js";
export { formatBytes, parseBytes } from "./format-bytes.js";
export { orderedPipeline, type MemoryBudget } from "./ordered-pipeline.js";
export type { Progress } from "./progress.js";
export { serveModel, type RunningServer, type ServeOptions, type ShutdownReport } from "./serve/server.js";
export { ApiError, parseCompletionRequest } from "./serve/openai-protocol.js";
// Types only: the batch runner loads models through @df11/cuda-kernel, which the library entry does not import.
export type { BatchGenerateResult, BatchSequenceResult, BatchInput, BatchFlags } from "./batch-generate.js";
