/**
 * The DF11 fused layout: a lossless, fixed-width coding of a BF16 matrix made for decoding inside a
 * matrix kernel, in registers, straight into the operands of the tensor cores. DF11 stays the file
 * format; a GPU engine transcodes each DF11 (or BF16) matrix into this layout when it loads it.
 *
 * Why: the Huffman code of DFloat11 is variable-length, so a GPU must decode it to scratch memory before
 * multiplying, which moves ~3× the bytes of the compressed weights. Here every weight keeps its raw
 * sign+mantissa byte (as in DF11) and its exponent becomes a 3-bit code indexing its row's 8 most
 * frequent exponents — 11 bits per weight, fixed positions, decoded with a handful of byte permutes.
 * The few weights whose exponent is not among the 8 (≈1.3 % of LLM-like weights) are patched from a
 * per-tile list of escapes. Every BF16 bit pattern round-trips, NaN, ±Inf, −0 and denormals included.
 *
 * ## Layout of a matrix W[N, K] (K a multiple of 8)
 * - Rows come in **groups** of 8 (⌈N/8⌉ groups; the last one padded), K in **tiles** of 256 (⌈K/256⌉
 *   tiles; padded). A tile (group, t) holds 2048 weights, 64 per lane of a 32-thread warp: lane
 *   L = 4g + q owns row 8·group + g and k = 256t + 32c + 8q + i for chunk c = 0…7 and i = 0…7 — in each
 *   chunk, the four k-pairs a tensor-core (mma.m16n8k16) B operand register pair takes for column g.
 *   Its position in the tile is p = 64L + 8c + i.
 * - **Row table** (`tables`, 8 bytes per row, rows padded to the groups): the exponent of codes 0…7. The
 *   row's 8 most frequent exponents, by count, ties to the smaller exponent; with fewer than 8 distinct
 *   exponents the last one repeats. A weight's code is the first slot holding its exponent.
 * - **Tile block** (`data`, {@link FUSED_TILE_BYTES} = 2816 bytes per tile, tiles of a group in order,
 *   groups in order):
 *   - bytes [512j + 16L, +16), j = 0…3: lane L's sign+mantissa bytes (DF11's `(sign << 7) | mantissa`)
 *     of chunk 2j (i = 0…7) then chunk 2j + 1;
 *   - bytes [2048 + 128w + 4L, +4), w = 0…5: code word w of lane L (little-endian). Nibble i of word w
 *     holds in bits 0–2 the code of (chunk w, i) and in bit 3 bit (w mod 3) of the code of
 *     (chunk 6 + ⌊w/3⌋, i): words 0–5 are the byte-permute selectors of chunks 0–5 as they are, those of
 *     chunks 6 and 7 three shifts away.
 *   Padding weights (n ≥ N or k ≥ K) are zero bytes, code 0 (their value is never used: the kernels
 *   multiply them by zeros).
 * - **Escapes**: a weight whose exponent is not in its row's table has code 0, its position p in
 *   `escapePositions` (uint16) and its exponent in `escapeExponents` (uint8); the escapes of tile
 *   (group, t) are entries `escapeOffsets[group·T + t] … escapeOffsets[group·T + t + 1]` of both, in
 *   ascending p (lane-major, so a warp-wide prefix sum places them). `escapeOffsets` has ⌈N/8⌉·T + 1 entries.
 *
 * Size: 11 bits per weight + 64 bits per row + 32 bits per tile + 24 bits per escape.
 */
import { CodecError } from "./errors.js";

/** Rows per group. */
export const FUSED_GROUP_ROWS = 8;
/** Weights per row of a tile (along K). */
export const FUSED_TILE_K = 256;
/** Bytes of one tile block: 2048 sign+mantissa bytes and 6 × 32 code words. */
export const FUSED_TILE_BYTES = 2816;

/** A matrix in the fused layout (see the module documentation for the byte layout). */
export interface FusedMatrix {
  readonly rows: number;
  readonly cols: number;
  /** Row groups: ⌈rows / 8⌉. */
  readonly groups: number;
  /** Tiles per group: ⌈cols / 256⌉. */
  readonly tiles: number;
  /** groups · tiles · 2816 bytes. */
  readonly data: Uint8Array;
  /** groups · 8 rows · 8 exponent bytes. */
  readonly tables: Uint8Array;
  /** groups · tiles + 1 entries. */
  readonly escapeOffsets: Uint32Array;
  /** Position in its tile (0…2047) of each escaped weight. */
  readonly escapePositions: Uint16Array;
  /** Exponent of each escaped weight. */
  readonly escapeExponents: Uint8Array;
}

/** A matrix the fused layout cannot hold. */
export class FusedLayoutError extends CodecError {
  override name = "FusedLayoutError";
}

/** Bytes a fused matrix takes (all five arrays). */
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

/** Byte offset in a tile block of the sign+mantissa byte at tile position p (lane-major). */
const smOffset = (p: number) => {
  const lane = p >>> 6;
  const c = (p >>> 3) & 7;
  return 512 * (c >>> 1) + 16 * lane + 8 * (c & 1) + (p & 7);
};

/**
 * Encode BF16 bit patterns `w` (row-major [rows, cols]) into the fused layout. Lossless for every bit
 * pattern. Throws {@link FusedLayoutError} when cols is not a multiple of 8.
 */
