// The GPU's fused-layout decode arithmetic, run on the host: test/native/fused-decode-host.cc compiles
// csrc/kernels/fused-decode.cuh (the functions the fused GEMV, unpack and Hopper GEMM kernels call, byte permute
// emulated) with the host C++ compiler and decodes matrices the reference encoder (@df11/codec) wrote.
// Every BF16 bit pattern must come back. (The kernels themselves run in the GPU tests.)
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeFusedMatrix, mergeBF16, mulberry32, syntheticWeights, type FusedMatrix } from "@df11/codec";
import { repoRoot } from "../../../test-support/fixtures.js";

const cudaInclude = [process.env.CUDA_HOME, "/usr/local/cuda"].filter(Boolean).map((d) => join(d!, "include")).find((d) => existsSync(join(d, "cuda_runtime.h")));
const compiler = ["g++", "c++", "clang++"].find((c) => spawnSync(c, ["--version"]).status === 0);
const skip = !cudaInclude ? "no CUDA headers (cuda_runtime.h) found" : !compiler ? "no host C++ compiler" : undefined;
if (skip) console.log(`skipping the host run of the fused decode: ${skip}`);

describe.skipIf(skip)("fused-layout decode arithmetic of the GPU kernels, run on the host", () => {
  let work = "";
  let binary = "";
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), "df11-fused-host-"));
    binary = join(work, "fused-decode-host");
    execFileSync(compiler!, ["-std=c++17", "-O2", "-Wall", "-Werror", "-Wno-unknown-pragmas", `-I${cudaInclude}`, join(repoRoot, "packages/cuda-kernel/test/native/fused-decode-host.cc"), "-o", binary]);
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  /** Runs the host decoder on `m` and returns what it decoded. */
  function decodeOnHost(m: FusedMatrix, mode: "warp" | "stage"): Uint16Array {
    const header = new Uint32Array([m.rows, m.cols, m.groups, m.tiles, m.escapePositions.length]);
    const parts = [header, m.data, m.tables, m.escapeOffsets, m.escapePositions, m.escapeExponents].map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength));
    const input = join(work, "in.bin");
    const output = join(work, "out.bin");
    writeFileSync(input, Buffer.concat(parts));
    execFileSync(binary, mode === "stage" ? [input, output, "stage"] : [input, output]);
    const bytes = readFileSync(output);
    return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  }

  // Both ways the GPU decodes: a warp per tile into registers (GEMV, unpack), and 64 k × 128 rows at a
  // time into the Hopper GEMM's swizzled shared-memory stages (its producer warps).
  const expectRoundTrip = (w: Uint16Array, rows: number, cols: number) => {
    const m = encodeFusedMatrix(w, rows, cols);
    for (const mode of ["warp", "stage"] as const) {
      const back = decodeOnHost(m, mode);
      expect(back.length).toBe(w.length);
      expect(back.findIndex((v, i) => v !== w[i]), `${mode}: first differing weight`).toBe(-1);
    }
  };

  it("realistic weights, N and K aligned and not (4096, 14336 + 8, 344, 8)", () => {
    for (const [rows, cols] of [
      [64, 4096],
      [6, 14336 + 8],
      [9, 344],
      [3, 8],
      [17, 1000],
      [300, 520],
    ]) {
      expectRoundTrip(syntheticWeights(rows * cols, rows + cols, 0.5 / Math.sqrt(cols)), rows, cols);
    }
  });

  it("every exponent value, more than 32 escapes in a step, NaN/±Inf/−0/denormals", () => {
    const rand = mulberry32(9);
    const cols = 3072;
    const w = new Uint16Array(2 * cols);
    for (let k = 0; k < cols; k++) w[k] = mergeBF16((k * 37) % 256, Math.floor(rand() * 256));
    const specials = [0x7fc0, 0xffc1, 0x7f81, 0x7f80, 0xff80, 0x8000, 0x0000, 0x0001, 0x807f, 0x0040, 0x3f80, 0xbf80];
    for (let k = 0; k < cols; k++) w[cols + k] = specials[Math.floor(rand() * specials.length)];
    expectRoundTrip(w, 2, cols);
    // Nearly every weight escaped (exponents spread evenly over a row: ~94 % fit none of its 8 codes) and 130 rows (two block tiles).
    const all = new Uint16Array(130 * 264);
    for (let i = 0; i < all.length; i++) all[i] = mergeBF16(((i % 264) * 29) % 256, Math.floor(rand() * 256));
    expectRoundTrip(all, 130, 264);
  });
});
