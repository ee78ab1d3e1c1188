/**
 * The DF11 fused layout: a lossless, fixed-width coding of a BF16 matrix made for decoding inside a
 * matrix-vector kernel (GEMV), in registers. DF11 stays the file format; a GPU engine transcodes each
 * DF11 (or BF16) matrix into this layout when it loads it.
 *
 * Why: the Huffman code of DFloat11 is variable-length, so a GPU must decode it to scratch memory before
 * multiplying, which moves ~3× the bytes of the compressed weights. Here every weight keeps its raw
 * sign+mantissa byte (as in DF11) and its exponent becomes a 3-bit code indexing its row's 8 most
 * frequent exponents — 11 bits per weight, fixed positions, decoded with a handful of byte permutes.
 * The few weights whose exponent is not among the 8 (≈1 % on LLM weights) are patched from a per-row
 * list of escapes. Every BF16 bit pattern round-trips, NaN, ±Inf, −0 and denormals included.
 *
 * ## Layout of a matrix W[N, K] (K a multiple of 8)
 * - Weights of a row are cut in **steps** of 1024 along K: S = ⌈K / 1024⌉ steps per row (the last one
 *   padded). In a step, position p = k mod 1024 splits as u = p >> 8 (group 0…3), l = (p >> 3) & 31 (the
 *   lane of a 32-thread warp that owns it) and i = p & 7: lane l owns k = 256u + 8l + i, the same k a
 *   BF16 GEMV lane reads with 16-byte loads.
 * - **Row table** (`tables`, 8 bytes per row): the exponent of codes 0…7. The row's 8 most frequent
 *   exponents, by count, ties to the smaller exponent; with fewer than 8 distinct exponents the last one
 *   repeats. A weight's code is the first slot holding its exponent.
 * - **Step block** (`data`, {@link FUSED_STEP_BYTES} = 1408 bytes per row and step, rows one after another):
 *   - bytes [16l, 16l + 16): lane l's sign+mantissa bytes (DF11's `(sign << 7) | mantissa`) of u = 0
 *     (i = 0…7) then u = 1;
 *   - bytes [512 + 16l, 512 + 16l + 16): the same for u = 2 and u = 3;
 *   - bytes [1024 + 128j + 4l, +4), j = 0, 1, 2: code word c_j of lane l (little-endian). Nibble i of c_j
 *     holds in bits 0–2 the code of weight (u = j, i) and in bit 3 bit j of the code of weight (u = 3, i):
 *     the three words are the byte-permute selectors of groups 0–2 as they are, and group 3's are three
 *     shifts away.
 *   Padding weights (k ≥ K) are zero bytes, code 0.
 * - **Escapes**: a weight whose exponent is not in its row's table has code 0, its position p in
 *   `escapePositions` (uint16) and its exponent in `escapeExponents` (uint8); the escapes of (row n,
 *   step s) are entries `escapeOffsets[nS + s] … escapeOffsets[nS + s + 1]` of both, ordered by (l, u, i)
 *   — by lane, so a warp-wide prefix sum places them. `escapeOffsets` has N·S + 1 entries.
 *
 * Size: 11 bits per weight + 64 bits per row + 32 bits per step + 24 bits per escape.
 */
import { CodecError } from "./errors.js";

/** Weights per step along K. */
export const FUSED_STEP = 1024;
/** Bytes of one row-step block: 1024 sign+mantissa bytes and 3 × 32 code words. */
export const FUSED_STEP_BYTES = 1408;

/** A matrix in the fused layout (see the module documentation for the byte layout). */
export interface FusedMatrix {
  readonly rows: number;
  readonly cols: number;
  /** Steps per row: ⌈cols / 1024⌉. */
  readonly steps: number;
  /** rows · steps · 1408 bytes. */
  readonly data: Uint8Array;
  /** rows · 8 exponent bytes. */
  readonly tables: Uint8Array;
  /** rows · steps + 1 entries. */
  readonly escapeOffsets: Uint32Array;
  /** Position in its step (0…1023) of each escaped weight. */
  readonly escapePositions: Uint16Array;
  /** Exponent of each escaped weight. */
  readonly escapeExponents: Uint8Array;
}

