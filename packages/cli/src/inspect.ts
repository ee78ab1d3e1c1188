import { availableParallelism } from "node:os";
import { readModelConfig, SafetensorsCollection } from "@df11/hub-loader";
import type { ModuleStats } from "@df11/codec";
import { patternDictOf } from "./model-info.js";
import { compressedModulesOf, isModuleTensor, readDF11Module } from "@df11/models";
import { orderedPipeline } from "./ordered-pipeline.js";
import { CodecPool } from "./pool.js";

export interface InspectReport {
  readonly path: string;
  readonly version: string;
  readonly modules: ReadonlyArray<ModuleStats & { readonly module: string }>;
  /** Tensors stored uncompressed, and their bytes. */
  readonly uncompressedTensors: number;
  readonly uncompressedBytes: number;
  readonly totals: {
    readonly originalBytes: number;
    readonly compressedBytes: number;
    readonly ratio: number;
    /** Model size (all tensors) before and after. */
    readonly modelOriginalBytes: number;
    readonly modelBytes: number;
  };
}

/** Per-module sizes, ratio, exponent entropy, code lengths and LUT rows of a DF11 model. */
export async function inspectModel(dir: string, options: { threads?: number } = {}): Promise<InspectReport> {
  const config = await readModelConfig(dir);
  patternDictOf(config, dir);
  await using weights = await SafetensorsCollection.openDirectory(dir);
  const threads = options.threads ?? availableParallelism();
  await using pool = new CodecPool(threads);
  const modules: Array<ModuleStats & { module: string }> = [];
  await orderedPipeline(
    compressedModulesOf(weights.names()),
    threads,
    async (path) => ({ path, stats: (await pool.check(await readDF11Module(weights, path))).stats }),
    async ({ path, stats }) => {
      modules.push({ module: path, ...stats });
    },
  );
  const plain = weights.names().filter((n) => !isModuleTensor(n));
  const uncompressedBytes = plain.reduce((s, n) => s + weights.info(n).byteLength, 0);
  const originalBytes = modules.reduce((s, m) => s + m.originalBytes, 0);
  const compressedBytes = modules.reduce((s, m) => s + m.compressedBytes, 0);
  return {
    path: dir,
    version: String((config.dfloat11_config as { version?: string }).version ?? "unknown"),
    modules,
    uncompressedTensors: plain.length,
    uncompressedBytes,
    totals: {
      originalBytes,
      compressedBytes,
      ratio: originalBytes ? compressedBytes / originalBytes : 1,
      modelOriginalBytes: originalBytes + uncompressedBytes,
      modelBytes: compressedBytes + uncompressedBytes,
    },
  };
}
