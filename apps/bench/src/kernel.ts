#!/usr/bin/env node
/**
 * GPU decode-kernel benchmark on one Llama-3.1-8B-shaped layer (q,k,v,o,gate,up,down concatenated:
 * 218,103,808 elements): ms per layer, GB/s of BF16 output, and this GPU's device-to-device copy
 * bandwidth in the same run. Imports only @df11/codec and @df11/cuda-kernel (runs on a bare GPU host).
 */
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { parseArgs } from "node:util";
import { encodeModule, moduleStats, syntheticWeights } from "@df11/codec";
import { copyDeviceToDevice, CudaEvent, DeviceBuffer, DeviceModule, devices, synchronize } from "@df11/cuda-kernel";

const { values: args } = parseArgs({
  options: {
    out: { type: "string", default: "bench-results/kernel.json" },
    iterations: { type: "string", default: "50" },
    hidden: { type: "string", default: "4096" },
    intermediate: { type: "string", default: "14336" },
    "kv-dim": { type: "string", default: "1024" },
  },
});
const iterations = Number(args.iterations);
const h = Number(args.hidden);
const inter = Number(args.intermediate);
const kv = Number(args["kv-dim"]);

const shapes: Array<[string, number, number]> = [
  ["q_proj", h, h],
  ["k_proj", kv, h],
  ["v_proj", kv, h],
  ["o_proj", h, h],
  ["gate_proj", inter, h],
  ["up_proj", inter, h],
  ["down_proj", h, inter],
];
const log = (s: string) => console.error(s);
log(`building a Llama-3.1-8B-shaped layer (${shapes.map(([n, r, c]) => `${n} ${r}×${c}`).join(", ")})`);
const parts = shapes.map(([, r, c], i) => syntheticWeights(r * c, 100 + i, 1 / Math.sqrt(c) / 2));
const elements = parts.reduce((s, p) => s + p.length, 0);
let t = performance.now();
const { module, histogram } = encodeModule(parts);
const encodeSeconds = (performance.now() - t) / 1000;
const stats = moduleStats(module, histogram);
log(`encoded ${elements.toLocaleString("en")} elements in ${encodeSeconds.toFixed(2)} s (ratio ${(stats.ratio * 100).toFixed(2)} %)`);

const gpu = devices()[0];
using resident = DeviceModule.upload(module);
using out = DeviceBuffer.alloc(elements * 2);
using copyTarget = DeviceBuffer.alloc(elements * 2);
using start = new CudaEvent();
using stop = new CudaEvent();

const time = (work: () => void): { meanMs: number; minMs: number } => {
  for (let i = 0; i < 5; i++) work();
  synchronize();
  const samples: number[] = [];
  for (let i = 0; i < iterations; i++) {
    start.record();
    work();
    stop.record();
    stop.synchronize();
    samples.push(stop.elapsedSince(start));
  }
  return { meanMs: samples.reduce((a, b) => a + b, 0) / samples.length, minMs: Math.min(...samples) };
};

const decodeTime = time(() => resident.decode(out));
// Correctness in the same run: the decoded layer must equal the original bits.
const decoded = out.download(new Uint16Array(elements));
let offset = 0;
for (const p of parts) {
  for (let i = 0; i < p.length; i++) if (decoded[offset + i] !== p[i]) throw new Error(`decode mismatch at element ${offset + i}`);
  offset += p.length;
}
const copyTime = time(() => copyDeviceToDevice(copyTarget, out, elements * 2));

const outputBytes = elements * 2;
const result = {
  benchmark: "kernel",
  date: new Date().toISOString(),
  device: gpu,
  layer: { shapes: Object.fromEntries(shapes.map(([n, r, c]) => [n, [r, c]])), elements },
  compressedBytes: stats.compressedBytes,
  ratio: stats.ratio,
  decode: {
    meanMs: decodeTime.meanMs,
    minMs: decodeTime.minMs,
    outputGBps: outputBytes / (decodeTime.meanMs / 1000) / 1e9,
    /** Bytes moved: stream + sign/mantissa read, BF16 written. */
    memoryGBps: (stats.compressedBytes + outputBytes) / (decodeTime.meanMs / 1000) / 1e9,
  },
  deviceToDeviceCopy: {
    meanMs: copyTime.meanMs,
    readPlusWriteGBps: (2 * outputBytes) / (copyTime.meanMs / 1000) / 1e9,
  },
  iterations,
  targets: {
    outputGBps: { target: "≥ 1200 GB/s (stretch ≥ 1600)", reference: "official kernel on H100 80GB: 0.82 ms, 531 GB/s" },
  },
};
const outPath = resolve(args.out!);
await mkdir(dirname(outPath), { recursive: true });
await writeFile(outPath, JSON.stringify(result, null, 2) + "\n");
console.log(JSON.stringify(result, null, 2));
log(
  `decode: ${decodeTime.meanMs.toFixed(3)} ms/layer (min ${decodeTime.minMs.toFixed(3)}), ${result.decode.outputGBps.toFixed(0)} GB/s of BF16 output; ` +
    `device copy ${result.deviceToDeviceCopy.readPlusWriteGBps.toFixed(0)} GB/s read+write; saved ${outPath}`,
);
