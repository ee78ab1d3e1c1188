import { availableParallelism } from "node:os";
import { readModelConfig, SafetensorsCollection } from "@df11/hub-loader";
import {
  bytesOf,
  checkDecodedWeights,
  checkStoredTensors,
  ChecksumMismatchError,
  compressedModulesOf,
  isModuleTensor,
  currentLayoutName,
  inCurrentLayout,
  languageModelLayout,
  namingModule,
  readDF11Module,
  readRecordedChecksums,
  weightNamesOf,
  type ChecksumLedger,
} from "@df11/models";
import { InvalidModuleError, MODULE_TENSOR_SUFFIXES, splitWeights, type ModuleChecksums } from "@df11/codec";
import { df11ConfigOf, recordedShapes, shapeOfWeight } from "./model-info.js";
import { defaultMaxMemory, planMemory, storedConcurrency } from "./memory-plan.js";
import { orderedPipeline } from "./ordered-pipeline.js";
import { CodecPool } from "./pool.js";
import type { Progress } from "./progress.js";
import { VerificationError } from "./errors.js";

export interface VerifyOptions {
  /** The original BF16 model: every weight must match it bit for bit. */
  readonly against?: string;
  readonly threads?: number;
  /** Bound on peak memory in bytes (default: half the available memory); limits the modules in flight. */
  readonly maxMemory?: number;
  readonly onProgress?: (p: Progress) => void;
  readonly onWarning?: (message: string) => void;
  /** Record every module's and tensor's checksums here, as computed (what `df11 seal` writes). */
  readonly ledger?: ChecksumLedger;
}

export interface VerifyReport {
  readonly modules: number;
  readonly elements: number;
  /** Tensors compared bit for bit with the original (when `against` was given). */
  readonly comparedTensors: number;
  readonly seconds: number;
  /** What the recorded checksums covered, and what they could not. */
  readonly checksums: {
    /** Stored tensors (module tensors and plain ones) whose bytes match their record. */
    readonly storedTensors: number;
    /** Modules whose decoded weights match their record. */
    readonly decodedModules: number;
    /** Tensors no record covers, and files without any. */
    readonly uncheckedTensors: readonly string[];
    readonly filesWithout: readonly string[];
    readonly writers: readonly string[];
  };
}

/**
 * Check a DF11 model: first every stored tensor against the checksum recorded when it was written
 * (without decoding), then decode every module with both decoders (sequential, and GPU-kernel
 * semantics), check structure, shapes and the decoded weights' recorded checksum, and — with
 * `against` — compare every tensor with the original BF16 model. Throws {@link VerificationError}
 * naming the first bad module or tensor. Models without checksums (official ones) are checked by
 * decoding alone; the report lists what no checksum covered.
 */
