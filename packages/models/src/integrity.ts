import { CHECKSUM_ALGORITHM, checksumHex, MODULE_TENSOR_SUFFIXES, type ModuleChecksums } from "@df11/codec";
import type { SafetensorsCollection, TensorLayout } from "@df11/hub-loader";
import { ChecksumMismatchError, ModelsError } from "./errors.js";

/** safetensors `__metadata__` key holding the checksums of the file's tensors (JSON, see {@link ChecksumRecord}). */
export const CHECKSUMS_METADATA_KEY = "df11.checksums";
/** safetensors `__metadata__` key naming the df11 version that wrote the file. */
export const WRITER_METADATA_KEY = "df11.writer";
/**
 * The `__metadata__` key transformers' `save_pretrained` writes (`"pt"`). Files df11 gives metadata carry it
 * too: accelerate's loader refuses safetensors metadata without it.
 */
export const TORCH_FORMAT_KEY = "format";

/**
 * What one file records (the value of `df11.checksums`): df11-sum64 checksums of its compressed modules
 * (decoded weights and each stored tensor) and of its plain tensors, as 16 hex digits.
 */
export interface ChecksumRecord {
  readonly algorithm: typeof CHECKSUM_ALGORITHM;
  readonly modules: Record<string, ModuleChecksums>;
  readonly tensors: Record<string, string>;
}

/** Collects checksums while a model is written and gives each shard the metadata of its own tensors. */
export class ChecksumLedger {
  private readonly modules = new Map<string, ModuleChecksums>();
  private readonly tensors = new Map<string, string>();

  /** @param writer recorded as `df11.writer` (e.g. "df11 0.2.0"). */
  constructor(readonly writer: string) {}

  addModule(path: string, sums: ModuleChecksums): void {
    this.modules.set(path, sums);
  }

  addTensor(name: string, hex: string): void {
    this.tensors.set(name, hex);
  }

  /** The `__metadata__` entries of a shard holding `tensors` (with `format: pt`). */
  metadataFor(tensors: readonly TensorLayout[]): Record<string, string> {
    const record: { algorithm: string; modules: Record<string, ModuleChecksums>; tensors: Record<string, string> } = {
      algorithm: CHECKSUM_ALGORITHM,
      modules: {},
      tensors: {},
    };
    for (const t of tensors) {
      const module = moduleOfStoredTensor(t.name);
      if (module && this.modules.has(module)) record.modules[module] = this.modules.get(module)!;
      else if (this.tensors.has(t.name)) record.tensors[t.name] = this.tensors.get(t.name)!;
      else throw new ModelsError(`${t.name}: written without a checksum (internal error)`);
    }
    return { [TORCH_FORMAT_KEY]: "pt", [WRITER_METADATA_KEY]: this.writer, [CHECKSUMS_METADATA_KEY]: JSON.stringify(record) };
  }
}

const moduleOfStoredTensor = (name: string): string | undefined => {
  const suffix = MODULE_TENSOR_SUFFIXES.find((s) => name.endsWith(`.${s}`));
  return suffix ? name.slice(0, -suffix.length - 1) : undefined;
};

/** Checksums recorded across a model's files, and what is not covered by any. */
export interface RecordedChecksums {
  /** Module path → its checksums. */
  readonly modules: ReadonlyMap<string, ModuleChecksums>;
  /** Stored tensor name (module tensors included) → checksum. */
  readonly stored: ReadonlyMap<string, string>;
  /** Files that carry no checksums (official DF11 models, or ones written with --no-checksums). */
  readonly filesWithout: readonly string[];
  /** `df11.writer` values seen. */
  readonly writers: readonly string[];
}

const HEX16 = /^[0-9a-f]{16}$/;

