import { InvalidModuleError } from "./errors.js";
import { decodeTableFor, FAST_BITS, lookupExponent } from "./decode-table.js";
import { BYTES_PER_BLOCK, THREADS_PER_BLOCK, blockCount, blockStart, readGap, validateModule, type DF11Module } from "./format.js";

/** The coded stream as big-endian 32-bit words plus two zero words, so reads never run off the end. */
let wordsScratch = new Uint32Array(0);

/**
 * The stream as big-endian words, in a scratch buffer reused across calls (decoding is synchronous, so
 * one per thread suffices): repeated decodes — a model decoding every module each step — make no garbage.
 */
function streamWords(bytes: Uint8Array): Uint32Array {
  const needed = Math.ceil(bytes.length / 4) + 2;
  if (wordsScratch.length < needed) wordsScratch = new Uint32Array(Math.max(needed, Math.ceil(wordsScratch.length * 1.5)));
  const words = wordsScratch;
  words.fill(0, 0, needed);
  const full = bytes.length >>> 2;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < full; i++) words[i] = view.getUint32(i * 4, false);
  for (let b = full * 4; b < bytes.length; b++) words[full] |= bytes[b] << (24 - 8 * (b - full * 4));
  return words;
}

/**
 * Decode `count` elements starting at bit `startBit` of the stream into `out[first …]`, using
 * `signMantissa[first …]`. The sequential core of every CPU decode. Returns the bit after the last code.
 */
function decodeRun(m: DF11Module, startBit: number, endByte: number, first: number, count: number, out: Uint16Array, outBase = 0): number {
  const { symbols, meta, lengths, luts } = decodeTableFor(m.luts);
  // Only the bytes this run can touch are converted, so block ranges decode in parallel cheaply.
  const fromByte = Math.floor(startBit / 32) * 4;
  const words = streamWords(m.encodedExponent.subarray(fromByte, Math.min(endByte, m.encodedExponent.length)));
  const sm = m.signMantissa;
  const end = first + count;
  const limitBits = (Math.min(endByte, m.encodedExponent.length) - fromByte) * 8;
  let k = 0;
  let s = startBit - fromByte * 8;
  let o = first;
  const shiftDown = 32 - FAST_BITS;
  // Fast loop: up to 4 exponents per table hit, with slack so the 4 unconditional writes stay in range.
  while (o + 4 <= end) {
    const win = ((words[k] << s) | ((words[k + 1] >>> 1) >>> (31 - s))) >>> 0;
    const idx = win >>> shiftDown;
    const mt = meta[idx];
    if (mt !== 0) {
      const syms = symbols[idx];
      let a = sm[o];
      const w = o - outBase;
      out[w] = ((a & 0x80) << 8) | ((syms & 0xff) << 7) | (a & 0x7f);
      a = sm[o + 1];
      out[w + 1] = ((a & 0x80) << 8) | (((syms >>> 8) & 0xff) << 7) | (a & 0x7f);
      a = sm[o + 2];
      out[w + 2] = ((a & 0x80) << 8) | (((syms >>> 16) & 0xff) << 7) | (a & 0x7f);
      a = sm[o + 3];
      out[w + 3] = ((a & 0x80) << 8) | ((syms >>> 24) << 7) | (a & 0x7f);
      o += mt & 7;
      s += mt >>> 3;
    } else {
      const e = lookupExponent(luts, win);
      const a = sm[o];
      out[o - outBase] = ((a & 0x80) << 8) | (e << 7) | (a & 0x7f);
      o++;
      s += lengths[e];
    }
    k += s >>> 5;
    s &= 31;
  }
  while (o < end) {
    const win = ((words[k] << s) | ((words[k + 1] >>> 1) >>> (31 - s))) >>> 0;
    const e = lookupExponent(luts, win);
    const a = sm[o];
    out[o - outBase] = ((a & 0x80) << 8) | (e << 7) | (a & 0x7f);
    o++;
    s += lengths[e];
    k += s >>> 5;
    s &= 31;
  }
  if (k * 32 + s > limitBits) {
    throw new InvalidModuleError("encoded_exponent", `stream ended before element ${end - 1} was decoded`);
  }
  return fromByte * 8 + k * 32 + s;
}

