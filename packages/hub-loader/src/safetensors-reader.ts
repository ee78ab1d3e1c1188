import { open, type FileHandle } from "node:fs/promises";
import { DTYPE_SIZES, isDType, type DType } from "./dtypes.js";
import { SafetensorsError } from "./errors.js";

/** Headers larger than this are refused (the reference implementation's limit). */
export const MAX_HEADER_BYTES = 100_000_000;
/** Largest single positional read; bigger tensors are read in pieces. */
const READ_CHUNK = 1 << 30;
/** Piece size of concurrent reads of one tensor. */
const PARALLEL_PIECE = 16 << 20;

/** Where one tensor lives in a safetensors file. */
export interface TensorInfo {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** Absolute offset of the tensor's first byte in the file. */
  readonly fileOffset: number;
  readonly byteLength: number;
}

const isCount = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

/** Parse and check a header against the size of the data section that follows it. */
export function parseSafetensorsHeader(
  file: string,
  json: string,
  dataStart: number,
  dataSize: number,
): { tensors: Map<string, TensorInfo>; metadata: Record<string, string> } {
  let header: unknown;
  try {
    header = JSON.parse(json);
  } catch (e) {
    throw new SafetensorsError(file, `header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw new SafetensorsError(file, "header is not a JSON object");
  }
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  const spans: Array<[number, number, string]> = [];
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof entry !== "object" || entry === null) throw new SafetensorsError(file, "__metadata__ is not an object");
      metadata = entry as Record<string, string>;
      continue;
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e !== "object" || e === null) throw new SafetensorsError(file, "entry is not an object", name);
    if (!isDType(e.dtype)) throw new SafetensorsError(file, `unknown dtype ${JSON.stringify(e.dtype)}`, name);
    if (!Array.isArray(e.shape) || !e.shape.every(isCount)) {
      throw new SafetensorsError(file, `shape ${JSON.stringify(e.shape)} is not a list of sizes`, name);
    }
    const offsets = e.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[0] > offsets[1]) {
      throw new SafetensorsError(file, `data_offsets ${JSON.stringify(offsets)} are not [begin, end]`, name);
    }
    const [begin, end] = offsets as [number, number];
    if (end > dataSize) {
      throw new SafetensorsError(file, `data_offsets [${begin}, ${end}] run past the ${dataSize}-byte data section (truncated file?)`, name);
    }
    const elements = (e.shape as number[]).reduce((a, b) => a * b, 1);
    const expected = elements * DTYPE_SIZES[e.dtype];
    if (expected !== end - begin) {
      throw new SafetensorsError(
        file,
        `${e.dtype} ${JSON.stringify(e.shape)} needs ${expected} bytes but data_offsets span ${end - begin}`,
        name,
      );
    }
    tensors.set(name, { name, dtype: e.dtype, shape: e.shape as number[], fileOffset: dataStart + begin, byteLength: end - begin });
    if (end > begin) spans.push([begin, end, name]);
  }
  spans.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i][0] < spans[i - 1][1]) {
      throw new SafetensorsError(file, `data overlaps tensor ${spans[i - 1][2]}`, spans[i][2]);
    }
  }
  return { tensors, metadata };
}

/**
 * A safetensors file opened for positional reads: only the header is read up front, each tensor is read
 * on demand, so files of any size (> 4 GB included) work without loading them whole.
 */
export class SafetensorsFile implements AsyncDisposable {
  private constructor(
    readonly path: string,
    private handle: FileHandle | undefined,
    readonly tensors: ReadonlyMap<string, TensorInfo>,
    readonly metadata: Readonly<Record<string, string>>,
  ) {}

  /** Open and validate a file. Throws {@link SafetensorsError} naming the file (and tensor) when malformed. */
  static async open(path: string): Promise<SafetensorsFile> {
    const handle = await open(path, "r");
    try {
      const { size } = await handle.stat();
      if (size < 8) throw new SafetensorsError(path, `file is ${size} bytes, too short for a header`);
      const lenBuf = Buffer.alloc(8);
      await handle.read(lenBuf, 0, 8, 0);
      const headerLength = Number(lenBuf.readBigUInt64LE(0));
      if (headerLength > MAX_HEADER_BYTES || 8 + headerLength > size) {
        throw new SafetensorsError(path, `header length ${headerLength} is impossible for a ${size}-byte file`);
      }
      const headerBuf = Buffer.alloc(headerLength);
      await handle.read(headerBuf, 0, headerLength, 8);
      const { tensors, metadata } = parseSafetensorsHeader(path, headerBuf.toString("utf8"), 8 + headerLength, size - 8 - headerLength);
      return new SafetensorsFile(path, handle, tensors, metadata);
    } catch (e) {
      await handle.close();
      throw e;
    }
  }

  /** Names of all tensors in the file. */
  names(): string[] {
    return [...this.tensors.keys()];
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new SafetensorsError(this.path, "no such tensor", name);
    return t;
  }

  /** Read a tensor's raw bytes (a fresh, 8-byte-aligned buffer). */
  async read(name: string): Promise<Uint8Array> {
    const t = this.info(name);
    const out = new Uint8Array(new ArrayBuffer(Math.ceil(t.byteLength / 8) * 8), 0, t.byteLength);
    await this.readInto(name, out);
    return out;
  }

  /**
   * Read a tensor's raw bytes into `target` (length ≥ the tensor's byte length). With `concurrency` > 1
   * the tensor is read in 16 MiB pieces, that many at once (positional reads run on libuv's thread pool:
   * from the page cache, one reader moves a few GB/s, several move many). With `range`, only bytes
   * [range.from, range.from + target.length) of the tensor are read (into target[0…]). Settles only once
   * no read into `target` is in flight (a failed piece stops the others from starting new ones), so a
   * caller may free `target` (pinned memory) as soon as this rejects. A failed read names the file and tensor.
   */
  async readInto(name: string, target: Uint8Array, concurrency = 1, range?: { from: number }): Promise<void> {
    const t = this.info(name);
    const handle = this.handle;
    if (!handle) throw new SafetensorsError(this.path, "file is closed", name);
    const start = range?.from ?? 0;
    const length = range ? target.length : t.byteLength;
    if (!Number.isInteger(start) || start < 0 || start + length > t.byteLength) throw new RangeError(`bytes [${start}, ${start + length}) are outside ${name}'s ${t.byteLength}`);
    if (target.length < length) throw new RangeError(`target holds ${target.length} bytes, ${name} needs ${length}`);
    const piece = concurrency > 1 ? PARALLEL_PIECE : READ_CHUNK;
    let failed = false;
    const readRange = async (from: number, to: number) => {
      for (let done = from; done < to && !failed; ) {
        let bytesRead: number;
        try {
          ({ bytesRead } = await handle.read(target, done, Math.min(READ_CHUNK, to - done), t.fileOffset + start + done));
        } catch (e) {
          throw Object.assign(new SafetensorsError(this.path, `read of bytes [${start + done}, ${start + to}) failed (${(e as Error).message})`, name), { cause: e });
        }
        if (bytesRead === 0) throw new SafetensorsError(this.path, "file ended before the tensor's data (truncated?)", name);
        done += bytesRead;
      }
    };
    let next = 0;
    const worker = async () => {
      while (next < length && !failed) {
        const from = next;
        next = Math.min(length, next + piece);
        try {
          await readRange(from, next);
        } catch (e) {
          failed = true;
          throw e;
        }
      }
    };
    // NaN or fractional concurrency: whole readers (at least one), never none.
    const workers = Math.max(1, Math.min(Math.floor(concurrency) || 1, Math.ceil(length / piece)));
    // allSettled, not all: a rejection must not return while another reader still writes into `target`.
    const results = await Promise.allSettled(Array.from({ length: workers }, worker));
    const failure = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failure) throw failure.reason;
  }

  async close(): Promise<void> {
    const h = this.handle;
    this.handle = undefined;
    await h?.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
