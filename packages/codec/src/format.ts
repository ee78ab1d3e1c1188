import { InvalidModuleError } from "./errors.js";
import { validateLuts } from "./luts.js";

/** Threads per GPU block in the format's launch geometry (`dfloat11_config.threads_per_block[0]`). */
export const THREADS_PER_BLOCK = 512;
/** Bytes of the coded stream each thread owns (`dfloat11_config.bytes_per_thread`). */
export const BYTES_PER_THREAD = 8;
export const BITS_PER_THREAD = BYTES_PER_THREAD * 8;
export const BYTES_PER_BLOCK = THREADS_PER_BLOCK * BYTES_PER_THREAD;
/** Version string written into `dfloat11_config`. */
export const FORMAT_VERSION = "0.5.0";

/** The six tensors of one compressed module, under their safetensors suffixes. */
export const MODULE_TENSOR_SUFFIXES = [
  "luts",
  "encoded_exponent",
  "sign_mantissa",
  "output_positions",
  "gaps",
  "split_positions",
] as const;
export type ModuleTensorSuffix = (typeof MODULE_TENSOR_SUFFIXES)[number];

/**
 * One DFloat11-compressed module (a Linear/Embedding weight, or several weights concatenated), in the
 * exact layout of the official format. Each field corresponds to the safetensors tensor `M.<suffix>`.
 */
export interface DF11Module {
  /** `luts`: U8 [n_luts, 256], decode rows then the code-length row. */
  readonly luts: Uint8Array;
  /** `encoded_exponent`: U8 [n_bytes], the MSB-first Huffman bit stream. */
  readonly encodedExponent: Uint8Array;
  /** `sign_mantissa`: U8 [n_elements]. */
  readonly signMantissa: Uint8Array;
  /** `output_positions`: uint32 [blocks + 1] (stored as U8 little-endian). */
  readonly outputPositions: Uint32Array;
  /** `gaps`: 5-bit per-thread offsets, MSB-first, packed into U8 [ceil(5·threads/8)]. */
  readonly gaps: Uint8Array;
  /** `split_positions`: I64 [parts − 1], cumulative element counts where the weights split. */
  readonly splitPositions: readonly number[];
}

/**
 * A module without its two bulk tensors, their byte lengths instead: what a loader checks before
 * streaming `encoded_exponent` and `sign_mantissa` from the file straight to the GPU.
 */
export interface DF11ModuleHeader extends Omit<DF11Module, "encodedExponent" | "signMantissa"> {
  /** Bytes of `encoded_exponent`. */
  readonly encodedExponentBytes: number;
  /** Bytes of `sign_mantissa` (= elements). */
  readonly signMantissaBytes: number;
}

/** Number of GPU blocks the format launches for a stream of `nBytes` bytes. */
export const blockCount = (nBytes: number): number => Math.ceil(nBytes / BYTES_PER_BLOCK);

/** Element count of a module. */
export const elementCount = (m: DF11Module): number => m.signMantissa.length;

/** Pack per-thread gap values (0…31) into the 5-bit MSB-first byte layout. */
export function packGaps(gaps: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil((gaps.length * 5) / 8));
  let bit = 0;
  for (let t = 0; t < gaps.length; t++, bit += 5) {
    const g = gaps[t] & 31;
    const byte = bit >>> 3;
    const shift = 11 - (bit & 7); // place the 5 bits inside a big-endian 16-bit window
    const v = g << shift;
    out[byte] |= v >>> 8;
    if (byte + 1 < out.length) out[byte + 1] |= v & 0xff;
  }
  return out;
}

/** Gap of thread `t` from the packed layout. */
export function readGap(packed: Uint8Array, t: number): number {
  const bit = t * 5;
  const byte = bit >>> 3;
  const window = (packed[byte] << 8) | (byte + 1 < packed.length ? packed[byte + 1] : 0);
  return (window >>> (11 - (bit & 7))) & 31;
}

/** All per-thread gaps. */
export function unpackGaps(packed: Uint8Array, threads: number): Uint8Array {
  const out = new Uint8Array(threads);
  for (let t = 0; t < threads; t++) out[t] = readGap(packed, t);
  return out;
}

/** output_positions as stored in safetensors: little-endian uint32 bytes. */
export function outputPositionsToBytes(positions: Uint32Array): Uint8Array {
  const bytes = new Uint8Array(positions.length * 4);
  const view = new DataView(bytes.buffer);
  positions.forEach((p, i) => view.setUint32(i * 4, p, true));
  return bytes;
}