/** Bit at which block `k`'s first code starts (its first thread's gap). */
export function blockStartBit(m: DF11Module, k: number): number {
  return k * BYTES_PER_BLOCK * 8 + readGap(m.gaps, k * THREADS_PER_BLOCK);
}

/**
 * Decode blocks [startBlock, endBlock) of a module — elements `output_positions[startBlock]` up to
 * `output_positions[endBlock]` — into the same positions of `out` (length ≥ n_elements). Ranges of
 * blocks decode independently, which is how work is split across threads. Throws
 * {@link InvalidModuleError} when a block's codes do not end where the next block's first code starts
 * (a corrupt stream, gaps or output_positions: the check the GPU kernel's geometry implies).
 */
export function decodeBlocks(m: DF11Module, startBlock: number, endBlock: number, out: Uint16Array): void {
  const n = m.signMantissa.length;
  const blocks = blockCount(m.encodedExponent.length);
  const elementsOf = (k: number) => (k < blocks ? Math.min(blockStart(m, k + 1), n) - blockStart(m, k) : 0);
  for (let k = startBlock; k < endBlock; k++) {
    const count = elementsOf(k);
    if (count <= 0) continue;
    // A code starting in the block may run 4 bytes past it.
    const end = decodeRun(m, blockStartBit(m, k), (k + 1) * BYTES_PER_BLOCK + 4, blockStart(m, k), count, out);
    // The stream is contiguous: a block's codes end where the next block's first code starts (its gap).
    // Anything else is a corrupt stream, gaps or output_positions — what a file without checksums
    // would otherwise decode into wrong weights without a word.
    if (elementsOf(k + 1) > 0 && end !== blockStartBit(m, k + 1)) {
      throw new InvalidModuleError("encoded_exponent", `block ${k}: its ${count} codes (output_positions) end at bit ${end}, but the next block's first code starts at bit ${blockStartBit(m, k + 1)} (gaps): the stream, gaps or output_positions are corrupt`);
    }
  }
}

/**
 * Decode a whole module to BF16 bit patterns (length n_elements). Validates the module first, so bad
 * input raises {@link InvalidModuleError} instead of producing garbage.
 */
export function decodeModule(m: DF11Module, out?: Uint16Array): Uint16Array {
  validateModule(m);
  const n = m.signMantissa.length;
  const target = out ?? new Uint16Array(n);
  if (target.length < n) throw new RangeError(`output holds ${target.length} elements, module has ${n}`);
  decodeBlocks(m, 0, blockCount(m.encodedExponent.length), target);
  return target;
}

/**
 * Decode elements [first, first + count) only, e.g. a few embedding rows: finds the GPU blocks that
 * hold them through output_positions and decodes just those. The module must have been validated.
 */
export function decodeElements(m: DF11Module, first: number, count: number, out = new Uint16Array(count)): Uint16Array {
  const n = m.signMantissa.length;
  if (first < 0 || count < 0 || first + count > n) throw new RangeError(`elements [${first}, ${first + count}) are outside 0…${n}`);
  if (count === 0) return out;
  const blocks = blockCount(m.encodedExponent.length);
  // Last block starting at or before `first`, first block starting at or after the end.
  let lo = 0;
  let hi = blocks - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (blockStart(m, mid) <= first) lo = mid;
    else hi = mid - 1;
  }
  let end = lo + 1;
  while (end < blocks && blockStart(m, end) < first + count) end++;
  const from = blockStart(m, lo);
  const tmp = new Uint16Array(blockStart(m, end) - from);
  decodeRun(m, blockStartBit(m, lo), end * BYTES_PER_BLOCK + 4, from, tmp.length, tmp, from);
  out.set(tmp.subarray(first - from, first - from + count));
  return out;
}

/** Decode only the exponent bytes (for statistics). */
export function decodeExponents(m: DF11Module): Uint8Array {
  const bits = decodeModule(m);
  const out = new Uint8Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = (bits[i] >>> 7) & 0xff;
  return out;
}

