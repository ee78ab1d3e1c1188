// Per-kernel summary of an `ncu --csv --page raw` run of ncu-decode.mjs: for the one-token steps (the last
// 4 forward passes, each ending with its argmax; averaged), each kernel's time, DRAM
// bytes and throughput, and instructions (warp and thread) per weight read; printed as a table, written
// as JSON.   node scripts/gpu/ncu-summary.mjs ncu.csv LAYOUT out.json
import { readFileSync, writeFileSync } from "node:fs";

const [csvPath, layout, outPath] = process.argv.slice(2);
const lines = readFileSync(csvPath, "utf8").split(/\r?\n/).filter((l) => l.startsWith('"'));
const parse = (l) => l.slice(1, -1).split('","');
const header = parse(lines[0]);
const rows = lines.slice(2).map(parse).map((r) => Object.fromEntries(header.map((h, i) => [h, r[i]])));
const num = (v) => Number(String(v ?? "").replace(/,/g, ""));
const kernels = rows.map((r) => ({
  name: (r["Kernel Name"] ?? r["Function Name"] ?? "").replace(/^void /, "").replaceAll("(anonymous namespace)::", "").replaceAll("<unnamed>::", "").replaceAll("unnamed>::", "").replace(/^df11::/, "").replace(/[<(].*$/, ""),
  ns: num(r["gpu__time_duration.sum"]),
  readBytes: num(r["dram__bytes_read.sum"]),
  writeBytes: num(r["dram__bytes_write.sum"]),
  dramPct: num(r["dram__throughput.avg.pct_of_peak_sustained_elapsed"]),
  warpInst: num(r["smsp__inst_executed.sum"]),
  threadInst: num(r["smsp__thread_inst_executed.sum"]),
  l2Bytes: num(r["lts__t_bytes.sum"]),
  issuePct: num(r["smsp__issue_active.avg.pct_of_peak_sustained_active"]),
}));
// Each forward pass ends with its argmax: the last 4 passes are the one-token steps.
const steps = 4;
const ends = kernels.map((k, i) => (k.name === "argmaxKernel" ? i : -1)).filter((i) => i >= 0);
const decode = kernels.slice(ends[ends.length - steps - 1] + 1, ends[ends.length - 1] + 1);
// A step's GEMVs run in model order: per layer q|k|v, o, gate|up, down; then lm_head (a step's last).
const MATRICES = ["q|k|v", "o", "gate|up", "down"];
for (let i = 0, j = 0; i < decode.length; i++) {
  if (decode[i].name === "argmaxKernel") j = 0;
  if (decode[i].name !== "gemvKernel") continue;
  const lastOfStep = !decode.slice(i + 1, decode.findIndex((k, n) => n > i && k.name === "argmaxKernel")).some((k) => k.name === "gemvKernel");
  decode[i] = { ...decode[i], name: `gemvKernel ${lastOfStep ? "lm_head" : MATRICES[j++ % 4]}` };
}
const bytesPerWeight = layout === "bf16" ? 2 : 11.33 / 8;
const byName = new Map();
for (const k of decode) {
  const s = byName.get(k.name) ?? { name: k.name, launches: 0, ns: 0, readBytes: 0, writeBytes: 0, warpInst: 0, threadInst: 0, l2Bytes: 0, issueNs: 0 };
  s.launches++;
  s.ns += k.ns;
  s.readBytes += k.readBytes;
  s.writeBytes += k.writeBytes;
  s.warpInst += k.warpInst;
  s.threadInst += k.threadInst;
  s.l2Bytes += k.l2Bytes || 0;
  s.issueNs += (k.issuePct || 0) * k.ns;
  byName.set(k.name, s);
}
const perStep = [...byName.values()].map((s) => ({
  kernel: s.name,
  launchesPerStep: s.launches / steps,
  microsecondsPerStep: s.ns / steps / 1000,
  dramGBps: (s.readBytes + s.writeBytes) / s.ns,
  dramReadMBPerStep: s.readBytes / steps / 1e6,
  l2MBPerStep: s.l2Bytes / steps / 1e6,
  issueActivePct: s.issueNs / s.ns,
  // For the GEMV: weights read ≈ DRAM bytes read / bytes per weight of the layout.
  ...(s.name.startsWith("gemvKernel") ? { threadInstructionsPerWeight: s.threadInst / (s.readBytes / bytesPerWeight), warpInstructionsPerWeight: s.warpInst / (s.readBytes / bytesPerWeight) } : {}),
}));
perStep.sort((a, b) => b.microsecondsPerStep - a.microsecondsPerStep);
const total = perStep.reduce((n, k) => n + k.microsecondsPerStep, 0);
console.log(`| kernel (${layout}) | launches/step | µs/step (serialised) | share | DRAM GB/s | DRAM read MB/step | L2 MB/step | issue active % | thread inst/weight |`);
console.log(`|---|---|---|---|---|---|---|---|---|`);
for (const k of perStep) {
  console.log(`| ${k.kernel} | ${k.launchesPerStep} | ${k.microsecondsPerStep.toFixed(1)} | ${((100 * k.microsecondsPerStep) / total).toFixed(1)} % | ${k.dramGBps.toFixed(0)} | ${k.dramReadMBPerStep.toFixed(1)} | ${k.l2MBPerStep.toFixed(1)} | ${k.issueActivePct.toFixed(0)} | ${k.threadInstructionsPerWeight?.toFixed(2) ?? ""} |`);
}
console.log(`total ${total.toFixed(1)} µs per step (kernels one at a time, as ncu runs them: no overlap, no launch gaps)`);
writeFileSync(outPath, JSON.stringify({ layout, steps, bytesPerWeight, totalMicrosecondsPerStep: total, kernels: perStep }, null, 2) + "\n");
