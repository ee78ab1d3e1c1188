import { writeFile } from "node:fs/promises";
import { availableParallelism, freemem } from "node:os";
import { join } from "node:path";
import { compressTensors, orderedPipeline, type CompressSummary, type Progress } from "@df11/cli";
import { DEFAULT_MAX_SHARD_BYTES, ShardedSafetensorsWriter, writeDirectoryAtomically, type TensorSource } from "@df11/hub-loader";
import { benchConfigText, benchTensors, type BenchShape } from "./shapes.js";
import { SyntheticTensors } from "./synthetic-tensors.js";

export interface MakeBenchModelOptions {
  readonly shape: BenchShape;
  /** Layers to write (default: the shape's); fewer make a slice with the real layer sizes. */
  readonly layers?: number;
  /** Where to write the DF11 model (what `df11 compress` makes of the BF16 twin, byte for byte). */
  readonly out?: string;
  /** Where to write the BF16 twin. */
  readonly bf16?: string;
  /** Seed of every tensor's values (default 1). */
  readonly seed?: number;
  /** Worker threads for drawing and for encoding, each (default: every core). */
  readonly threads?: number;
  /** Bound on the bytes of work in flight (default: half the free memory; pass it on hosts whose free memory reads low at first). */
  readonly maxMemory?: number;
  readonly maxShardBytes?: number;
  readonly overwrite?: boolean;
  readonly onProgress?: (what: "bf16" | "df11", p: Progress) => void;
}

export interface MakeBenchModelSummary {
  readonly tensors: number;
  readonly bf16Bytes: number;
  /** Seconds writing the BF16 twin, when asked. */
  readonly bf16Seconds?: number;
  /** The DF11 model written, when asked. */
  readonly df11?: CompressSummary;
}

/**
 * Write a BF16 model's tensors from `source` into a model directory (shards + index + config.json),
 * drawing `threads` tensors at a time and writing them in order; atomic like every df11 output.
 */
export async function writeBf16Model(
  source: TensorSource,
  configText: string,
  output: string,
  options: { threads: number; maxMemory: number; maxShardBytes?: number; overwrite?: boolean; onProgress?: (p: Progress) => void },
): Promise<string[]> {
  const names = source.names();
  const bytesOf = (n: string) => source.info(n).byteLength;
  const bytesTotal = names.reduce((s, n) => s + bytesOf(n), 0);
  let bytesDone = 0;
  return writeDirectoryAtomically(
    output,
    async (dir) => {
      const maxShardBytes = options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
      // A whole shard in memory when it fits a quarter of the budget: each byte is written once, not spooled.
      await using writer = new ShardedSafetensorsWriter(dir, { maxShardBytes, metadata: { format: "pt" }, memoryBytes: Math.min(maxShardBytes, Math.floor(options.maxMemory / 4)) });
      await orderedPipeline(
        names,
        options.threads,
        (n) => source.readU16(n),
        async (values, i) => {
          const name = names[i];
          await writer.add([{ name, dtype: "BF16", shape: source.info(name).shape, data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) }]);
          bytesDone += values.byteLength;
          options.onProgress?.({ modulesDone: i + 1, modulesTotal: names.length, bytesDone, bytesTotal });
        },
        { bytes: Math.floor((options.maxMemory * 3) / 4), cost: bytesOf },
      );
      const files = await writer.finish();
      await writeFile(join(dir, "config.json"), configText);
      return ["config.json", ...files];
    },
    { overwrite: options.overwrite },
  );
}

/**
 * Make a Llama-shaped benchmark model without its BF16 weights ever being on disk: each tensor is drawn
 * (normal, std 0.5/√cols, 0.05 % outliers ×8; norms 1 + normal(0, 0.05) — tools/make_bench_model.py's
 * statistics) on worker threads when it is needed and encoded right away by `df11 compress`'s own
 * pipeline. The DF11 output equals `df11 compress` of the BF16 twin byte for byte (checksums included);
 * `bf16` writes that twin the same streaming way.
 */
export async function makeBenchModel(options: MakeBenchModelOptions): Promise<MakeBenchModelSummary> {
  if (!options.out && !options.bf16) throw new Error("nothing to write: give an output for the DF11 model, the BF16 twin, or both");
  const layers = options.layers ?? options.shape.layers;
  if (!Number.isInteger(layers) || layers < 1) throw new RangeError(`layers must be a positive integer, got ${layers}`);
  const threads = options.threads ?? availableParallelism();
  const maxMemory = options.maxMemory ?? Math.floor(freemem() / 2);
  const configText = benchConfigText(options.shape, layers);
  await using source = new SyntheticTensors(benchTensors(options.shape, layers), options.seed ?? 1, threads);
  const bf16Bytes = source.names().reduce((s, n) => s + source.info(n).byteLength, 0);
  let bf16Seconds: number | undefined;
  if (options.bf16) {
    const started = performance.now();
    await writeBf16Model(source, configText, options.bf16, { threads, maxMemory, maxShardBytes: options.maxShardBytes, overwrite: options.overwrite, onProgress: (p) => options.onProgress?.("bf16", p) });
    bf16Seconds = (performance.now() - started) / 1000;
  }
  // Whole shards in memory when an eighth of the budget holds one: the disk sees every byte once.
  const maxShardBytes = options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
  const shardMemoryBytes = maxShardBytes <= maxMemory / 8 ? maxShardBytes : undefined;
  const df11 = options.out
    ? await compressTensors({ weights: source, configText, name: `synthetic ${layers}-layer model` }, options.out, {
        threads,
        maxMemory: maxMemory - (shardMemoryBytes ?? 0),
        shardMemoryBytes,
        maxShardBytes,
        overwrite: options.overwrite,
        onProgress: (p) => options.onProgress?.("df11", p),
      })
    : undefined;
  return { tensors: source.names().length, bf16Bytes, bf16Seconds, df11 };
}
