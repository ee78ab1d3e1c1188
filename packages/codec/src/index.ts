/**
 * @df11/codec — the DFloat11 codec in pure TypeScript.
 *
 * BF16 weights are split into an 8-bit exponent, Huffman-coded, and a raw sign+mantissa byte. The
 * layout (LUTs, gaps, output positions) is that of the official `dfloat11` 0.5.0 package, so modules
 * produced here decode on its GPU kernel and vice versa.
 *
 * @example
 * ```ts
 * import { encodeModule, decodeModule, syntheticWeights } from "@df11/codec";
 * const weights = syntheticWeights(1 << 20);
 * const { module } = encodeModule([weights]);
 * const back = decodeModule(module); // bit-identical to `weights`
 * ```
 */
export * from "./errors.js";
export * from "./bf16.js";
export * from "./histogram.js";
export * from "./huffman.js";
export * from "./luts.js";
export * from "./format.js";
export * from "./encoder.js";
export { decodeTableFor, lookupExponent, FAST_BITS, type DecodeTable } from "./decode-table.js";
export { decodeModule, decodeBlocks, decodeElements, decodeExponents, blockStartBit } from "./decoder.js";
export { decodeLikeKernel } from "./kernel-decoder.js";
export * from "./stats.js";
export * from "./synthetic.js";
export * from "./checksum.js";
export * from "./fused-layout.js";
