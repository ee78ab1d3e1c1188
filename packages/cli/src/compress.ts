import { availableParallelism } from "node:os";
import { join } from "node:path";
import { moduleStats, UncodableExponentError } from "@df11/codec";
import {
  parseModelConfig,
  readModelConfigText,
  SafetensorsCollection,
  ShardedSafetensorsWriter,
  setJsonMember,
  writeDirectoryAtomically,
  DEFAULT_MAX_SHARD_BYTES,
  type TensorLayout,
  type TensorSource,
  type TensorToWrite,
} from "@df11/hub-loader";
import { ChecksumLedger, compressionUnits, dfloat11ConfigOf, expectedWeightShape, inCurrentLayout, moduleTensors, patternDictFor, TORCH_FORMAT_KEY, type PatternDict } from "@df11/models";
import { CliError } from "./errors.js";
import { dfloat11Config, dtypeBreakdown, formatDtypes, SHAPES_METADATA_KEY } from "./model-info.js";
import { defaultMaxMemory, planMemory } from "./memory-plan.js";
import { orderedPipeline } from "./ordered-pipeline.js";
import { assertDistinctDirectories, explainWriteError, finishModelDirectory } from "./output-model.js";
import { CodecPool } from "./pool.js";
import type { Progress } from "./progress.js";
import { WRITER } from "./version.js";

export interface CompressOptions {
  /** Worker threads (default: every core). */
  readonly threads?: number;
  /** Largest output shard in bytes (default 5 GB). */
  readonly maxShardBytes?: number;
  /** Use this pattern_dict instead of the architecture's. */
  readonly patternDict?: PatternDict;
  /** Replace an existing output directory. */
  readonly overwrite?: boolean;
  /**
   * Record df11-sum64 checksums of each module's weights and stored tensors in the files' metadata
   * (default true; false keeps the files byte-identical to the official compressor's).
   */
  readonly checksums?: boolean;
  /** Bound on peak memory in bytes (default: half the available memory); limits the modules in flight. */
  readonly maxMemory?: number;
  /**
   * Bytes of the open output shard kept in memory before the rest is spooled to a file and copied behind
   * the header when the shard closes (default: an eighth of maxMemory, at most 512 MiB). Counted on top of
   * maxMemory; a whole shard's worth writes every byte once instead of twice.
   */
  readonly shardMemoryBytes?: number;
  readonly onProgress?: (p: Progress) => void;
  readonly onWarning?: (message: string) => void;
}

export interface CompressSummary {
  readonly architecture: string;
  readonly modules: number;
  /** Modules kept as plain BF16 because they hold values DF11 cannot code. */
  readonly keptUncompressed: readonly string[];
  /** BF16 bytes of the weights that were compressed, and what they became. */
  readonly weightBytes: number;
  readonly compressedWeightBytes: number;
  /** All tensor bytes in and out (uncompressed tensors included). */
  readonly inputBytes: number;
  readonly outputBytes: number;
  readonly files: readonly string[];
  readonly seconds: number;
}

/** A model to compress that need not be a directory: tensors from anywhere plus the config.json text. */
export interface CompressInput {
  /** The tensors (a SafetensorsCollection, or tensors made in memory); names() order decides where uncompressed ones go. */
  readonly weights: TensorSource;
  /** config.json's text; written out unchanged but for the added `dfloat11_config`. */
  readonly configText: string;
  /** The model's name in messages: its directory, or a description. */
  readonly name: string;
  /** A model directory whose side files (tokenizer, generation config, …) are copied; none when absent. */
  readonly sideFilesFrom?: string;
}

/**
 * Compress a BF16 Hugging Face model directory into a DFloat11 one that the official `dfloat11`
 * package loads. The output appears atomically: an interrupted or failed run leaves nothing behind.
 */