/** A matrix the fused layout cannot hold. */
export class FusedLayoutError extends CodecError {
  override name = "FusedLayoutError";
}

/** Bytes a fused matrix takes (all four arrays). */
export function fusedMatrixBytes(m: Pick<FusedMatrix, "data" | "tables" | "escapeOffsets" | "escapePositions" | "escapeExponents">): number {
  return m.data.byteLength + m.tables.byteLength + m.escapeOffsets.byteLength + m.escapePositions.byteLength + m.escapeExponents.byteLength;
}

/** The 8-exponent table of a row from its exponent histogram (see the module documentation). */
export function rowTable(histogram: ArrayLike<number>): Uint8Array {
  const table = new Uint8Array(8);
  const taken = new Uint8Array(256);
  for (let c = 0; c < 8; c++) {
    let best = -1;
    for (let e = 0; e < 256; e++) if (!taken[e] && histogram[e] > 0 && (best < 0 || histogram[e] > histogram[best])) best = e;
    if (best < 0) {
      table[c] = table[c - 1];
      continue;
    }
    taken[best] = 1;
    table[c] = best;
  }
  return table;
}

/** Code of each exponent under a table (8 = escape). */
function codeMap(table: Uint8Array): Uint8Array {
  const map = new Uint8Array(256).fill(8);
  for (let c = 7; c >= 0; c--) map[table[c]] = c;
  return map;
}

function checkShape(rows: number, cols: number): void {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 1 || cols < 8 || cols % 8 !== 0) {
    throw new FusedLayoutError(`a fused matrix needs rows ≥ 1 and cols a positive multiple of 8, got [${rows}, ${cols}]`);
  }
  if (cols >= 1 << 24) throw new FusedLayoutError(`rows of ${cols} weights are too long for the fused layout (< 2^24)`);
}

/**
 * Encode BF16 bit patterns `w` (row-major [rows, cols]) into the fused layout. Lossless for every bit
 * pattern. Throws {@link FusedLayoutError} when cols is not a multiple of 8.
 */
export function encodeFusedMatrix(w: Uint16Array, rows: number, cols: number): FusedMatrix {
  checkShape(rows, cols);
  if (w.length !== rows * cols) throw new FusedLayoutError(`expected ${rows * cols} weights for [${rows}, ${cols}], got ${w.length}`);
  const steps = Math.ceil(cols / FUSED_STEP);
  const data = new Uint8Array(rows * steps * FUSED_STEP_BYTES);
  const tables = new Uint8Array(rows * 8);
  const escapeOffsets = new Uint32Array(rows * steps + 1);
  const positions: number[] = [];
  const exponents: number[] = [];
  const histogram = new Uint32Array(256);
  const codes = new Uint8Array(FUSED_STEP);
  for (let n = 0; n < rows; n++) {
    const row = n * cols;
    histogram.fill(0);
    for (let k = 0; k < cols; k++) histogram[(w[row + k] >>> 7) & 0xff]++;
    const table = rowTable(histogram);
    tables.set(table, n * 8);
    const map = codeMap(table);
    for (let s = 0; s < steps; s++) {
      escapeOffsets[n * steps + s] = positions.length;
      const block = (n * steps + s) * FUSED_STEP_BYTES;
      codes.fill(0);
      for (let l = 0; l < 32; l++) {
        for (let u = 0; u < 4; u++) {
          for (let i = 0; i < 8; i++) {
            const p = 256 * u + 8 * l + i;
            const k = s * FUSED_STEP + p;
            if (k >= cols) continue;
            const bits = w[row + k];
            const e = (bits >>> 7) & 0xff;
            data[block + (u < 2 ? 16 * l + 8 * u : 512 + 16 * l + 8 * (u - 2)) + i] = ((bits >>> 8) & 0x80) | (bits & 0x7f);
            const c = map[e];
            if (c === 8) {
              positions.push(p);
              exponents.push(e);
            } else codes[p] = c;
          }
        }
      }
      for (let l = 0; l < 32; l++) {
        for (let j = 0; j < 3; j++) {
          let word = 0;
          for (let i = 0; i < 8; i++) {
            const own = codes[256 * j + 8 * l + i];
            const last = codes[768 + 8 * l + i];
            word |= (own | (((last >>> j) & 1) << 3)) << (4 * i);
          }
          const at = block + 1024 + 128 * j + 4 * l;
          data[at] = word & 0xff;
          data[at + 1] = (word >>> 8) & 0xff;
          data[at + 2] = (word >>> 16) & 0xff;
          data[at + 3] = (word >>> 24) & 0xff;
        }
      }
    }
  }
  escapeOffsets[rows * steps] = positions.length;
  return { rows, cols, steps, data, tables, escapeOffsets, escapePositions: Uint16Array.from(positions), escapeExponents: Uint8Array.from(exponents) };
}