export async function verifyModel(dir: string, options: VerifyOptions = {}): Promise<VerifyReport> {
  const started = performance.now();
  const config = await readModelConfig(dir);
  const { patternDict } = df11ConfigOf(config, dir);
  await using weights = await SafetensorsCollection.openDirectory(dir);
  await using againstFiles = options.against ? await SafetensorsCollection.openDirectory(options.against) : undefined;
  // Compared under transformers 4.52+ names on both sides: a multimodal original may predate them.
  const original = againstFiles && inCurrentLayout(againstFiles);
  const currentName = currentLayoutName(languageModelLayout(weights.names()));
  const recorded = recordedShapes(weights);
  // A module in flight: stored tensors (~0.7 of its BF16 size) here and in the worker, both decodes, the
  // original's tensor when comparing.
  const moduleBytes = (m: string) => (options.against ? 4.5 : 3.5) * weights.info(`${m}.sign_mantissa`).byteLength * 2;
  const modules = compressedModulesOf(weights.names());
  const threads = options.threads ?? availableParallelism();
  const memory = planMemory(options.maxMemory ?? defaultMaxMemory(), threads, modules, moduleBytes);
  if (memory.note) options.onWarning?.(memory.note);
  await using pool = new CodecPool(threads);
  let elements = 0;
  let compared = 0;
  const covered = new Set<string>();
  const totalBytes = modules.reduce((s, m) => s + weights.info(`${m}.sign_mantissa`).byteLength * 2, 0);
  let doneBytes = 0;
  let decodedModules = 0;
  const checksums = readRecordedChecksums(weights);
  // With a ledger (df11 seal) every tensor is summed here, once; the modules' entries are completed below.
  const stored = await asVerificationError(() =>
    checkStoredTensors(weights, checksums, {
      sum: (b) => pool.checksum(b),
      concurrency: storedConcurrency(weights, threads, memory.budget.bytes),
      all: !!options.ledger,
    }),
  );

  const compare = async (name: string, bytes: Uint8Array) => {
    const key = currentName(name);
    covered.add(key);
    if (!original) return;
    if (!original.has(key)) throw new VerificationError(name, `not in the original model ${options.against}`);
    const ref = await original.read(key);
    if (!Buffer.from(ref.buffer, ref.byteOffset, ref.byteLength).equals(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))) {
      throw new VerificationError(name, "differs from the original");
    }
    compared++;
  };

  await orderedPipeline(
    modules,
    threads,
    async (path) => {
      try {
        const module = await readDF11Module(weights, path);
        const checked = await pool.check(module);
        if (options.ledger) {
          // The stored tensors' checksums are of their bytes as stored (not as re-derived from the module).
          const sums = { weights: checked.checksum } as ModuleChecksums;
          for (const s of MODULE_TENSOR_SUFFIXES) sums[s] = stored.sums.get(`${path}.${s}`)!;
          options.ledger.addModule(path, sums);
        }
        return { path, module, ...checked };
      } catch (e) {
        const named = namingModule(path, e);
        throw named instanceof InvalidModuleError ? new VerificationError(named.field, named.detail) : new VerificationError(path, (e as Error).message);
      }
    },
    async ({ path, module, decoded, checksum }, i) => {
      if (await asVerificationError(async () => checkDecodedWeights(path, checksums, checksum))) decodedModules++;
      const names = weightNamesOf(patternDict, path);
      const parts = splitWeights(decoded, module.splitPositions);
      if (parts.length !== names.length) {
        throw new VerificationError(`${path}.split_positions`, `${parts.length} parts, the pattern_dict lists ${names.length} weights`);
      }
      for (let j = 0; j < parts.length; j++) {
        try {
          shapeOfWeight(config, recorded, names[j], parts[j].length);
        } catch (e) {
          throw new VerificationError(names[j], (e as Error).message);
        }
        await compare(names[j], bytesOf(parts[j]));
      }
      elements += decoded.length;
      doneBytes += decoded.byteLength;
      options.onProgress?.({ modulesDone: i + 1, modulesTotal: modules.length, bytesDone: doneBytes, bytesTotal: totalBytes });
    },
    memory.budget,
  );
  for (const name of weights.names().filter((n) => !isModuleTensor(n))) {
    const data = await weights.read(name);
    await compare(name, data);
    options.ledger?.addTensor(name, stored.sums.get(name)!);
  }
  if (original) {
    const missing = original.names().find((n) => !covered.has(n));
    if (missing) throw new VerificationError(missing, "is in the original model but not in the DF11 model");
  }
  return {
    modules: modules.length,
    elements,
    comparedTensors: compared,
    seconds: (performance.now() - started) / 1000,
    checksums: {
      storedTensors: stored.checked,
      decodedModules,
      uncheckedTensors: stored.unchecked,
      filesWithout: checksums.filesWithout,
      writers: checksums.writers,
    },
  };
}

/** A checksum mismatch, reported as verify reports any bad tensor. */
async function asVerificationError<T>(check: () => Promise<T>): Promise<T> {
  try {
    return await check();
  } catch (e) {
    if (e instanceof ChecksumMismatchError) throw new VerificationError(e.tensor, e.message.slice(e.tensor.length + 2));
    throw e;
  }
}