export async function compressModel(input: string, output: string, options: CompressOptions = {}): Promise<CompressSummary> {
  assertDistinctDirectories(input, output);
  const configText = await readModelConfigText(input);
  const already = dfloat11ConfigOf(parseModelConfig(configText, join(input, "config.json")), input); // a DFloat11 0.1.0 model is named as such here
  if (already) throw new CliError(`${input}: already DFloat11-compressed (dfloat11_config version ${already.version}); df11 decompress gives back its BF16 model`);
  await using stored = await SafetensorsCollection.openDirectory(input);
  // A pre-4.52 multimodal checkpoint (gemma-3 as Google ships it) is written under the names transformers
  // 4.52+ uses, the only ones the official loader finds with today's transformers. A caller's own
  // pattern_dict speaks of the names as stored, so they stay.
  const weights = options.patternDict ? stored : inCurrentLayout(stored);
  if (weights !== stored) options.onWarning?.(`${input} stores its language model as language_model.model.* (before transformers 4.52): written as model.language_model.* (transformers 4.52+, and the official dfloat11 loader with it)`);
  // awaited here: `stored` closes when this function returns
  return await compressTensors({ weights, configText, name: input, sideFilesFrom: input }, output, options);
}

/**
 * {@link compressModel} for tensors that are not read from a model directory (e.g. generated in memory):
 * the same files, byte for byte, as compressing a directory holding these tensors and this config.json.
 */
export async function compressTensors(input: CompressInput, output: string, options: CompressOptions = {}): Promise<CompressSummary> {
  const started = performance.now();
  const { weights } = input;
  const configSource = join(input.name, "config.json");
  const config = parseModelConfig(input.configText, configSource);
  const descriptors = weights.names().map((n) => ({ name: n, dtype: weights.info(n).dtype, shape: weights.info(n).shape }));
  const chosen = options.patternDict
    ? { patternDict: options.patternDict, architecture: "custom" }
    : patternDictFor(config, descriptors);
  const units = compressionUnits(chosen.patternDict, weights.names());
  refuseUnlessBf16(input.name, weights, units.flatMap((u) => u.weights));
  const consumed = new Set(units.flatMap((u) => u.weights));
  const passthrough = weights.names().filter((n) => !consumed.has(n));

  // Shapes travel in metadata only when config.json cannot give them back (unknown architectures). For a
  // known architecture, a weight whose shape contradicts config.json means a broken model: refuse it.
  const known = chosen.architecture !== "generic" && chosen.architecture !== "custom";
  const needsShapes = units.flatMap((u) => u.weights).filter((w) => {
    let expected: number[] | undefined;
    try {
      expected = expectedWeightShape(config, w);
    } catch {
      return true;
    }
    const actual = weights.info(w).shape;
    if (expected && known && JSON.stringify(expected) !== JSON.stringify(actual)) {
      throw new CliError(`${w}: shape ${JSON.stringify(actual)} contradicts config.json (${chosen.architecture}), which gives ${JSON.stringify(expected)}: check hidden_size, intermediate_size, head counts and vocab_size`);
    }
    return JSON.stringify(expected) !== JSON.stringify(actual);
  });
  const shapesMetadata = needsShapes.length
    ? { [SHAPES_METADATA_KEY]: JSON.stringify(Object.fromEntries(needsShapes.map((w) => [w, weights.info(w).shape]))) }
    : undefined;
  const ledger = options.checksums === false ? undefined : new ChecksumLedger(WRITER);
  // Any metadata at all says `format: pt`: accelerate refuses safetensors metadata without it.
  const metadata = ledger
    ? (tensors: readonly TensorLayout[]) => ({ ...shapesMetadata, ...ledger.metadataFor(tensors) })
    : shapesMetadata && { [TORCH_FORMAT_KEY]: "pt", ...shapesMetadata };

  const weightBytesTotal = units.reduce((s, u) => s + u.weights.reduce((a, w) => a + weights.info(w).byteLength, 0), 0);
  const keptUncompressed: string[] = [];
  let weightBytes = 0;
  let compressedWeightBytes = 0;
  let outputBytes = 0;
  let inputBytes = 0;
  for (const n of weights.names()) inputBytes += weights.info(n).byteLength;

  const threads = options.threads ?? availableParallelism();
  // A unit in flight holds its BF16 input, the encoder's split exponents and sign/mantissa, and its output.
  const unitBytes = (u: (typeof units)[number]) => 2.5 * u.weights.reduce((a, w) => a + weights.info(w).byteLength, 0);
  const memory = planMemory(options.maxMemory ?? defaultMaxMemory(), threads, units, unitBytes);
  if (memory.note) options.onWarning?.(memory.note);
  await using pool = new CodecPool(threads);
  const files = await writeDirectoryAtomically(output, async (dir) => {
    await using writer = new ShardedSafetensorsWriter(dir, {
      maxShardBytes: options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES,
      metadata,
      memoryBytes: options.shardMemoryBytes ?? memory.shardMemoryBytes,
    });
    const report = (modulesDone: number) =>
      options.onProgress?.({ modulesDone, modulesTotal: units.length, bytesDone: weightBytes, bytesTotal: weightBytesTotal });
    report(0);

    await orderedPipeline(
      units,
      threads,
      async (unit) => {
        const parts = await Promise.all(unit.weights.map((w) => weights.readU16(w)));
        try {
          return { unit, encoded: await pool.encode(parts, [...unit.weights], { transfer: true, checksums: !!ledger }) };
        } catch (e) {
          if (!(e instanceof UncodableExponentError)) throw e;
          return { unit, error: e };
        }
      },
      async (result, i) => {
        const { unit } = result;
        const bytes = unit.weights.reduce((a, w) => a + weights.info(w).byteLength, 0);
        let tensors: TensorToWrite[];
        if ("encoded" in result && result.encoded) {
          tensors = moduleTensors(unit.module, result.encoded.module);
          if (ledger) ledger.addModule(unit.module, result.encoded.checksums!);
          compressedWeightBytes += moduleStats(result.encoded.module).compressedBytes;
        } else {
          keptUncompressed.push(unit.module);
          options.onWarning?.(`${unit.module} kept uncompressed (BF16): ${(result as { error: Error }).error.message}`);
          tensors = await Promise.all(
            unit.weights.map(async (w) => ({ name: w, dtype: "BF16" as const, shape: weights.info(w).shape, data: await weights.read(w) })),
          );
          for (const t of tensors) ledger?.addTensor(t.name, await pool.checksum(t.data));
          compressedWeightBytes += bytes;
        }
        weightBytes += bytes;
        outputBytes += tensors.reduce((s, t) => s + t.data.byteLength, 0);
        await writer.add(tensors);
        report(i + 1);
      },
      memory.budget,
    );
    const finished = await finishModelDirectory(
      dir,
      writer,
      { config: { text: input.configText, source: configSource }, sideFilesFrom: input.sideFilesFrom, weights, unchanged: passthrough, checksums: ledger && { ledger, pool } },
      (text) => setJsonMember(text, "dfloat11_config", dfloat11Config(chosen.patternDict), configSource),
    );
    outputBytes += finished.copiedBytes;
    return finished.files;
  }, { overwrite: options.overwrite }).catch((e: unknown) => {
    throw explainWriteError(e, output, inputBytes);
  });

  return {
    architecture: chosen.architecture,
    modules: units.length,
    keptUncompressed,
    weightBytes,
    compressedWeightBytes,
    inputBytes,
    outputBytes,
    files,
    seconds: (performance.now() - started) / 1000,
  };
}

