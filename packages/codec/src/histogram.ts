import { UncodableExponentError } from "./errors.js";

const IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Largest exponent byte the format can code; 240…255 are LUT continuation pointers. */
export const MAX_CODABLE_EXPONENT = 239;

/**
 * Count each exponent value over the given BF16 tensors (treated as one stream).
 * Throws {@link UncodableExponentError} naming the tensor when an exponent ≥ 240 is present.
 */
export function exponentHistogram(parts: readonly Uint16Array[], names?: readonly string[]): Float64Array {
  const total = new Float64Array(256);
  const counts = new Uint32Array(256);
  const counts2 = new Uint32Array(256);
  parts.forEach((bits, p) => {
    // Chunk so the 32-bit counters never overflow.
    for (let start = 0; start < bits.length; start += 1 << 30) {
      counts.fill(0);
      counts2.fill(0);
      const end = Math.min(bits.length, start + (1 << 30));
      let i = start;
      if (((bits.byteOffset + 2 * start) & 3) === 0 && IS_LITTLE_ENDIAN) {
        // Two elements per 32-bit read, into two tables so increments do not wait on each other.
        const pairs = (end - start) >>> 1;
        const words = new Uint32Array(bits.buffer, bits.byteOffset + 2 * start, pairs);
        for (let k = 0; k < pairs; k++) {
          const x = words[k];
          counts[(x >>> 7) & 0xff]++;
          counts2[(x >>> 23) & 0xff]++;
        }
        i = start + 2 * pairs;
      }
      for (; i < end; i++) counts[(bits[i] >>> 7) & 0xff]++;
      for (let e = 0; e < 256; e++) total[e] += counts[e] + counts2[e];
    }
    for (let e = MAX_CODABLE_EXPONENT + 1; e < 256; e++) {
      if (total[e] > 0) {
        const index = bits.findIndex((b) => ((b >>> 7) & 0xff) === e);
        throw new UncodableExponentError(names?.[p] ?? `part ${p}`, index, e);
      }
    }
  });
  return total;
}

/** Histogram of an array of exponent bytes. */
export function byteHistogram(values: Uint8Array): Float64Array {
  const counts = new Float64Array(256);
  for (let i = 0; i < values.length; i++) counts[values[i]]++;
  return counts;
}

/** Shannon entropy in bits per symbol of a histogram. */
export function entropyBits(hist: ArrayLike<number>): number {
  let total = 0;
  for (let i = 0; i < hist.length; i++) total += hist[i];
  if (total === 0) return 0;
  let h = 0;
  for (let i = 0; i < hist.length; i++) {
    const c = hist[i];
    if (c > 0) h -= (c / total) * Math.log2(c / total);
  }
  return h;
}
