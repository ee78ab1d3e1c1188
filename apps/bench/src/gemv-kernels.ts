#!/usr/bin/env node
/**
 * GEMV kernels on Llama-3.1-8B-shaped matrices (q|k|v, o, gate|up, down, lm_head), BF16 vs the DF11
 * fused layout: per matrix and rows of x (1…16) the median time of one launch, DRAM GB/s of the bytes
 * each must read, and whether both give bit-identical outputs; then a whole token's matrix-vector
 * products (32 layers + lm_head) replayed as one CUDA graph — the quantity the cuBLAS floor
 * (tools/cublas_floor.py) measures; the fused layout's size (bits per weight, escape rate), its
 * transcode and unpack speed, and this GPU's device-to-device copy bandwidth. Synthetic weights with
 * trained-model statistics (@df11/codec syntheticWeights, std 1/(2√fan_in)), tiled from a 32 Mi pool.
 *
 *   node apps/bench/dist/gemv-kernels.js [--out FILE] [--iterations 50] [--rows 1,2,4,8,16]
 */
import { parseArgs } from "node:util";
import { syntheticWeights } from "@df11/codec";
import { CudaStream, DeviceBuffer, devices, FusedDeviceMatrix, fusedLayoutReport, nativeAddon, programmaticLaunch, synchronize } from "@df11/cuda-kernel";
import { saveJson } from "./child.js";
import { benchActivations, GpuTimer } from "./gpu-timing.js";

const { values: args } = parseArgs({
  options: {
    out: { type: "string", default: "bench-results/gemv-kernels.json" },
    iterations: { type: "string", default: "50" },
    rows: { type: "string", default: "1,2,4,8,16,32,64" },
    layers: { type: "string", default: "32" },
  },
});
const iterations = Number(args.iterations);
const rowCounts = args.rows!.split(",").map(Number);
const log = (s: string) => console.error(s);
const addon = nativeAddon();

const H = 4096;
const I = 14336;
const shapes: Array<[string, number, number]> = [
  ["q|k|v", 6144, H],
  ["o", H, H],
  ["gate|up", 2 * I, H],
  ["down", H, I],
  ["lm_head", 128256, H],
];

const POOL = 32 * 1024 * 1024;
log("generating a pool of synthetic weights…");
const pool = DeviceBuffer.alloc(POOL * 2);
pool.upload(syntheticWeights(POOL, 7, 0.5 / Math.sqrt(H)));
const poolDown = DeviceBuffer.alloc(POOL * 2);
poolDown.upload(syntheticWeights(POOL, 8, 0.5 / Math.sqrt(I)));

using stream = new CudaStream();
using timer = new GpuTimer(stream, iterations);
const time = (fn: () => void) => timer.median(fn);

interface Matrix {
  name: string;
  rows: number;
  cols: number;
  bf16: DeviceBuffer;
  fused: FusedDeviceMatrix;
  transcodeMs: number;
}
const matrices: Matrix[] = [];
for (const [name, rows, cols] of shapes) {
  const bf16 = DeviceBuffer.alloc(rows * cols * 2);
  const src = name === "down" ? poolDown : pool;
  for (let at = 0; at < rows * cols; at += POOL) addon.copyAddress(bf16.address + at * 2, src.address, Math.min(POOL, rows * cols - at) * 2);
  synchronize();
  const t0 = performance.now();
  const fused = FusedDeviceMatrix.transcode(rows, cols, { windowRows: Math.ceil(rows / 8) * 8, fill: (r0) => bf16.address + r0 * cols * 2 }, stream);
  stream.synchronize();
  const transcodeMs = performance.now() - t0;
  matrices.push({ name, rows, cols, bf16, fused, transcodeMs });
  log(`${name} ${rows}×${cols}: fused ${(fused.deviceBytes / 1e6).toFixed(1)} MB (${((fused.deviceBytes * 8) / (rows * cols)).toFixed(3)} bits/weight, escapes ${((100 * fused.escapes) / (rows * cols)).toFixed(3)} %), transcoded in ${transcodeMs.toFixed(1)} ms`);
}

const maxK = I;
const x = benchActivations(64, maxK);
// x rounded to BF16 once, as the backend does for steps of more than 8 rows (the GEMV reads that copy
// then). Rows of x are maxK apart in both, so the copy is only valid for matrices with cols = maxK: the
// others get a copy of their own per call (timed apart from the kernel, as the backend's is one small kernel).
const xb = DeviceBuffer.alloc(64 * maxK * 2);
const outA = DeviceBuffer.alloc(64 * 128256 * 4);
const outB = DeviceBuffer.alloc(64 * 128256 * 4);
const xbFor = (m: Matrix, r: number) => {
  if (r <= 8) return 0;
  addon.toBf16(x.address, r * m.cols, xb.address, stream.native);
  return xb.address;
};
const converted = new Map<string, number>();
const prepareXb = (m: Matrix, r: number) => {
  const key = `${m.cols}:${r}`;
  if (!converted.has(key)) {
    converted.clear();
    converted.set(key, xbFor(m, r));
  }
  return converted.get(key)!;
};
const bf16Gemv = (m: Matrix, r: number, out: DeviceBuffer, xBf16 = prepareXb(m, r)) =>
  addon.linear(m.bf16.address, m.rows, m.cols, x.address, m.cols, r, 0, out.address, m.rows, false, xBf16, stream.native, 0, 0, false, xBf16 !== 0);
