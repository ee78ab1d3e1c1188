import { describe, expect, it } from "vitest";
import {
  buildHuffmanCode,
  buildLuts,
  codeLengthsOf,
  decodeBlocks,
  decodeLikeKernel,
  decodeModule,
  encodeModule,
  entropyBits,
  exponentHistogram,
  float32ToBF16,
  InvalidModuleError,
  joinBF16,
  mergeBF16,
  moduleStats,
  packGaps,
  splitBF16,
  splitWeights,
  syntheticWeights,
  UncodableExponentError,
  unpackGaps,
  blockCount,
  mulberry32,
  type DF11Module,
} from "../src/index.js";
import { concatParts, fibonacciParts as craftedFibonacciParts } from "../../../test-support/crafted-weights.mjs";

const expectSameBits = (a: Uint16Array, b: Uint16Array) => {
  expect(a.length).toBe(b.length);
  const first = a.findIndex((v, i) => v !== b[i]);
  expect(first, `first differing element ${first}`).toBe(-1);
};

const fibonacciParts = () => craftedFibonacciParts({ mergeBF16, mulberry32 });

/** BF16 values whose exponents follow the given weights (for crafted distributions). */
function weightsWithExponents(count: number, exponentFrequencies: Map<number, number>, seed = 7): Uint16Array {
  const rand = mulberry32(seed);
  const total = [...exponentFrequencies.values()].reduce((a, b) => a + b, 0);
  const cdf: Array<[number, number]> = [];
  let acc = 0;
  for (const [e, f] of exponentFrequencies) cdf.push([e, (acc += f / total)]);
  const out = new Uint16Array(count);
  for (let i = 0; i < count; i++) {
    const r = rand();
    const e = (cdf.find(([, c]) => r < c) ?? cdf[cdf.length - 1])[0];
    out[i] = mergeBF16(e, Math.floor(rand() * 256));
  }
  return out;
}

describe("bf16 split / merge", () => {
  it("round-trips every 16-bit pattern", () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const { exponents, signMantissa } = splitBF16(all);
    expectSameBits(joinBF16(exponents, signMantissa), all);
  });
  it("rounds float32 to nearest even like torch", () => {
    const f = new Float32Array([1, -2.5, 1.00390625, 1.01171875, 3.4e38]);
    expect([...float32ToBF16(f)]).toEqual([0x3f80, 0xc020, 0x3f80, 0x3f82, 0x7f80]);
  });
});

describe("gaps packing", () => {
  it("packs 5-bit values MSB-first and back", () => {
    const g = new Uint8Array(1024).map((_, i) => (i * 7) % 32);
    const packed = packGaps(g);
    expect(packed.length).toBe(640);
    expect([...unpackGaps(packed, 1024)]).toEqual([...g]);
    // 0b10101 then 0b00011: bits 10101000 11...
    expect([...packGaps(new Uint8Array([21, 3]))]).toEqual([0b10101000, 0b11000000]);
  });
});

describe("Huffman code", () => {
  it("is a complete prefix code whose lengths match the entropy closely", () => {
    const w = syntheticWeights(1 << 18, 3);
    const hist = exponentHistogram([w]);
    const code = buildHuffmanCode(hist);
    let kraft = 2 ** -code.eofLength;
    let bits = 0;
    let n = 0;
    hist.forEach((c, e) => {
      if (c > 0) {
        kraft += 2 ** -code.lengths[e];
        bits += c * code.lengths[e];
        n += c;
      }
    });
    expect(kraft).toBeCloseTo(1, 12);
    expect(bits / n).toBeLessThan(entropyBits(hist) + 0.05);
  });

  it("limits code lengths to 32 bits on Fibonacci-skewed histograms", () => {
    const hist = new Float64Array(256);
    let a = 1;
    let b = 1;
    for (let e = 60; e < 110; e++) {
      hist[e] = a;
      [a, b] = [b, a + b];
    }
    const code = buildHuffmanCode(hist);
    expect(Math.max(...code.lengths)).toBeLessThanOrEqual(32);
    const luts = buildLuts(code);
    expect(luts.length / 256 - 2).toBeLessThanOrEqual(16);
  });
});

