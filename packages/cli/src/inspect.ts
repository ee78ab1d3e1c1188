import { availableParallelism } from "node:os";
import { readModelConfig, SafetensorsCollection } from "@df11/hub-loader";
import type { ModuleStats } from "@df11/codec";
import { dtypeBreakdown, type DtypeShare } from "./model-info.js";
import { compressedModulesOf, dfloat11ConfigOf, isModuleTensor, namingModule, readDF11Module } from "@df11/models";
import { orderedPipeline } from "./ordered-pipeline.js";
import { CodecPool } from "./pool.js";

export interface InspectReport {
  readonly path: string;
  /** `df11` for a DFloat11 model; `plain` for any other model (nothing compressed). */
  readonly format: "df11" | "plain";
  /** The DFloat11 format version its config names (null for a plain model). */
  readonly version: string | null;
  readonly modules: ReadonlyArray<ModuleStats & { readonly module: string }>;
  /** Tensors stored uncompressed, and their bytes. */
  readonly uncompressedTensors: number;
  readonly uncompressedBytes: number;
  /** The uncompressed tensors per dtype as stored (BF16, F16, F32, …), largest share first. */
  readonly uncompressedDtypes: readonly DtypeShare[];
  readonly totals: {
    readonly originalBytes: number;
    readonly compressedBytes: number;
    readonly ratio: number;
    /** Model size (all tensors) before and after. */
    readonly modelOriginalBytes: number;
    readonly modelBytes: number;
  };
}

/**
 * Per-module sizes, ratio, exponent entropy, code lengths and LUT rows of a DF11 model, and the real
 * dtypes of what is stored uncompressed. A model that is not DF11 gets the dtype breakdown alone.
 */
export async function inspectModel(dir: string, options: { threads?: number } = {}): Promise<InspectReport> {
  const config = await readModelConfig(dir);
  const df11 = dfloat11ConfigOf(config, dir);
  await using weights = await SafetensorsCollection.openDirectory(dir);
  const threads = options.threads ?? availableParallelism();
  await using pool = new CodecPool(threads);
  const modules: Array<ModuleStats & { module: string }> = [];
  await orderedPipeline(
    compressedModulesOf(weights.names()),
    threads,
    async (path) => {
      const module = await readDF11Module(weights, path);
      const checked = await pool.check(module).catch((e) => {
        throw namingModule(path, e);
      });
      return { path, stats: checked.stats };
    },
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
    format: df11 ? "df11" : "plain",
    version: df11?.version ?? null,
    modules,
    uncompressedTensors: plain.length,
    uncompressedBytes,
    uncompressedDtypes: dtypeBreakdown(weights, plain),
    totals: {
      originalBytes,
      compressedBytes,
      ratio: originalBytes ? compressedBytes / originalBytes : 1,
      modelOriginalBytes: originalBytes + uncompressedBytes,
      modelBytes: compressedBytes + uncompressedBytes,
    },
  };
}