const fusedGemv = (m: Matrix, r: number, out: DeviceBuffer, xBf16 = prepareXb(m, r)) =>
  m.fused.gemv({ rowBegin: 0, rowEnd: m.rows, x: x.address, ldx: m.cols, rows: r, xBf16, bias: 0, out: out.address, ldo: m.rows, accumulate: false, stream });

const perMatrix = [];
let allIdentical = true;
for (const m of matrices) {
  for (const r of rowCounts) {
    const bf16Ms = time(() => bf16Gemv(m, r, outA));
    const fusedMs = time(() => fusedGemv(m, r, outB));
    const a = outA.download(new Uint8Array(r * m.rows * 4));
    const b = outB.download(new Uint8Array(r * m.rows * 4));
    // With more than 8 rows: the same bits as the kernel rounding x itself (no BF16 copy).
    let identical = Buffer.from(a).equals(Buffer.from(b));
    if (r > 8) {
      bf16Gemv(m, r, outB, 0);
      identical &&= Buffer.from(a).equals(Buffer.from(outB.download(new Uint8Array(r * m.rows * 4))));
    }
    allIdentical &&= identical;
    const bf16Bytes = m.rows * m.cols * 2;
    const row = {
      matrix: m.name,
      rows: m.rows,
      cols: m.cols,
      xRows: r,
      bf16Us: bf16Ms * 1000,
      fusedUs: fusedMs * 1000,
      bf16GBps: bf16Bytes / (bf16Ms * 1e6),
      fusedGBps: m.fused.deviceBytes / (fusedMs * 1e6),
      fusedSpeedup: bf16Ms / fusedMs,
      bitIdentical: identical,
    };
    perMatrix.push(row);
    log(`${m.name.padEnd(8)} x${String(r).padStart(2)}: bf16 ${row.bf16Us.toFixed(1).padStart(8)} µs ${row.bf16GBps.toFixed(0).padStart(5)} GB/s | fused ${row.fusedUs.toFixed(1).padStart(8)} µs ${row.fusedGBps.toFixed(0).padStart(5)} GB/s | ×${row.fusedSpeedup.toFixed(2)} ${identical ? "identical" : "DIFFERENT"}`);
  }
}

// A token's matrix-vector products: layers × (q|k|v, o, gate|up, down) + lm_head, as one CUDA graph.
const layers = Number(args.layers);
const tokenGraph = (layout: "bf16" | "fused", r: number) => {
  const gemv = layout === "bf16" ? bf16Gemv : fusedGemv;
  converted.clear(); // x's BF16 copy is made inside the graph, where K changes (as the backend makes it per step)
  stream.beginCapture();
  let ok = false;
  try {
    for (let l = 0; l < layers; l++) for (const m of matrices.slice(0, 4)) gemv(m, r, outA);
    gemv(matrices[4], r, outA);
    ok = true;
  } finally {
    const graph = stream.endCapture();
    if (!ok) graph.dispose();
    else {
      const ms = time(() => graph.launch(stream));
      graph.dispose();
      return ms;
    }
  }
  return NaN;
};
const token = rowCounts.map((r) => {
  const bf16Ms = tokenGraph("bf16", r);
  const fusedMs = tokenGraph("fused", r);
  log(`token (${layers} layers + lm_head), ${r} row(s): bf16 ${bf16Ms.toFixed(3)} ms, fused ${fusedMs.toFixed(3)} ms (×${(bf16Ms / fusedMs).toFixed(2)})`);
  return { xRows: r, bf16Ms, fusedMs, fusedSpeedup: bf16Ms / fusedMs };
});

// Unpack (fused → BF16, the windows prefill multiplies on the tensor cores) and copy bandwidth.
const big = matrices[2];
const unpackMs = time(() => big.fused.decodeRows(0, big.rows, big.bf16.address, stream));
const copyMs = time(() => addon.copyAddress(matrices[4].bf16.address, big.bf16.address, big.rows * big.cols * 2, stream.native));
const copyGBps = (2 * big.rows * big.cols * 2) / (copyMs * 1e6);
log(`unpack ${big.name}: ${unpackMs.toFixed(3)} ms (${((big.fused.deviceBytes + big.rows * big.cols * 2) / (unpackMs * 1e6)).toFixed(0)} GB/s read + written); device copy ${copyGBps.toFixed(0)} GB/s (read + written)`);

const result = {
  benchmark: "gemv-kernels",
  date: new Date().toISOString(),
  device: devices()[0],
  programmaticLaunch: programmaticLaunch(),
  iterations,
  layout: {
    ...fusedLayoutReport(matrices.map((m) => m.fused)),
    perMatrix: matrices.map((m) => {
      const r = fusedLayoutReport([m.fused]);
      return { name: m.name, rows: m.rows, cols: m.cols, bitsPerWeight: r.bitsPerWeight, escapeRate: r.escapeRate, transcodeMs: m.transcodeMs };
    }),
  },
  allBitIdentical: allIdentical,
  perMatrix,
  token,
  unpack: { matrix: big.name, ms: unpackMs },
  deviceCopyGBps: copyGBps,
};
log(`saved ${saveJson(args.out!, result)}`);
if (!allIdentical) process.exitCode = 1;
for (const m of matrices) {
  m.fused.dispose();
  m.bf16.dispose();
}