export function encodeFusedMatrix(w: Uint16Array, rows: number, cols: number): FusedMatrix {
  checkShape(rows, cols);
  if (w.length !== rows * cols) throw new FusedLayoutError(`expected ${rows * cols} weights for [${rows}, ${cols}], got ${w.length}`);
  const groups = Math.ceil(rows / FUSED_GROUP_ROWS);
  const tiles = Math.ceil(cols / FUSED_TILE_K);
  const data = new Uint8Array(groups * tiles * FUSED_TILE_BYTES);
  const tables = new Uint8Array(groups * FUSED_GROUP_ROWS * 8);
  const escapeOffsets = new Uint32Array(groups * tiles + 1);
  const positions: number[] = [];
  const exponents: number[] = [];
  const histogram = new Uint32Array(256);
  const maps: Uint8Array[] = [];
  for (let n = 0; n < rows; n++) {
    histogram.fill(0);
    for (let k = 0; k < cols; k++) histogram[(w[n * cols + k] >>> 7) & 0xff]++;
    const table = rowTable(histogram);
    tables.set(table, n * 8);
    maps.push(codeMap(table));
  }
  const codes = new Uint8Array(2048);
  for (let group = 0; group < groups; group++) {
    for (let t = 0; t < tiles; t++) {
      const tile = group * tiles + t;
      escapeOffsets[tile] = positions.length;
      const block = tile * FUSED_TILE_BYTES;
      codes.fill(0);
      for (let p = 0; p < 2048; p++) {
        const lane = p >>> 6;
        const n = group * 8 + (lane >>> 2);
        const k = t * 256 + 32 * ((p >>> 3) & 7) + 8 * (lane & 3) + (p & 7);
        if (n >= rows || k >= cols) continue;
        const bits = w[n * cols + k];
        const e = (bits >>> 7) & 0xff;
        data[block + smOffset(p)] = ((bits >>> 8) & 0x80) | (bits & 0x7f);
        const c = maps[n][e];
        if (c === 8) {
          positions.push(p);
          exponents.push(e);
        } else codes[p] = c;
      }
      for (let lane = 0; lane < 32; lane++) {
        for (let word = 0; word < 6; word++) {
          let v = 0;
          for (let i = 0; i < 8; i++) {
            const own = codes[64 * lane + 8 * word + i];
            const spread = codes[64 * lane + 8 * (6 + Math.floor(word / 3)) + i];
            v |= (own | (((spread >>> word % 3) & 1) << 3)) << (4 * i);
          }
          const at = block + 2048 + 128 * word + 4 * lane;
          data[at] = v & 0xff;
          data[at + 1] = (v >>> 8) & 0xff;
          data[at + 2] = (v >>> 16) & 0xff;
          data[at + 3] = (v >>> 24) & 0xff;
        }
      }
    }
  }
  escapeOffsets[groups * tiles] = positions.length;
  return { rows, cols, groups, tiles, data, tables, escapeOffsets, escapePositions: Uint16Array.from(positions), escapeExponents: Uint8Array.from(exponents) };
}

/** Code of (chunk c, element i) from a lane's six code words (the inverse of the packing above). */
function codeOf(words: readonly number[], c: number, i: number): number {
  if (c < 6) return (words[c] >>> (4 * i)) & 7;
  const base = 3 * (c - 6);
  return ((words[base] >>> (4 * i + 3)) & 1) | (((words[base + 1] >>> (4 * i + 3)) & 1) << 1) | (((words[base + 2] >>> (4 * i + 3)) & 1) << 2);
}

/**
 * Decode a fused matrix back to BF16 bit patterns, rows [rowBegin, rowEnd) into `out`
 * ([rowEnd − rowBegin, cols]). Throws {@link FusedLayoutError} on an inconsistent escape list.
 */
export function decodeFusedMatrix(m: FusedMatrix, rowBegin = 0, rowEnd = m.rows, out = new Uint16Array((rowEnd - rowBegin) * m.cols)): Uint16Array {
  const { cols, tiles, data, tables, escapeOffsets, escapePositions, escapeExponents } = m;
  const exps = new Uint8Array(2048);
  const words = [0, 0, 0, 0, 0, 0];
  for (let group = Math.floor(rowBegin / 8); group * 8 < rowEnd; group++) {
    for (let t = 0; t < tiles; t++) {
      const tile = group * tiles + t;
      const block = tile * FUSED_TILE_BYTES;
      for (let lane = 0; lane < 32; lane++) {
        const table = tables.subarray((group * 8 + (lane >>> 2)) * 8);
        for (let w = 0; w < 6; w++) {
          const at = block + 2048 + 128 * w + 4 * lane;
          words[w] = (data[at] | (data[at + 1] << 8) | (data[at + 2] << 16) | (data[at + 3] << 24)) >>> 0;
        }
        for (let c = 0; c < 8; c++) for (let i = 0; i < 8; i++) exps[64 * lane + 8 * c + i] = table[codeOf(words, c, i)];
      }
      const lo = escapeOffsets[tile];
      const hi = escapeOffsets[tile + 1];
      if (hi < lo || hi > escapePositions.length) throw new FusedLayoutError(`group ${group} tile ${t}: escape offsets ${lo}…${hi} outside 0…${escapePositions.length}`);
      for (let e = lo; e < hi; e++) exps[escapePositions[e] & 2047] = escapeExponents[e];
      for (let p = 0; p < 2048; p++) {
        const lane = p >>> 6;
        const n = group * 8 + (lane >>> 2);
        const k = t * 256 + 32 * ((p >>> 3) & 7) + 8 * (lane & 3) + (p & 7);
        if (n < rowBegin || n >= rowEnd || k >= cols) continue;
        const sm = data[block + smOffset(p)];
        out[(n - rowBegin) * cols + k] = ((sm & 0x80) << 8) | (exps[p] << 7) | (sm & 0x7f);
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