/**
 * DFloat11 is lossless for BF16 weights only: refuse, before anything is written, a model with nothing
 * to compress (no BF16 matrix: an FP16 or FP32 model) or whose matrices to compress are not all BF16,
 * naming the dtypes found and what to do.
 */
function refuseUnlessBf16(input: string, weights: TensorSource, toCompress: readonly string[]): void {
  const other = toCompress.filter((w) => weights.info(w).dtype !== "BF16");
  if (toCompress.length > 0 && other.length === 0) return;
  const matrices = weights.names().filter((n) => weights.info(n).shape.length >= 2);
  const found = formatDtypes(dtypeBreakdown(weights, matrices.length ? matrices : weights.names()));
  const what = toCompress.length === 0 ? "it has no BF16 weight matrix to compress" : `${other[0]} is ${weights.info(other[0]).dtype}`;
  throw new CliError(
    `${input}: nothing written: DFloat11 compresses BF16 weights (losslessly), and ${what}. Its ${matrices.length ? "matrices" : "tensors"}: ${found}. ` +
      `Use the model's BF16 release if there is one. Converting FP16 or FP32 to BF16 first would round away mantissa bits, so df11 does not do it for you; ` +
      `if that loss is acceptable to you, convert it yourself (e.g. in Python: model.to(torch.bfloat16).save_pretrained(...)) and compress the result.`,
  );
}