describe("encode → decode", () => {
  const cases: Array<[string, () => Uint16Array[]]> = [
    ["one element", () => [new Uint16Array([0x3f80])]],
    ["odd sizes in several parts", () => [syntheticWeights(12345, 1), syntheticWeights(1, 2), syntheticWeights(77777, 3)]],
    ["a realistic 1M-element matrix", () => [syntheticWeights(1 << 20, 4)]],
    ["every codable exponent, uniform", () => [weightsWithExponents(200_000, new Map(Array.from({ length: 240 }, (_, e) => [e, 1])))]],
    ["codes using all 4 LUT levels", () => fibonacciParts()],
  ];
  for (const [name, make] of cases) {
    it(`${name}: bit-exact through both decoders`, () => {
      const parts = make();
      const all = concatParts(parts);
      const { module } = encodeModule(parts);
      expect(module.signMantissa.length).toBe(all.length);
      expect(module.outputPositions.length).toBe(blockCount(module.encodedExponent.length) + 1);
      expectSameBits(decodeModule(module), all);
      expectSameBits(decodeLikeKernel(module), all);
      const split = splitWeights(decodeModule(module), module.splitPositions);
      split.forEach((s, i) => expectSameBits(s, parts[i]));
    });
  }

  it("fuzz: random skewed histograms round-trip through both decoders", () => {
    const rand = mulberry32(99);
    for (let trial = 0; trial < 60; trial++) {
      const freq = new Map<number, number>();
      const distinct = 2 + Math.floor(rand() * 30);
      const start = Math.floor(rand() * 200);
      for (let i = 0; i < distinct; i++) freq.set(start + i, Math.floor(2 ** (rand() * 14)) + 1);
      const n = 1 + Math.floor(rand() * 60_000);
      const w = weightsWithExponents(n, freq, trial);
      const { module } = encodeModule([w]);
      expectSameBits(decodeModule(module), w);
      expectSameBits(decodeLikeKernel(module), w);
    }
  });

  it("every stream-end alignment: sizes 1…2500 decode identically through both decoders", () => {
    const w = syntheticWeights(2500, 21);
    // Long codes make the stream cross word and window boundaries at every possible offset.
    const { code } = encodeModule([weightsWithExponents(50_000, new Map(Array.from({ length: 24 }, (_, e) => [100 + e, 2 ** (e % 12)])), 3)]);
    for (let n = 1; n <= 2500; n += 1) {
      const part = w.subarray(0, n);
      const { module } = encodeModule([part]);
      const kernel = decodeLikeKernel(module);
      expect(kernel.findIndex((v, i) => v !== part[i]), `n = ${n}`).toBe(-1);
      if (n % 97 === 0) {
        const sample = weightsWithExponents(n * 7, new Map(Array.from({ length: 24 }, (_, e) => [100 + e, 2 ** (e % 12)])), n);
        const coded = encodeModule([sample], { code }).module;
        expectSameBits(decodeLikeKernel(coded), sample);
      }
    }
  });

  it("uses all four LUT levels in the deep-code case", () => {
    const { module } = encodeModule(fibonacciParts());
    expect(Math.max(...codeLengthsOf(module.luts))).toBeGreaterThan(24);
    expect(module.luts.length / 256).toBeGreaterThan(4);
  });

  it("decodes block ranges independently and identically", () => {
    const w = syntheticWeights(3_000_000, 9);
    const { module } = encodeModule([w]);
    const blocks = blockCount(module.encodedExponent.length);
    expect(blocks).toBeGreaterThan(10);
    const out = new Uint16Array(w.length);
    const cuts = [0, 1, 5, Math.floor(blocks / 2), blocks - 1, blocks];
    for (let i = 0; i + 1 < cuts.length; i++) decodeBlocks(module, cuts[i], cuts[i + 1], out);
    expectSameBits(out, w);
  });

  it("compresses realistic weights to about 2/3, spending close to the exponent entropy", () => {
    const w = syntheticWeights(1 << 22, 5);
    const { module, histogram } = encodeModule([w]);
    const s = moduleStats(module, histogram);
    expect(s.ratio).toBeLessThan(0.7);
    expect(s.exponentBitsPerElement).toBeGreaterThanOrEqual(s.exponentEntropy!);
    expect(s.exponentBitsPerElement).toBeLessThan(s.exponentEntropy! + 0.1);
  });
});

