/**
 * @df11/hub-loader — model files for df11: safetensors reading (positional, sharded, > 4 GB) and
 * atomic writing, model directories and their side files.
 *
 * @example
 * ```ts
 * import { SafetensorsCollection } from "@df11/hub-loader";
 * await using weights = await SafetensorsCollection.openDirectory("./my-model");
 * const embed = await weights.readU16("model.embed_tokens.weight"); // BF16 bits
 * ```
 */
export * from "./errors.js";
export * from "./dtypes.js";
export * from "./safetensors-reader.js";
export * from "./safetensors-writer.js";
export * from "./safetensors-collection.js";
export * from "./model-files.js";
export * from "./sharded-writer.js";
export * from "./metadata-rewrite.js";
export * from "./atomic.js";
export * from "./model-directory.js";
export * from "./hub/environment.js";
export * from "./hub/cache-layout.js";
export * from "./hub/download.js";
export * from "./hub/resolve.js";
export * from "./hub/list-cache.js";
export * from "./json-text.js";
export { sizeThreadPoolForReads } from "./thread-pool.js";
