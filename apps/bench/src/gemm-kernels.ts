#!/usr/bin/env node
/**
 * The prefill GEMM on Llama-3.1-8B-shaped matrices (q|k|v, o, k, gate|up, down, lm_head) at M rows of x
 * (128, 256, 512, 2048 by default): TFLOP/s (2·M·N·K / median time of one launch) of each kernel launchGemm can run — the
 * Hopper wgmma + TMA kernel (auto tiles, and 128 / 256-column tiles forced) and the mma.sync kernel —
 * against torch F.linear BF16 (cuBLAS) measured by tools/torch_gemm.py in the same run (--torch FILE),
 * and how far the Hopper kernel's output is from mma.sync's. With the Hopper kernel, W in the DF11 fused
 * layout too: the fused GEMM (tiles decoded inside the kernel; its output must equal the BF16 kernel's bit
 * for bit) against what DF11 prefill did before it, unpacking W to BF16 and then running the BF16 GEMM.
 * Writes JSON and an SVG bar chart beside it.
 *
 *   node apps/bench/dist/gemm-kernels.js [--out FILE] [--torch FILE] [--rows 128,256,512,2048] [--iterations 20]
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { syntheticWeights } from "@df11/codec";
import { CudaStream, DeviceBuffer, devices, FusedDeviceMatrix, nativeAddon, programmaticLaunch, synchronize } from "@df11/cuda-kernel";
import { saveJson } from "./child.js";
import { benchActivations, GpuTimer } from "./gpu-timing.js";
import { barChart } from "./plot.js";

const { values: args } = parseArgs({
  options: {
    out: { type: "string", default: "bench-results/gemm-kernels.json" },
    torch: { type: "string" },
    iterations: { type: "string", default: "20" },
    rows: { type: "string", default: "128,256,512,2048" },
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
  ["k", 1024, H],
  ["gate|up", 2 * I, H],
  ["down", H, I],
  ["lm_head", 128256, H],
];
type Variant = "sm90" | "sm90-128" | "sm90-256" | "mma";
const hopper = addon.setGemmVariant("sm90");
const variants: Variant[] = hopper ? ["sm90", "sm90-128", "sm90-256", "mma"] : ["mma"];
log(hopper ? "Hopper (wgmma) GEMM available" : "no Hopper GEMM on this device/build: mma.sync only");

const POOL = 32 * 1024 * 1024;
const pool = DeviceBuffer.alloc(POOL * 2);
pool.upload(syntheticWeights(POOL, 7, 0.5 / Math.sqrt(H)));
const maxRows = Math.max(...rowCounts);
const maxN = Math.max(...shapes.map((s) => s.at(1) as number));
const x = benchActivations(maxRows, I);
const xb = DeviceBuffer.alloc(maxRows * I * 2);
const out = DeviceBuffer.alloc(maxRows * maxN * 4);
const workspace = DeviceBuffer.alloc(32 * 1024 * 1024);

using stream = new CudaStream();
using timer = new GpuTimer(stream, iterations);
const time = (fn: () => void) => timer.median(fn);

interface TorchRow {
  matrix: string;
  M: number;
  N: number;
  K: number;
  us: number;
  tflops: number;
}
const torch: { engine: string; shapes: TorchRow[] } | undefined = args.torch && existsSync(args.torch) ? JSON.parse(readFileSync(args.torch, "utf8")) : undefined;

const rows: Array<Record<string, unknown>> = [];
for (const [name, N, K] of shapes) {
  const w = DeviceBuffer.alloc(N * K * 2);
  for (let at = 0; at < N * K; at += POOL) addon.copyAddress(w.address + at * 2, pool.address, Math.min(POOL, N * K - at) * 2);
  synchronize();
  const fused = hopper ? FusedDeviceMatrix.transcode(N, K, { windowRows: FusedDeviceMatrix.windowRows(1 << 26, K), fill: (r0) => w.address + r0 * K * 2 }, stream) : undefined;
  const unpacked = fused ? DeviceBuffer.alloc(N * K * 2 + 16) : undefined;
  for (const M of rowCounts) {
    addon.toBf16(x.address, M * K, xb.address, stream.native);
    const gemm = (weight = w) => addon.linear(weight.address, N, K, x.address, K, M, 0, out.address, N, false, xb.address, stream.native, workspace.address, workspace.byteLength, true);
    const flops = 2 * M * N * K;
    const row: Record<string, unknown> = { matrix: name, M, N, K };
    let reference: Float32Array | undefined;
    const compare = M * N <= 1 << 25;
    for (const v of variants.slice().reverse()) {
      addon.setGemmVariant(v);
      const ms = time(() => gemm());
      row[`${v}Us`] = ms * 1000;
      row[`${v}Tflops`] = flops / (ms * 1e9);
      if (compare) {
        const got = out.download(new Float32Array(M * N));
        if (v === "mma") reference = got;
        else if (reference) {
          let num = 0;
          let den = 0;
          for (let i = 0; i < got.length; i++) {
            num += (got[i] - reference[i]) ** 2;
            den += reference[i] ** 2;
          }
          row[`${v}VsMma`] = Math.sqrt(num / den);
        }
      }
    }
    if (fused) {
      // sm90 (auto tile) output from the loop above is in `out`; the fused product must match it bit for bit.
      addon.setGemmVariant("sm90");
      addon.setFusedGemm("always"); // measured at every size (auto stops at 128 rows)
      gemm();
      stream.synchronize();
      const bf16 = compare ? out.download(new Float32Array(M * N)) : undefined;
      const product = () => fused.gemm({ rowBegin: 0, rowEnd: N, xBf16: xb.address, rows: M, bias: 0, out: out.address, ldo: N, accumulate: false, workspace: workspace.address, workspaceBytes: workspace.byteLength, stream });
      if (!product()) throw new Error("the fused GEMM declined a Hopper device");
      const ms = time(() => product());
      row.fusedUs = ms * 1000;
      row.fusedTflops = flops / (ms * 1e9);
      if (bf16) {
        const got = out.download(new Float32Array(M * N));
        const bad = got.findIndex((v, i) => !Object.is(v, bf16[i]));
        row.fusedEqualsBf16 = bad === -1;
        if (bad !== -1) log(`${name} M=${M}: fused output ${bad} is ${got[bad]}, BF16 ${bf16[bad]}`);
      }
      const unpackMs = time(() => {
        fused.decodeRows(0, N, unpacked!.address, stream);
        gemm(unpacked);
      });
      row.unpackGemmUs = unpackMs * 1000;
      row.unpackGemmTflops = flops / (unpackMs * 1e9);
      addon.setGemmVariant("auto");
      addon.setFusedGemm("auto");
    }
    const t = torch?.shapes.find((r) => r.matrix === name && r.M === M);
    if (t) {
      row.torchUs = t.us;
      row.torchTflops = t.tflops;
    }
    rows.push(row);
    const f = (v: string) => (row[`${v}Tflops`] === undefined ? "" : `${v} ${(row[`${v}Tflops`] as number).toFixed(0).padStart(4)}`);
    const fusedText = row.fusedTflops === undefined ? "" : ` | fused ${(row.fusedTflops as number).toFixed(0)} (unpack+gemm ${(row.unpackGemmTflops as number).toFixed(0)}${row.fusedEqualsBf16 === undefined ? "" : row.fusedEqualsBf16 ? ", = BF16 bits" : ", DIFFERS from BF16"})`;
    log(`${name.padEnd(8)} M=${String(M).padStart(5)} N=${String(N).padStart(6)} K=${String(K).padStart(5)} TFLOP/s: ${variants.map(f).join(" | ")}${fusedText}${t ? ` | torch ${t.tflops.toFixed(0)}` : ""}${row.sm90VsMma !== undefined ? ` (sm90 vs mma ${(row.sm90VsMma as number).toExponential(1)})` : ""}`);
  }
  fused?.dispose();
  unpacked?.dispose();
  w.dispose();
}
addon.setGemmVariant("auto");

const summary = rowCounts.map((M) => {
  const at = rows.filter((r) => r.M === M && r.matrix !== "lm_head" && r.matrix !== "k");
  const flops = at.reduce((s, r) => s + 2 * M * (r.N as number) * (r.K as number), 0);
  const sum = (key: string) => at.reduce((s, r) => s + ((r[key] as number | undefined) ?? NaN), 0);
  const layer = Object.fromEntries([...variants, ...(hopper ? ["fused", "unpackGemm"] : []), "torch"].map((v) => [`${v}Tflops`, flops / (sum(`${v}Us`) * 1e6)]));
  log(`one layer's products (q|k|v, o, gate|up, down) at M=${M}: ${Object.entries(layer).map(([k, v]) => `${k.replace("Tflops", "")} ${v.toFixed(0)}`).join(" | ")} TFLOP/s`);
  return { M, ...layer };
});

const result = {
  benchmark: "gemm-kernels",
  date: new Date().toISOString(),
  device: devices()[0],
  programmaticLaunch: programmaticLaunch(),
  hopperKernel: hopper,
  torch: torch?.engine,
  iterations,
  note: "df11 writes float32 outputs (torch BF16); TFLOP/s = 2·M·N·K / median launch time",
  layer: summary,
  shapes: rows,
};
const path = saveJson(args.out!, result);
log(`saved ${path}`);
const bars = rows
  .filter((r) => r.matrix !== "lm_head")
  .flatMap((r) => [
    ...(hopper ? [{ label: `${r.matrix} M=${r.M} sm90`, value: r.sm90Tflops as number, kind: "ours" as const }] : []),
    ...(r.fusedTflops !== undefined ? [{ label: `${r.matrix} M=${r.M} DF11 fused`, value: r.fusedTflops as number, kind: "ours" as const }] : []),
    { label: `${r.matrix} M=${r.M} mma.sync`, value: r.mmaTflops as number, kind: "ours" as const },
    ...(r.torchTflops !== undefined ? [{ label: `${r.matrix} M=${r.M} torch`, value: r.torchTflops as number, kind: "reference" as const }] : []),
  ]);
writeFileSync(path.replace(/\.json$/, "") + ".svg", barChart(`GEMM (prefill), ${devices()[0]?.name ?? "GPU"}: df11 vs torch BF16`, "TFLOP/s", bars));
