import { InvalidModuleError } from "./errors.js";
import { codeLengthsOf, validateLuts } from "./luts.js";

/** Bits the fast table indexes by. 4096 entries keep it in L1 cache. */
export const FAST_BITS = 12;
const FAST_SIZE = 1 << FAST_BITS;

/**
 * Resolve the exponent at the head of a 32-bit window (MSB = next bit) by walking the LUT rows, as the
 * GPU kernel does: row 0 by the first byte, then up to three continuation rows by the following bytes.
 */
export function lookupExponent(luts: Uint8Array, window: number): number {
  let v = luts[window >>> 24];
  for (let level = 1; v >= 240 && level < 4; level++) {
    v = luts[(256 - v) * 256 + ((window >>> (24 - 8 * level)) & 0xff)];
  }
  if (v >= 240) throw new InvalidModuleError("luts", "a code needs more than 4 table levels");
  return v;
}

/**
 * Multi-symbol decode table derived from a module's LUTs: for each 12-bit prefix of the stream, up to
 * four exponents that lie wholly inside it. Codes longer than 12 bits take the slow path through the LUTs.
 */
export interface DecodeTable {
  readonly luts: Uint8Array;
  readonly lengths: Uint8Array;
  /** Up to 4 exponents, first in the low byte. */
  readonly symbols: Uint32Array;
  /** count (0…4) | bits consumed << 3; count 0 means "use the slow path". */
  readonly meta: Uint8Array;
}

const tables = new WeakMap<Uint8Array, DecodeTable>();

/** Build (or fetch the cached) decode table of a `luts` tensor; validates the LUTs first. */
export function decodeTableFor(luts: Uint8Array): DecodeTable {
  const cached = tables.get(luts);
  if (cached) return cached;
  validateLuts(luts);
  const lengths = codeLengthsOf(luts);
  // The exponent at the head of `valid` known bits, or -1 if its code is longer or depends on later bits.
  // Both fills must agree: a zero fill alone can land in the end-of-stream symbol's range, whose
  // entries repeat a neighbour's value, and so mistake a long code's prefix for a short code.
  const resolve = (bits: number, valid: number): number => {
    const head = (bits << (32 - valid)) >>> 0;
    const e = lookupExponent(luts, head);
    const tail = valid === 32 ? 0 : (0xffffffff >>> valid);
    if (lookupExponent(luts, (head | tail) >>> 0) !== e || lengths[e] > valid) return -1;
    return e;
  };
  const symbols = new Uint32Array(FAST_SIZE);
  const meta = new Uint8Array(FAST_SIZE);
  for (let x = 0; x < FAST_SIZE; x++) {
    let used = 0;
    let count = 0;
    let packed = 0;
    while (count < 4 && used < FAST_BITS) {
      const valid = FAST_BITS - used;
      const e = resolve(x & ((1 << valid) - 1), valid);
      if (e < 0) break;
      packed |= e << (8 * count);
      used += lengths[e];
      count++;
    }
    symbols[x] = packed >>> 0;
    meta[x] = count | (used << 3);
  }
  const table = { luts, lengths, symbols, meta };
  tables.set(luts, table);
  return table;
}
