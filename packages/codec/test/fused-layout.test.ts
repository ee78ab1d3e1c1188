import { describe, expect, it } from "vitest";
import {
  decodeFusedMatrix,
  encodeFusedMatrix,
  FUSED_TILE_BYTES,
  FusedLayoutError,
  fusedLayoutStats,
  mergeBF16,
  mulberry32,
  rowTable,
  syntheticWeights,
} from "../src/index.js";

const firstDifference = (a: Uint16Array, b: Uint16Array) => {
  expect(a.length).toBe(b.length);
  return a.findIndex((v, i) => v !== b[i]);
};

function roundTrip(w: Uint16Array, rows: number, cols: number) {
  const m = encodeFusedMatrix(w, rows, cols);
  expect(firstDifference(decodeFusedMatrix(m), w)).toBe(-1);
  return m;
}

describe("fused layout", () => {
  it("round-trips realistic weights bit-exactly, under 72 % of BF16 with ~1 % escapes", () => {
    const rows = 96;
    const cols = 4096;
    const w = syntheticWeights(rows * cols, 11);
    const m = roundTrip(w, rows, cols);
    const s = fusedLayoutStats(m);
    expect(m.data.length).toBe((rows / 8) * 16 * FUSED_TILE_BYTES);
    expect(s.escapeRate).toBeGreaterThan(0.002);
    expect(s.escapeRate).toBeLessThan(0.03);
    expect(s.ratioToBf16).toBeLessThan(0.72);
    expect(s.bitsPerWeight).toBeGreaterThan(11);
  });

  it("round-trips sizes aligned to nothing (rows not a multiple of 8, K not of 256, one row, long rows)", () => {
    for (const [rows, cols] of [
      [1, 8],
      [3, 344],
      [5, 1032],
      [2, 14336 + 8],
      [7, 2056],
    ]) {
      roundTrip(syntheticWeights(rows * cols, rows * 31 + cols), rows, cols);
    }
  });

  it("round-trips every exponent value in one row, the most escapes a row can have, and none", () => {
    const rand = mulberry32(5);
    const cols = 2048;
    // Row 0: every exponent 0…255 eight times in a shuffled order, random sign and mantissa.
    const every = new Uint16Array(cols);
    for (let k = 0; k < cols; k++) every[k] = mergeBF16(k % 256, Math.floor(rand() * 256));
    for (let k = cols - 1; k > 0; k--) {
      const j = Math.floor(rand() * (k + 1));
      [every[k], every[j]] = [every[j], every[k]];
    }
    const m = roundTrip(every, 1, cols);
    expect(m.escapePositions.length).toBe(cols - 8 * 8);
    // None escaped: a row of 8 distinct exponents, all in its table.
    const none = new Uint16Array(cols);
    for (let k = 0; k < cols; k++) none[k] = mergeBF16(100 + (k % 8), k & 0xff);
    expect(roundTrip(none, 1, cols).escapePositions.length).toBe(0);
    // As many escapes as a row can have: every exponent equally often (4 × 256 per row), so only the
    // table's 8 exponents (32 weights a row) are coded.
    const all = new Uint16Array(1024 * 2);
    for (let k = 0; k < all.length; k++) all[k] = mergeBF16((k * 37) % 256, k & 0xff);
    const allM = roundTrip(all, 2, 1024);
    expect(allM.escapePositions.length).toBe(2 * (1024 - 32));
  });

  it("round-trips NaN, ±Inf, −0, +0 and denormals, and a row with a single distinct exponent", () => {
    const specials = [0x7fc0, 0xffc1, 0x7f81, 0x7f80, 0xff80, 0x8000, 0x0000, 0x0001, 0x807f, 0x0040, 0x3f80, 0xbf80];
    const cols = 1024;
    const w = new Uint16Array(2 * cols);
    for (let k = 0; k < cols; k++) w[k] = specials[k % specials.length];
    for (let k = 0; k < cols; k++) w[cols + k] = mergeBF16(120, k & 0xff);
    const m = roundTrip(w, 2, cols);
    expect([...m.tables.subarray(8, 16)]).toEqual([120, 120, 120, 120, 120, 120, 120, 120]);
  });

  it("chooses each row's 8 most frequent exponents, ties to the smaller", () => {
    const h = new Uint32Array(256);
    [[121, 50], [120, 40], [122, 40], [119, 30], [118, 5], [117, 5], [116, 5], [115, 5], [114, 5], [3, 1]].forEach(([e, n]) => (h[e] = n));
    expect([...rowTable(h)]).toEqual([121, 120, 122, 119, 114, 115, 116, 117]);
  });

  it("escapes of a tile are ordered by lane, then chunk, then element", () => {
    const cols = 256;
    const w = new Uint16Array(8 * cols).fill(mergeBF16(120, 1));
    // Seven more exponents, twice in each row, fill the rest of the tables; the escapes occur once each.
    for (let n = 0; n < 8; n++) for (let e = 0; e < 7; e++) for (let t = 0; t < 2; t++) w[n * cols + 200 + e * 2 + t] = mergeBF16(110 + e, 0);
    // (row, k) → lane 4·row + ⌊(k mod 32) / 8⌋, chunk ⌊k / 32⌋, element k mod 8.
    const escaped = [
      [3, 32 * 5 + 8 * 2 + 1], // lane 14, chunk 5
      [0, 8 * 1 + 5], // lane 1, chunk 0
      [3, 32 * 1 + 8 * 2 + 0], // lane 14, chunk 1
      [7, 32 * 7 + 8 * 3 + 7], // lane 31, chunk 7
    ];
    escaped.forEach(([n, k], j) => (w[n * cols + k] = mergeBF16(10 + j, 3)));
    const m = roundTrip(w, 8, cols);
    expect([...m.escapePositions]).toEqual([64 * 1 + 8 * 0 + 5, 64 * 14 + 8 * 1 + 0, 64 * 14 + 8 * 5 + 1, 64 * 31 + 8 * 7 + 7]);
  });

  it("refuses shapes it cannot hold, naming them", () => {
    expect(() => encodeFusedMatrix(new Uint16Array(12), 1, 12)).toThrow(FusedLayoutError);
    expect(() => encodeFusedMatrix(new Uint16Array(16), 1, 8)).toThrow(/expected 8 weights/);
  });
});
