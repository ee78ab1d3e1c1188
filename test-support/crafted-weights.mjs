// Weights crafted for codec edge cases, shared by the codec tests (TypeScript, from sources) and the
// GPU tests (plain node:test, from the built package): each passes in its own codec functions.

/**
 * Exponent counts 1, 1, 2, 3, 5, … make the Huffman tree a chain: codes of 1…29 bits, so decoding
 * walks all four LUT levels. Two parts, shuffled, to also exercise split positions.
 * @param {{ mergeBF16: (e: number, s: number) => number, mulberry32: (seed: number) => () => number }} codec
 * @returns {Uint16Array[]}
 */
export function fibonacciParts({ mergeBF16, mulberry32 }) {
  const values = [];
  let [a, b] = [1, 1];
  for (let e = 0; e < 29; e++) {
    for (let i = 0; i < a; i++) values.push(mergeBF16(90 + e, i & 0xff));
    [a, b] = [b, a + b];
  }
  const rand = mulberry32(5);
  for (let i = values.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [values[i], values[j]] = [values[j], values[i]];
  }
  const all = Uint16Array.from(values);
  return [all.subarray(0, 300_001), all.subarray(300_001)];
}

/**
 * The parts one after another, as a module's decoded stream holds them.
 * @param {Uint16Array[]} parts
 * @returns {Uint16Array}
 */
export function concatParts(parts) {
  const all = new Uint16Array(parts.reduce((s, p) => s + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    all.set(p, offset);
    offset += p.length;
  }
  return all;
}
