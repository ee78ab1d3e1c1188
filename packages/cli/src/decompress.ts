import { availableParallelism } from "node:os";
import { join } from "node:path";
import { splitWeights } from "@df11/codec";
import {
  readModelConfig,
  readModelConfigText,
  SafetensorsCollection,
  ShardedSafetensorsWriter,
  removeJsonMember,
  writeDirectoryAtomically,
  DEFAULT_MAX_SHARD_BYTES,
  type TensorToWrite,
} from "@df11/hub-loader";
import {
  bytesOf,
  checkDecodedWeights,
  checkStoredTensors,
  compressedModulesOf,
  isModuleTensor,
  namingModule,
  readDF11Module,
  readRecordedChecksums,
  weightNamesOf,
} from "@df11/models";
import { df11ConfigOf, recordedShapes, shapeOfWeight } from "./model-info.js";
import { defaultMaxMemory, planMemory, storedConcurrency } from "./memory-plan.js";
import { orderedPipeline } from "./ordered-pipeline.js";
import { assertDistinctDirectories, explainWriteError, finishModelDirectory } from "./output-model.js";
import { CodecPool } from "./pool.js";
import type { Progress } from "./progress.js";
import { CliError } from "./errors.js";

export interface DecompressOptions {
  readonly threads?: number;
  readonly maxShardBytes?: number;
  readonly overwrite?: boolean;
  /** Bound on peak memory in bytes (default: half the available memory); limits the modules in flight. */
  readonly maxMemory?: number;
  readonly onProgress?: (p: Progress) => void;
  readonly onWarning?: (message: string) => void;
}

export interface DecompressSummary {
  readonly modules: number;
  readonly outputBytes: number;
  readonly files: readonly string[];
  readonly seconds: number;
  /** Modules whose decoded weights matched a recorded checksum, and tensors copied after a stored-checksum check. */
  readonly checkedModules: number;
  readonly checkedTensors: number;
  /** Files that record no checksums: what they hold was only decoded, not checked against a record. */
  readonly filesWithoutChecksums: readonly string[];
}

/**
 * Decode a DFloat11 model back into a standard BF16 model whose tensors are bit-identical to the original. Where the
 * files record checksums, every module's decoded weights and every copied tensor must match them, or
 * nothing is written ({@link ChecksumMismatchError} names the module or tensor).
 */
export async function decompressModel(input: string, output: string, options: DecompressOptions = {}): Promise<DecompressSummary> {
  const started = performance.now();
  assertDistinctDirectories(input, output);
  const config = await readModelConfig(input);
  const { patternDict } = df11ConfigOf(config, input);
  await using weights = await SafetensorsCollection.openDirectory(input);
  const recorded = recordedShapes(weights);
  const modules = compressedModulesOf(weights.names());
  const passthrough = weights.names().filter((n) => !isModuleTensor(n));
  const totalBytes = modules.reduce((s, m) => s + weights.info(`${m}.sign_mantissa`).byteLength * 2, 0);
  const threads = options.threads ?? availableParallelism();
  const checksums = readRecordedChecksums(weights);
  // A module in flight holds its stored tensors (~0.7 of its BF16 size) here and in its worker, and the
  // decoded weights in the worker and copied back. (Shared memory avoided the copies but was measured
  // worse: SharedArrayBuffers are freed lazily, and peak RSS doubled.)
  const moduleBytes = (m: string) => 3.4 * weights.info(`${m}.sign_mantissa`).byteLength * 2;
  const memory = planMemory(options.maxMemory ?? defaultMaxMemory(), threads, modules, moduleBytes);
  if (memory.note) options.onWarning?.(memory.note);
  await using pool = new CodecPool(threads);
  let decodedBytes = 0;
  let copiedBytes = 0;
  let checkedModules = 0;
  // The tensors copied as they are must match their records before anything is written.
  const copied = await checkStoredTensors(weights, checksums, {
    skip: isModuleTensor,
    sum: (b) => pool.checksum(b),
    concurrency: storedConcurrency(weights, threads, memory.budget.bytes),
  });

  const files = await writeDirectoryAtomically(output, async (dir) => {
    await using writer = new ShardedSafetensorsWriter(dir, {
      maxShardBytes: options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES,
      metadata: { format: "pt" },
      memoryBytes: memory.shardMemoryBytes,
    });
    options.onProgress?.({ modulesDone: 0, modulesTotal: modules.length, bytesDone: 0, bytesTotal: totalBytes });
    await orderedPipeline(
      modules,
      threads,
      async (path) => {
        const module = await readDF11Module(weights, path);
        const { decoded, checksum } = await pool.decode(module).catch((e) => {
          throw namingModule(path, e);
        });
        return { path, decoded, checksum, splits: module.splitPositions };
      },
      async ({ path, decoded, checksum, splits }, i) => {
        if (checkDecodedWeights(path, checksums, checksum)) checkedModules++;
        const names = weightNamesOf(patternDict, path);
        const parts = splitWeights(decoded, splits);
        if (parts.length !== names.length) {
          throw new CliError(`${path}.split_positions: ${parts.length} parts, but the pattern_dict lists ${names.length} weights`);
        }
        const tensors: TensorToWrite[] = parts.map((p, j) => ({
          name: names[j],
          dtype: "BF16",
          shape: shapeOfWeight(config, recorded, names[j], p.length),
          data: bytesOf(p),
        }));
        for (const t of tensors) if (weights.has(t.name)) throw new CliError(`${t.name}: stored both compressed and uncompressed`);
        decodedBytes += decoded.byteLength;
        await writer.add(tensors);
        options.onProgress?.({ modulesDone: i + 1, modulesTotal: modules.length, bytesDone: decodedBytes, bytesTotal: totalBytes });
      },
      memory.budget,
    );
    const configSource = join(input, "config.json");
    const finished = await finishModelDirectory(dir, writer, { config: { text: await readModelConfigText(input), source: configSource }, sideFilesFrom: input, weights, unchanged: passthrough }, (text) =>
      removeJsonMember(text, "dfloat11_config", configSource),
    );
    copiedBytes = finished.copiedBytes;
    return finished.files;
  }, { overwrite: options.overwrite }).catch((e: unknown) => {
    throw explainWriteError(e, output, totalBytes);
  });
  return {
    modules: modules.length,
    outputBytes: decodedBytes + copiedBytes,
    files,
    seconds: (performance.now() - started) / 1000,
    checkedModules,
    checkedTensors: copied.checked,
    filesWithoutChecksums: checksums.filesWithout,
  };
}
