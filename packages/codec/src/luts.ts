import { InvalidModuleError } from "./errors.js";
import type { HuffmanCode } from "./huffman.js";

const bitString = (code: number, length: number) => code.toString(2).padStart(length, "0");

/** Whole-byte prefix of a codeword that selects the LUT row holding its last byte. */
const rowPrefix = (bits: string) => bits.slice(0, Math.floor((bits.length - 1) / 8) * 8);

/** LUT row prefixes in the official order: '' first, then by length, ties in first-seen order. */
function rowPrefixes(code: HuffmanCode): string[] {
  const prefixes = [""];
  const seen = new Set(prefixes);
  const add = (p: string) => {
    if (!seen.has(p)) {
      seen.add(p);
      prefixes.push(p);
    }
  };
  for (const e of code.order) add(rowPrefix(bitString(code.codes[e], code.lengths[e])));
  // Every shorter whole-byte prefix needs its row too (the official builder assumes it exists).
  for (const p of [...prefixes]) for (let l = 8; l < p.length; l += 8) add(p.slice(0, l));
  return prefixes.sort((a, b) => a.length - b.length);
}

/** Number of continuation rows (rows after row 0, before the code-length row) a code needs. */
export function countContinuationRows(code: HuffmanCode): number {
  return rowPrefixes(code).length - 1;
}

/**
 * The `luts` tensor: decode rows indexed by the next byte of the stream, then one row of code lengths.
 * Entries < 240 are exponents; entries ≥ 240 continue in row 256 − v. Laid out exactly as the official
 * builder does it, including the fill of entries no exponent owns (the end-of-stream symbol's range).
 */
export function buildLuts(code: HuffmanCode): Uint8Array {
  const prefixes = rowPrefixes(code);
  const rowOf = new Map(prefixes.map((p, i) => [p, i]));
  const luts = new Uint8Array((prefixes.length + 1) * 256);
  const symbols = code.order.map((e) => ({ e, bits: bitString(code.codes[e], code.lengths[e]) }));
  let current = -1;
  prefixes.forEach((prefix, row) => {
    const entries = new Map<number, number>();
    const depth = prefix.length / 8;
    for (const { e, bits } of symbols) {
      if (!bits.startsWith(prefix)) continue;
      const endsHere = Math.floor((bits.length - 1) / 8) === depth;
      const key = parseInt(bits.slice(depth * 8, depth * 8 + 8).padEnd(8, "0"), 2);
      const value = endsHere ? e : 256 - rowOf.get(bits.slice(0, depth * 8 + 8))!;
      const previous = entries.get(key);
      if (previous !== undefined && previous !== value) {
        throw new InvalidModuleError("luts", `codes collide at row ${row}, byte ${key}`);
      }
      entries.set(key, value);
    }
    // Unowned leading entries of the first row (only possible for one-symbol codes) repeat its first value.
    if (current < 0) current = entries.get(Math.min(...entries.keys()))!;
    for (let i = 0; i < 256; i++) {
      const v = entries.get(i);
      if (v !== undefined) current = v;
      luts[row * 256 + i] = current;
    }
  });
  luts.set(code.lengths, prefixes.length * 256);
  return luts;
}

/** The code-length row (last row) of a `luts` tensor. */
export function codeLengthsOf(luts: Uint8Array): Uint8Array {
  return luts.subarray(luts.length - 256);
}

/**
 * Checks a `luts` tensor well enough that decoding it can neither loop forever nor read outside it:
 * shape [n, 256] with 2 ≤ n ≤ 18, every pointer inside the table, every exponent it can yield with a
 * code length of 1…32. (Entries no exponent owns may hold stale values, as in official files.)
 */
export function validateLuts(luts: Uint8Array): void {
  if (luts.length % 256 !== 0 || luts.length < 512) {
    throw new InvalidModuleError("luts", `expected shape [n ≥ 2, 256], got ${luts.length} bytes`);
  }
  const nLuts = luts.length / 256;
  if (nLuts - 2 > 16) throw new InvalidModuleError("luts", `${nLuts - 2} continuation rows (at most 16 allowed)`);
  const lengths = codeLengthsOf(luts);
  for (let i = 0; i < luts.length - 256; i++) {
    const v = luts[i];
    if (v >= 240) {
      if (256 - v >= nLuts - 1) {
        throw new InvalidModuleError("luts", `row ${i >> 8} byte ${i & 255} points to missing row ${256 - v}`);
      }
    } else if (lengths[v] === 0 || lengths[v] > 32) {
      throw new InvalidModuleError("luts", `exponent ${v} (row ${i >> 8} byte ${i & 255}) has code length ${lengths[v]}`);
    }
  }
}