describe("bad input", () => {
  it("refuses exponents ≥ 240 and names the tensor", () => {
    const w = syntheticWeights(1000, 1);
    w[417] = 0x7f80; // +inf
    expect(() => encodeModule([syntheticWeights(10, 2), w], { names: ["a.weight", "b.weight"] })).toThrowError(UncodableExponentError);
    try {
      encodeModule([syntheticWeights(10, 2), w], { names: ["a.weight", "b.weight"] });
    } catch (e) {
      expect((e as UncodableExponentError).tensor).toBe("b.weight");
      expect((e as UncodableExponentError).index).toBe(417);
      expect((e as Error).message).toMatch(/b\.weight.*417/);
    }
  });

  const corrupt = (m: DF11Module, patch: Partial<DF11Module>): DF11Module => ({ ...m, ...patch });
  const base = () => encodeModule([syntheticWeights(100_000, 3)]).module;

  it("rejects output_positions that disagree with the stream", () => {
    const m = base();
    const op = m.outputPositions.slice();
    op[1] += 3;
    expect(() => decodeLikeKernel(corrupt(m, { outputPositions: op }))).toThrowError(InvalidModuleError);
  });
  it("rejects a wrong gap", () => {
    const m = base();
    const gaps = m.gaps.slice();
    gaps[3] ^= 0x10;
    expect(() => decodeLikeKernel(corrupt(m, { gaps }))).toThrowError(/gaps|output_positions/);
  });
  it("rejects LUTs with dangling pointers or zero code lengths", () => {
    const m = base();
    const luts = m.luts.slice();
    luts[0] = 250;
    expect(() => decodeModule(corrupt(m, { luts }))).toThrowError(/luts/);
    const luts2 = m.luts.slice();
    luts2.fill(0, luts2.length - 256);
    expect(() => decodeModule(corrupt(m, { luts: luts2 }))).toThrowError(/luts/);
  });
  it("the CPU decoders reject a corrupt stream, output_positions or gap (a file without checksums would otherwise decode into wrong weights)", () => {
    const m = base();
    expect(blockCount(m.encodedExponent.length)).toBeGreaterThan(3); // the check is between blocks
    // One byte of the stream in block 0 and in block 2, set to 0x00 and to 0xff. (Not every corruption
    // shows: Huffman codes resynchronise, and a change that keeps every block's code count and end bit is
    // invisible to the geometry — the kernel's check too; only the df11-sum64 checksums see those.)
    for (const at of [101, 9000]) {
      for (const value of [0x00, 0xff]) {
        const bytes = m.encodedExponent.slice();
        bytes[at] = value;
        const bad = corrupt(m, { encodedExponent: bytes });
        expect(() => decodeModule(bad), `byte ${at} = ${value}`).toThrowError(/block \d+: its \d+ codes .* end at bit \d+, but the next block's first code starts at bit \d+/);
        expect(() => decodeBlocks(bad, 0, blockCount(bytes.length), new Uint16Array(m.signMantissa.length))).toThrowError(InvalidModuleError);
      }
    }
    const op = m.outputPositions.slice();
    op[1] += 3;
    expect(() => decodeModule(corrupt(m, { outputPositions: op }))).toThrowError(/block 0: its \d+ codes/);
    const gaps = m.gaps.slice();
    gaps[320] ^= 0x80; // thread 512 (block 1's first): 5-bit gaps, its gap starts at bit 2560
    expect(() => decodeModule(corrupt(m, { gaps }))).toThrowError(/block 0: its \d+ codes/);
  });
  it("rejects a truncated stream and missing gaps", () => {
    const m = base();
    expect(() => decodeModule(corrupt(m, { encodedExponent: m.encodedExponent.subarray(0, 100) }))).toThrowError(InvalidModuleError);
    expect(() => decodeModule(corrupt(m, { gaps: m.gaps.subarray(0, 5) }))).toThrowError(/gaps/);
    expect(() => decodeModule(corrupt(m, { splitPositions: [5, 3] }))).toThrowError(/split_positions/);
  });
});

describe("partial decode", () => {
  it("decodes arbitrary element ranges (e.g. embedding rows) bit-exactly", async () => {
    const { decodeElements } = await import("../src/index.js");
    const w = syntheticWeights(1_500_001, 31);
    const { module } = encodeModule([w]);
    for (const [first, count] of [[0, 1], [0, 4096], [12345, 777], [1_499_000, 1001], [1_500_000, 1], [700_000, 0]]) {
      expectSameBits(decodeElements(module, first, count), w.subarray(first, first + count));
    }
    expect(() => decodeElements(module, 1_500_000, 2)).toThrow(RangeError);
  });
});
