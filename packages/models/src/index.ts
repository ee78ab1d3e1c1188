/**
 * @df11/models — architecture knowledge for DFloat11: which weights each architecture compresses
 * together (the `pattern_dict`), the weights' names and shapes, config parsing.
 *
 * @example
 * ```ts
 * import { patternDictFor, compressionUnits } from "@df11/models";
 * const { patternDict } = patternDictFor(config, weights);
 * const units = compressionUnits(patternDict, tensorNames); // [{ module: "model.layers.0", weights: [...] }, …]
 * ```
 */
export * from "./errors.js";
export * from "./pattern-dict.js";
export * from "./architectures.js";
export * from "./shapes.js";
export * from "./df11-checkpoint.js";
export * from "./dfloat11-config.js";
export * from "./language-model.js";
export * from "./integrity.js";
export * from "./config.js";
export * from "./rope.js";
export * from "./kv-cache.js";
export * from "./weight-store.js";
export * from "./backend.js";
export * from "./forward.js";
export * from "./cpu-backend.js";
export * from "./causal-lm.js";
export * from "./load.js";
export * from "./gpu-options.js";
export * from "./sampling.js";
export * from "./tokenizer.js";
export * from "./generation-config.js";
export * from "./text-stream.js";
export * from "./logprobs.js";
export * from "./sequence.js";
export * from "./generate.js";
export * from "./json-grammar.js";
export * from "./constraint.js";
export * from "./tool-calls.js";
export * from "./synthetic-model.js";
export * from "./memory.js";
export * from "./backend-registry.js";
export * from "./serving/token-stream.js";
export * from "./serving/batch-scheduler.js";
export * from "./serving/model.js";
export * from "./parallel/tensor-parallel.js";