/** Parse the U8 `output_positions` tensor. */
export function outputPositionsFromBytes(bytes: Uint8Array): Uint32Array {
  if (bytes.length % 4 !== 0) {
    throw new InvalidModuleError("output_positions", `${bytes.length} bytes is not a whole number of uint32`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Uint32Array(bytes.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = view.getUint32(i * 4, true);
  return out;
}

/**
 * Start element of block `k`. Official files whose stream ends byte-aligned inside a block no code
 * starts in carry one entry fewer; that missing entry means "no elements left", i.e. n_elements.
 */
export function blockStart(m: DF11Module, k: number): number {
  return k < m.outputPositions.length ? m.outputPositions[k] : m.signMantissa.length;
}

/**
 * Structural checks of a module against the format, so that decoding it cannot hang or read out of
 * bounds. Throws {@link InvalidModuleError} naming the offending tensor.
 */
export function validateModule(m: DF11Module): void {
  validateModuleHeader({ ...m, encodedExponentBytes: m.encodedExponent.length, signMantissaBytes: m.signMantissa.length });
}

/**
 * {@link validateModule} for a module whose bulk tensors are known by their lengths only (they are
 * streamed elsewhere): everything but the bytes of `encoded_exponent` and `sign_mantissa` is checked.
 */
export function validateModuleHeader(m: DF11ModuleHeader): void {
  validateLuts(m.luts);
  const n = m.signMantissaBytes;
  const nBytes = m.encodedExponentBytes;
  if (n === 0) throw new InvalidModuleError("sign_mantissa", "module has no elements");
  if (nBytes === 0) throw new InvalidModuleError("encoded_exponent", "empty bit stream");
  if (n > 0xffffffff) throw new InvalidModuleError("sign_mantissa", `${n} elements exceed the uint32 positions`);
  const blocks = blockCount(nBytes);
  const op = m.outputPositions;
  if (op.length !== blocks + 1 && op.length !== blocks) {
    throw new InvalidModuleError(
      "output_positions",
      `expected ${blocks + 1} entries for ${nBytes} coded bytes, got ${op.length}`,
    );
  }
  if (op[0] !== 0) throw new InvalidModuleError("output_positions", `first entry is ${op[0]}, expected 0`);
  for (let k = 1; k < op.length; k++) {
    if (op[k] < op[k - 1] || op[k] > n) {
      throw new InvalidModuleError("output_positions", `entry ${k} = ${op[k]} is out of order or beyond ${n} elements`);
    }
  }
  if (op.length === blocks + 1 && op[blocks] !== n) {
    throw new InvalidModuleError("output_positions", `last entry ${op[blocks]} ≠ element count ${n}`);
  }
  const gapBytes = Math.ceil((blocks * THREADS_PER_BLOCK * 5) / 8);
  if (m.gaps.length < gapBytes) {
    throw new InvalidModuleError("gaps", `expected ${gapBytes} bytes for ${blocks} blocks, got ${m.gaps.length}`);
  }
  let previous = 0;
  for (const s of m.splitPositions) {
    if (!Number.isInteger(s) || s <= previous || s >= n) {
      throw new InvalidModuleError("split_positions", `${s} is not increasing inside (0, ${n})`);
    }
    previous = s;
  }
}

/** Split a decoded module into its constituent weights (views, no copy). */
export function splitWeights<T extends Uint16Array>(decoded: T, splitPositions: readonly number[]): T[] {
  const bounds = [0, ...splitPositions, decoded.length];
  return bounds.slice(1).map((end, i) => decoded.subarray(bounds[i], end) as T);
}

/** Each stored tensor of a module, as the bytes written to safetensors (split_positions as I64 LE). */
export function moduleTensorBytes(m: DF11Module): Record<ModuleTensorSuffix, Uint8Array> {
  const split = new Uint8Array(m.splitPositions.length * 8);
  const view = new DataView(split.buffer);
  m.splitPositions.forEach((p, i) => view.setBigInt64(i * 8, BigInt(p), true));
  return {
    luts: m.luts,
    encoded_exponent: m.encodedExponent,
    sign_mantissa: m.signMantissa,
    output_positions: outputPositionsToBytes(m.outputPositions),
    gaps: m.gaps,
    split_positions: split,
  };
}