/** Code of weight (u, i) of lane l from its three code words (the inverse of the packing above). */
function codeOf(c: readonly number[], u: number, i: number): number {
  if (u < 3) return (c[u] >>> (4 * i)) & 7;
  return (((c[0] >>> (4 * i + 3)) & 1) | (((c[1] >>> (4 * i + 3)) & 1) << 1) | (((c[2] >>> (4 * i + 3)) & 1) << 2)) >>> 0;
}

/**
 * Decode a fused matrix back to BF16 bit patterns, rows [rowBegin, rowEnd) into `out`
 * ([rowEnd − rowBegin, cols]). Throws {@link FusedLayoutError} on an inconsistent escape list.
 */
export function decodeFusedMatrix(m: FusedMatrix, rowBegin = 0, rowEnd = m.rows, out = new Uint16Array((rowEnd - rowBegin) * m.cols)): Uint16Array {
  const { cols, steps, data, tables, escapeOffsets, escapePositions, escapeExponents } = m;
  const exps = new Uint8Array(FUSED_STEP);
  const c = [0, 0, 0];
  for (let n = rowBegin; n < rowEnd; n++) {
    const table = tables.subarray(n * 8, n * 8 + 8);
    for (let s = 0; s < steps; s++) {
      const block = (n * steps + s) * FUSED_STEP_BYTES;
      for (let l = 0; l < 32; l++) {
        for (let j = 0; j < 3; j++) {
          const at = block + 1024 + 128 * j + 4 * l;
          c[j] = (data[at] | (data[at + 1] << 8) | (data[at + 2] << 16) | (data[at + 3] << 24)) >>> 0;
        }
        for (let u = 0; u < 4; u++) for (let i = 0; i < 8; i++) exps[256 * u + 8 * l + i] = table[codeOf(c, u, i)];
      }
      const lo = escapeOffsets[n * steps + s];
      const hi = escapeOffsets[n * steps + s + 1];
      if (hi < lo || hi > escapePositions.length) throw new FusedLayoutError(`row ${n} step ${s}: escape offsets ${lo}…${hi} outside 0…${escapePositions.length}`);
      for (let e = lo; e < hi; e++) exps[escapePositions[e] & 0x3ff] = escapeExponents[e];
      const base = (n - rowBegin) * cols + s * FUSED_STEP;
      for (let p = 0; p < FUSED_STEP && s * FUSED_STEP + p < cols; p++) {
        const u = p >>> 8;
        const l = (p >>> 3) & 31;
        const sm = data[block + (u < 2 ? 16 * l + 8 * u : 512 + 16 * l + 8 * (u - 2)) + (p & 7)];
        out[base + p] = ((sm & 0x80) << 8) | (exps[p] << 7) | (sm & 0x7f);
      }
    }
  }
  return out;
}

/** What a matrix costs in the fused layout. */
export interface FusedLayoutStats {
  readonly weights: number;
  readonly escapes: number;
  /** escapes / weights. */
  readonly escapeRate: number;
  /** Layout bytes · 8 / weights (tables, offsets and escapes included). */
  readonly bitsPerWeight: number;
  /** Layout bytes / BF16 bytes. */
  readonly ratioToBf16: number;
}

/** Size and escape rate of a fused matrix. */
export function fusedLayoutStats(m: FusedMatrix): FusedLayoutStats {
  const weights = m.rows * m.cols;
  const bytes = fusedMatrixBytes(m);
  return { weights, escapes: m.escapePositions.length, escapeRate: m.escapePositions.length / weights, bitsPerWeight: (bytes * 8) / weights, ratioToBf16: bytes / (weights * 2) };
}
