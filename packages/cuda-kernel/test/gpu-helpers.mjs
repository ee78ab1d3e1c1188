// Shared by the GPU test files: a node:test `test` that runs on a GPU host and, without a GPU, is
// skipped with the reason (each test counted as skipped, so a GPU-less run reads as skipped, not empty).
import { test } from "node:test";
import { cudaUnavailableReason } from "../dist/index.js";

export const gpuUnavailableReason = cudaUnavailableReason();
if (gpuUnavailableReason) console.log(`# SKIPPING GPU tests: ${gpuUnavailableReason}`);

/** `gpuTest(name, [options,] fn)`: like node:test's `test`, skipped without a GPU. */
export function gpuTest(name, options, fn) {
  if (typeof options === "function") [options, fn] = [{}, options];
  return test(name, { ...options, skip: gpuUnavailableReason ? `no GPU: ${gpuUnavailableReason}` : options.skip }, fn);
}

/** Relative L2 error of `got` against `expected` (Infinity when `got` holds a non-finite value). */
export function relError(got, expected) {
  let num = 0;
  let den = 0;
  for (let i = 0; i < expected.length; i++) {
    if (!Number.isFinite(got[i])) return Infinity;
    num += (got[i] - expected[i]) ** 2;
    den += expected[i] ** 2;
  }
  return Math.sqrt(num / den);
}

const bf16Scratch = new Float32Array(1);
const bf16Bits = new Uint32Array(bf16Scratch.buffer);
/** float32 → BF16 bits, round to nearest even (as the GPU's conversion); a NaN's result is not defined here (check NaNs apart). */
export function toBf16(v) {
  bf16Scratch[0] = v;
  const u = bf16Bits[0];
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** BF16 bits → the float32 value (exact). */
export function fromBf16(b) {
  bf16Bits[0] = b << 16;
  return bf16Scratch[0];
}
