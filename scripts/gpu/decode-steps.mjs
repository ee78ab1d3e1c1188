// On the GPU host: decode steps of R sequences at once (a serving batch) on a model, BF16 layout vs the
// fused layout, as the serving scheduler runs them (model.step + argmax; CUDA-graph replays up to 16
// rows). Per row count: wall ms per step (host clock, readback included), GPU ms per step (CUDA events
// around the step), host ms per step spent launching/reading back; then, with PROFILE_ROWS (default 16),
// each op's serialised GPU time per step (the backend's profile mode: no graphs, a sync after each op).
// Prints a table and writes JSON to OUT (default decode-steps.json).
//   node scripts/gpu/decode-steps.mjs MODEL_DIR [ROWS=1,4,8,16,32,64] [STEPS=40] [OUT]
import { writeFileSync } from "node:fs";
import { CausalLM } from "../../packages/models/dist/index.js";
import { CudaBackend, CudaEvent } from "../../packages/cuda-kernel/dist/index.js";

const [dir, rowsArg = "1,4,8,16,32,64", stepsArg = "40", out = "decode-steps.json"] = process.argv.slice(2);
if (!dir) throw new Error("usage: decode-steps.mjs MODEL_DIR [ROWS] [STEPS] [OUT]");
const rowCounts = rowsArg.split(",").map(Number);
const steps = Number(stepsArg);
const profileRows = Number(process.env.PROFILE_ROWS ?? 16); // 0: no per-op profile
const maxRows = Math.max(...rowCounts, profileRows);
const prompt = 128;

async function open(layout, profile) {
  const backend = await CudaBackend.load(dir, { maxContext: prompt + rowCounts.length * (2 * steps + 8) + 32, slots: maxRows, gpuWeights: layout, profile });
  const model = new CausalLM(backend.config, backend);
  const vocab = backend.config.vocabSize;
  const ids = [];
  for (let s = 0; s < maxRows; s++) ids.push(model.forwardGreedy(Array.from({ length: prompt }, (_, i) => (i * 7919 + 13 * s + 1) % vocab), s));
  return { backend, model, ids };
}

// One decode step's input: sequences 0 … r − 1 (slot = sequence), each with its last token.
const stepInput = (m, r) => m.ids.slice(0, r).map((id, slot) => ({ slot, tokens: [id] }));
const step = (m, r) => {
  const next = m.backend.argmax(m.model.step(stepInput(m, r)));
  for (let s = 0; s < r; s++) m.ids[s] = next[s];
};

const results = {};
for (const layout of ["bf16", "fused"]) {
  const m = await open(layout, false);
  const start = new CudaEvent();
  const end = new CudaEvent();
  const levels = [];
  for (const r of rowCounts) {
    for (let i = 0; i < 4; i++) step(m, r); // warm-up, graph recorded
    const h0 = { ...m.backend.hostTimes };
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < steps; i++) step(m, r);
    const wallMs = Number(process.hrtime.bigint() - t0) / 1e6 / steps;
    const h = m.backend.hostTimes;
    const host = { setStep: (h.setStep - h0.setStep) / steps, launch: (h.launch - h0.launch) / steps, readBack: (h.readBack - h0.readBack) / steps };
    // GPU time: the same steps queued back to back (no readback between them; the tokens are not advanced).
    const seqs = stepInput(m, r);
    start.record(m.backend.computeStream);
    for (let i = 0; i < steps; i++) m.model.step(seqs);
    end.record(m.backend.computeStream);
    end.synchronize();
    const gpuMs = end.elapsedSince(start);
    levels.push({ rows: r, wallMsPerStep: wallMs, gpuMsPerStep: gpuMs / steps, host });
    console.error(`${layout} ${r} rows: ${wallMs.toFixed(3)} ms/step wall, ${(gpuMs / steps).toFixed(3)} GPU`);
  }
  start.dispose();
  end.dispose();
  m.model.dispose();
  let ops = [];
  if (profileRows > 0) {
    const p = await open(layout, true);
    for (let i = 0; i < 2; i++) step(p, profileRows);
    p.backend.profile.reset();
    const profiled = 8;
    for (let i = 0; i < profiled; i++) step(p, profileRows);
    ops = p.backend.profile.results().map((t) => ({ op: t.op, calls: t.calls / profiled, ms: t.milliseconds / profiled }));
    p.model.dispose();
  }
  results[layout] = { levels, profileRows, opsPerStep: ops };
}

console.log(`| rows | BF16 wall ms/step | BF16 GPU | fused wall ms/step | fused GPU | BF16/fused time |`);
console.log(`|---|---|---|---|---|---|`);
rowCounts.forEach((r, i) => {
  const b = results.bf16.levels[i], f = results.fused.levels[i];
  console.log(`| ${r} | ${b.wallMsPerStep.toFixed(3)} | ${b.gpuMsPerStep.toFixed(3)} | ${f.wallMsPerStep.toFixed(3)} | ${f.gpuMsPerStep.toFixed(3)} | ${(b.wallMsPerStep / f.wallMsPerStep).toFixed(3)} |`);
});
if (profileRows > 0) console.log(`\nops per step at ${profileRows} rows (serialised, profile mode):\n| op | BF16 calls | BF16 ms | fused calls | fused ms |\n|---|---|---|---|---|`);
const names = [...new Set([...results.bf16.opsPerStep, ...results.fused.opsPerStep].map((o) => o.op))];
for (const n of names) {
  const b = results.bf16.opsPerStep.find((o) => o.op === n), f = results.fused.opsPerStep.find((o) => o.op === n);
  console.log(`| ${n} | ${b?.calls ?? ""} | ${b ? b.ms.toFixed(3) : ""} | ${f?.calls ?? ""} | ${f ? f.ms.toFixed(3) : ""} |`);
}
writeFileSync(out, JSON.stringify({ benchmark: "decode-steps", date: new Date().toISOString(), model: dir, steps, promptTokens: prompt, ...results }, null, 1));
console.log(`saved ${out}`);
