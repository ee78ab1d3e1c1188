import { entropyBits } from "./histogram.js";
import { codeLengthsOf } from "./luts.js";
import type { DF11Module } from "./format.js";

/** Sizes and code statistics of one compressed module. */
export interface ModuleStats {
  readonly elements: number;
  /** BF16 bytes: 2 per element. */
  readonly originalBytes: number;
  /** Bytes of all six tensors as stored. */
  readonly compressedBytes: number;
  /** compressedBytes / originalBytes. */
  readonly ratio: number;
  /** Bits per element spent on exponents (stream incl. padding) — compare with the entropy. */
  readonly exponentBitsPerElement: number;
  /** Shannon entropy of the exponent histogram, bits per element (when a histogram is given). */
  readonly exponentEntropy?: number;
  /** Number of LUT rows incl. the code-length row. */
  readonly lutRows: number;
  /** Code length of each exponent that occurs, as [exponent, bits] pairs. */
  readonly codeLengths: ReadonlyArray<readonly [number, number]>;
}

/** Statistics of a module; pass the exponent histogram to include the entropy bound. */
export function moduleStats(m: DF11Module, histogram?: ArrayLike<number>): ModuleStats {
  const elements = m.signMantissa.length;
  const compressedBytes =
    m.luts.length +
    m.encodedExponent.length +
    m.signMantissa.length +
    m.outputPositions.length * 4 +
    m.gaps.length +
    m.splitPositions.length * 8;
  const lengths = codeLengthsOf(m.luts);
  const codeLengths: Array<readonly [number, number]> = [];
  lengths.forEach((len, e) => {
    if (len > 0) codeLengths.push([e, len]);
  });
  return {
    elements,
    originalBytes: elements * 2,
    compressedBytes,
    ratio: compressedBytes / (elements * 2),
    exponentBitsPerElement: (m.encodedExponent.length * 8) / elements,
    exponentEntropy: histogram ? entropyBits(histogram) : undefined,
    lutRows: m.luts.length / 256,
    codeLengths,
  };
}
