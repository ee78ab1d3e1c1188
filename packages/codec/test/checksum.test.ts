import { describe, expect, it } from "vitest";
import { addSum64, checksumHex, encodeModule, formatSum64, moduleChecksums, moduleTensorBytes, parseSum64, Sum64Stream, sum64Terms, syntheticWeights } from "../src/index.js";

/** The spec, word by word, written as plainly as possible (BigInt, no shortcuts) to check the fast path. */
function referenceSum64(bytes: Uint8Array): string {
  const M = 1n << 32n;
  const imul = (a: bigint, b: bigint) => (a * b) % M;
  const fmix32 = (x: bigint) => {
    x ^= x >> 16n;
    x = imul(x, 0x85ebca6bn);
    x ^= x >> 13n;
    x = imul(x, 0xc2b2ae35n);
    return x ^ (x >> 16n);
  };
  const lowbias32 = (x: bigint) => {
    x ^= x >> 16n;
    x = imul(x, 0x7feb352dn);
    x ^= x >> 15n;
    x = imul(x, 0x846ca68bn);
    return x ^ (x >> 16n);
  };
  let a = 0n;
  let b = 0n;
  for (let i = 0; i * 4 < bytes.length; i++) {
    let w = 0n;
    for (let k = 0; k < 4; k++) w |= BigInt(bytes[i * 4 + k] ?? 0) << BigInt(8 * k);
    const I = BigInt(i);
    a = (a + fmix32(w ^ ((I * 0x9e3779b1n + 0x7f4a7c15n) % M))) % M;
    b = (b + lowbias32((w + I * 0x85ebca77n + 0x165667b1n) % M)) % M;
  }
  return a.toString(16).padStart(8, "0") + b.toString(16).padStart(8, "0");
}

const randomBytes = (n: number, seed: number) => {
  let s = seed >>> 0;
  return Uint8Array.from({ length: n }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 24));
};

describe("df11-sum64", () => {
  it("matches the specification word by word, for every length modulo 4", () => {
    for (const n of [0, 1, 2, 3, 4, 5, 7, 8, 63, 64, 65, 1001]) {
      const bytes = randomBytes(n, n + 1);
      expect(checksumHex(bytes), `${n} bytes`).toBe(referenceSum64(bytes));
    }
    expect(checksumHex(new Uint8Array(0))).toBe("0000000000000000");
  });

  it("gives the same sum fed in any pieces, aligned or not, and partial sums of slices add up", () => {
    const bytes = randomBytes(100_003, 7);
    const whole = checksumHex(bytes);
    for (const piece of [1, 3, 4, 5, 4096, 65_537]) {
      const s = new Sum64Stream();
      for (let i = 0; i < bytes.length; i += piece) s.update(bytes.subarray(i, i + piece));
      expect(s.hex(), `pieces of ${piece}`).toBe(whole);
    }
    const unaligned = new Uint8Array(bytes.length + 1);
    unaligned.set(bytes, 1);
    expect(checksumHex(unaligned.subarray(1))).toBe(whole);
    // Slices summed on their own (as the GPU does after each decode window) add up to the whole.
    const cut = 40_000; // a multiple of 4: slice 2 starts at word 10 000
    const first = new Sum64Stream().update(bytes.subarray(0, cut)).digest();
    const second = new Sum64Stream(cut / 4).update(bytes.subarray(cut)).digest();
    expect(formatSum64(addSum64(first, second))).toBe(whole);
    expect(formatSum64(parseSum64(whole))).toBe(whole);
    expect(() => parseSum64("xyz")).toThrow(/not a df11-sum64/);
  });

  it("changes with every single-bit flip, and with two words swapped", () => {
    const bytes = randomBytes(256, 3);
    const base = checksumHex(bytes);
    const seen = new Set([base]);
    for (let bit = 0; bit < bytes.length * 8; bit++) {
      bytes[bit >> 3] ^= 1 << (bit & 7);
      const h = checksumHex(bytes);
      bytes[bit >> 3] ^= 1 << (bit & 7);
      expect(h === base, `bit ${bit}`).toBe(false);
      seen.add(h);
    }
    expect(seen.size).toBe(256 * 8 + 1);
    const swapped = bytes.slice();
    swapped.set(bytes.subarray(8, 12), 12);
    swapped.set(bytes.subarray(12, 16), 8);
    expect(checksumHex(swapped)).not.toBe(base);
    // Each lane alone is a bijection of the word: a changed word always changes both.
    const [a0, b0] = sum64Terms(0x12345678, 9);
    const [a1, b1] = sum64Terms(0x12345679, 9);
    expect(a0).not.toBe(a1);
    expect(b0).not.toBe(b1);
  });

  it("records a module's weights and stored tensors", () => {
    const parts = [syntheticWeights(3001, 1), syntheticWeights(4096, 2)];
    const { module } = encodeModule(parts);
    const sums = moduleChecksums(module, parts);
    const concat = new Uint16Array(7097);
    concat.set(parts[0]);
    concat.set(parts[1], 3001);
    expect(sums.weights).toBe(checksumHex(concat));
    const stored = moduleTensorBytes(module);
    for (const [suffix, bytes] of Object.entries(stored)) expect(sums[suffix as keyof typeof stored]).toBe(checksumHex(bytes));
  });
});