/** Read and validate the `df11.checksums` entries of every file; malformed ones are named with their file. */
export function readRecordedChecksums(weights: SafetensorsCollection): RecordedChecksums {
  const modules = new Map<string, ModuleChecksums>();
  const stored = new Map<string, string>();
  const filesWithout: string[] = [];
  const writers = new Set<string>();
  for (const f of weights.files) {
    const raw = f.metadata[CHECKSUMS_METADATA_KEY];
    if (raw === undefined) {
      filesWithout.push(f.path);
      continue;
    }
    if (f.metadata[WRITER_METADATA_KEY]) writers.add(f.metadata[WRITER_METADATA_KEY]);
    const bad = (what: string) => new ModelsError(`${f.path}: __metadata__ ${CHECKSUMS_METADATA_KEY}: ${what}`);
    let record: ChecksumRecord;
    try {
      record = JSON.parse(raw) as ChecksumRecord;
    } catch {
      throw bad("is not JSON");
    }
    if (record?.algorithm !== CHECKSUM_ALGORITHM) throw bad(`algorithm ${JSON.stringify(record?.algorithm)}; this df11 knows ${CHECKSUM_ALGORITHM}`);
    const checkHex = (where: string, v: unknown) => {
      if (typeof v !== "string" || !HEX16.test(v)) throw bad(`${where}: ${JSON.stringify(v)} is not 16 hex digits`);
      return v;
    };
    // Records name tensors as stored; a renamed view (a multimodal model's language model) keys them its way.
    for (const [storedPath, sums] of Object.entries(record.modules ?? {})) {
      checkHex(`${storedPath}.weights`, sums?.weights);
      for (const s of MODULE_TENSOR_SUFFIXES) checkHex(`${storedPath}.${s}`, sums[s]);
      const path = weights.nameOf(storedPath);
      if (path === undefined) continue;
      for (const s of MODULE_TENSOR_SUFFIXES) stored.set(`${path}.${s}`, sums[s]);
      modules.set(path, sums);
    }
    for (const [storedName, hex] of Object.entries(record.tensors ?? {})) {
      checkHex(storedName, hex);
      const name = weights.nameOf(storedName);
      if (name !== undefined) stored.set(name, hex);
    }
  }
  return { modules, stored, filesWithout, writers: [...writers] };
}

/** The outcome of checking stored tensors. */
export interface StoredCheck {
  readonly checked: number;
  /** Tensors no checksum covers. */
  readonly unchecked: readonly string[];
  /** The checksum of every tensor summed: the checked ones, and with `all` the unchecked ones too. */
  readonly sums: ReadonlyMap<string, string>;
}

/**
 * Check every stored tensor that has a recorded checksum, in file order; throws
 * {@link ChecksumMismatchError} naming the first that differs. `sum` may run elsewhere (worker threads).
 * With `all`, tensors without a record are summed too (what `df11 seal` records), each read once.
 */
export async function checkStoredTensors(
  weights: SafetensorsCollection,
  recorded: RecordedChecksums,
  options: { sum?: (bytes: Uint8Array) => Promise<string> | string; skip?: (name: string) => boolean; concurrency?: number; all?: boolean } = {},
): Promise<StoredCheck> {
  const sum = options.sum ?? checksumHex;
  const names = weights.names().filter((n) => !options.skip?.(n));
  const unchecked = names.filter((n) => !recorded.stored.has(n));
  const toSum = options.all ? names : names.filter((n) => recorded.stored.has(n));
  const sums = new Map<string, string>();
  let next = 0;
  const failures: Array<{ index: number; error: ChecksumMismatchError }> = [];
  const worker = async () => {
    while (next < toSum.length && failures.length === 0) {
      const index = next++;
      const name = toSum[index];
      const actual = await sum(await weights.read(name));
      sums.set(name, actual);
      const expected = recorded.stored.get(name);
      // With several in flight, report the first failing tensor in file order.
      if (expected !== undefined && actual !== expected) failures.push({ index, error: new ChecksumMismatchError(name, expected, actual, "stored") });
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, options.concurrency ?? 1) }, worker));
  if (failures.length > 0) throw failures.sort((x, y) => x.index - y.index)[0].error;
  return { checked: toSum.length - (options.all ? unchecked.length : 0), unchecked, sums };
}

/** Compare a module's decoded-weights checksum with the recorded one (no-op without a record). */
export function checkDecodedWeights(path: string, recorded: RecordedChecksums, actual: string): boolean {
  const expected = recorded.modules.get(path)?.weights;
  if (expected === undefined) return false;
  if (actual !== expected) throw new ChecksumMismatchError(path, expected, actual, "weights");
  return true;
}
