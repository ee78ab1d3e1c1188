// On the GPU host: decode steps of R sequences at once (a serving batch) on a model, BF16 layout vs the
// fused layout, as the serving scheduler runs them (model.step + argmax; CUDA-graph replays up to 16
// rows). Per row count: wall ms per step (host clock, readback included), GPU ms per step (CUDA events
// around the step), host ms per step spent launching/reading back; then, with PROFILE_ROWS (default 16),
// each op's serialised GPU time per step (the backend's profile mode: no graphs, a sync after each op).
// Also, per layout, how many sequences of CAPACITY_CONTEXT (default 4,096) positions the GPU holds beside
// the weights: the load's memory plan (CudaBackend.planMemory, with what is free before anything is
// loaded), then a load with that many slots to prove it (by default with POSITION only; CAPACITY=1 or 0
// forces it on or off).
// POSITION (default 128): each sequence is first prefilled with a prompt of POSITION tokens (in steps of
// at most maxRows rows), and the timed steps run at that depth. With POSITION set, every row count's steps
// start at POSITION (the sequences are rewound to it: the KV cache past it is overwritten, as a new token
// at that position would), and the GPU-timed steps at the same positions as the wall-timed ones; without
// it, as before, the sequences keep growing from one row count to the next (each level records the
// positions its first timed step ran at).
// Prints a table and writes JSON to OUT (default decode-steps.json).
//   [POSITION=4000] node scripts/gpu/decode-steps.mjs MODEL_DIR [ROWS=1,4,8,16,32,64] [STEPS=40] [OUT]
import { writeFileSync } from "node:fs";
import { CausalLM } from "../../packages/models/dist/index.js";
import { CudaBackend, CudaEvent, memoryInfo, OutOfDeviceMemoryError } from "../../packages/cuda-kernel/dist/index.js";

const [dir, rowsArg = "1,4,8,16,32,64", stepsArg = "40", out = "decode-steps.json"] = process.argv.slice(2);
if (!dir) throw new Error("usage: [POSITION=N] decode-steps.mjs MODEL_DIR [ROWS] [STEPS] [OUT]");
const rowCounts = rowsArg.split(",").map(Number);
const steps = Number(stepsArg);
const profileRows = Number(process.env.PROFILE_ROWS ?? 16); // 0: no per-op profile
const maxRows = Math.max(...rowCounts, profileRows);
const rewind = process.env.POSITION !== undefined && process.env.POSITION !== "";
const prompt = rewind ? Number(process.env.POSITION) : 128;
if (!Number.isInteger(prompt) || prompt < 1) throw new Error(`POSITION must be a positive integer, got ${process.env.POSITION}`);
const capacityContext = Number(process.env.CAPACITY_CONTEXT ?? 4096);
const WARMUP = 4;
// Positions each sequence may reach: rewound, one row count's warm-up and wall-timed steps (the GPU-timed
// ones rewind to the wall-timed ones' first position); else every row count's steps one after another.
const maxContext = rewind ? prompt + WARMUP + steps + 32 : prompt + rowCounts.length * (2 * steps + 8) + 32;

async function open(layout, profile, sequences) {
  const backend = await CudaBackend.load(dir, { maxContext, slots: maxRows, gpuWeights: layout, profile });
  const model = new CausalLM(backend.config, backend);
  const vocab = backend.config.vocabSize;
  const ids = [];
  const t0 = performance.now();
  for (let s = 0; s < sequences; s++) ids.push(model.forwardGreedy(Array.from({ length: prompt }, (_, i) => (i * 7919 + 13 * s + 1) % vocab), s));
  console.error(`${layout}${profile ? " (profile mode)" : ""}: ${sequences} sequences prefilled to position ${prompt} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return { backend, model, ids };
}

// One decode step's input: sequences 0 … r − 1 (slot = sequence), each with its last token.
const stepInput = (m, r) => m.ids.slice(0, r).map((id, slot) => ({ slot, tokens: [id] }));
const step = (m, r) => {
  const next = m.backend.argmax(m.model.step(stepInput(m, r)));
  for (let s = 0; s < r; s++) m.ids[s] = next[s];
};
/**
 * Sequences 0 … r − 1 forget their positions from `position` on (CausalLM.truncate): the next step writes
 * its token there and attends over `position` + 1 keys.
 */
const rewindTo = (m, r, position) => {
  for (let s = 0; s < r; s++) m.model.truncate(s, position);
};
const positionsOf = (m, r) => {
  const p = Array.from({ length: r }, (_, s) => m.model.length(s));
  return { min: Math.min(...p), max: Math.max(...p) };
};

/**
 * How many sequences of `context` positions the GPU holds beside the weights in `layout`: the most slots the
 * load's memory plan accepts (with what is free now), then a load with that many to prove it.
 */
async function capacity(layout, context) {
  const free = memoryInfo().free;
  const plan = (slots) => CudaBackend.planMemory(dir, { gpuWeights: layout, slots, maxContext: context });
  const fits = async (slots) => {
    try {
      await plan(slots);
      return true;
    } catch (e) {
      if (e instanceof OutOfDeviceMemoryError) return false;
      throw e;
    }
  };
  const base = { context, layout, freeBytesBeforeLoad: free };
  if (!(await fits(1))) return { ...base, sequences: 0, loaded: false };
  let lo = 1;
  let hi = 2;
  while (await fits(hi)) {
    if (hi >= 1 << 20) throw new Error(`the memory plan accepts ${hi} sequences of ${context} positions: it cannot be refusing any`);
    [lo, hi] = [hi, hi * 2];
  }
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (await fits(mid)) lo = mid;
    else hi = mid;
  }
  const p = await plan(lo);
  let loaded = false;
  let loadError;
  try {
    const b = await CudaBackend.load(dir, { gpuWeights: layout, slots: lo, maxContext: context });
    b.dispose();
    loaded = true;
  } catch (e) {
    loadError = e.message;
  }
  const result = { ...base, sequences: lo, weightBytes: p.weightBytes, kvBytes: p.kvBytes, kvBytesPerSequence: p.kvBytes / lo, workingBytes: p.workingBytes, deviceBytes: p.deviceBytes, loaded, ...(loadError ? { loadError } : {}) };
  console.error(`${layout}: ${lo} sequences of ${context} positions fit (memory plan: weights ${(p.weightBytes / 1e9).toFixed(2)} GB, KV ${(p.kvBytes / 1e9).toFixed(2)} GB, of ${(free / 1e9).toFixed(2)} GB free); loaded with them: ${loaded}${loadError ? ` (${loadError})` : ""}`);
  return result;
}

const capacities = {};
// By default only with POSITION (the long-context run), where the question belongs; CAPACITY=1 / 0 forces it.
const wantCapacity = process.env.CAPACITY ? process.env.CAPACITY !== "0" : rewind;
if (wantCapacity) for (const layout of ["bf16", "fused"]) capacities[layout] = await capacity(layout, capacityContext);

const results = {};
for (const layout of ["bf16", "fused"]) {
  const m = await open(layout, false, maxRows);
  const start = new CudaEvent();
  const end = new CudaEvent();
  const levels = [];
  for (const r of rowCounts) {
    if (rewind) rewindTo(m, r, prompt);
    for (let i = 0; i < WARMUP; i++) step(m, r); // warm-up, graph recorded
    const positions = positionsOf(m, r); // where the first timed step writes its tokens
    const h0 = { ...m.backend.hostTimes };
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < steps; i++) step(m, r);
    const wallMs = Number(process.hrtime.bigint() - t0) / 1e6 / steps;
    const h = m.backend.hostTimes;
    const host = { setStep: (h.setStep - h0.setStep) / steps, launch: (h.launch - h0.launch) / steps, readBack: (h.readBack - h0.readBack) / steps };
    // GPU time: the same steps queued back to back (no readback between them; the tokens are not advanced).
    const seqs = stepInput(m, r);
    if (rewind) rewindTo(m, r, positions.min);
    start.record(m.backend.computeStream);
    for (let i = 0; i < steps; i++) m.model.step(seqs);
    end.record(m.backend.computeStream);
    end.synchronize();
    const gpuMs = end.elapsedSince(start);
    levels.push({ rows: r, firstPositions: positions, wallMsPerStep: wallMs, gpuMsPerStep: gpuMs / steps, host });
    console.error(`${layout} ${r} rows at position ${positions.min === positions.max ? positions.min : `${positions.min}…${positions.max}`}: ${wallMs.toFixed(3)} ms/step wall, ${(gpuMs / steps).toFixed(3)} GPU`);
  }
  start.dispose();
  end.dispose();
  m.model.dispose();
  let ops = [];
  if (profileRows > 0) {
    const p = await open(layout, true, profileRows);
    for (let i = 0; i < 2; i++) step(p, profileRows);
    p.backend.profile.reset();
    const profiled = 8;
    for (let i = 0; i < profiled; i++) step(p, profileRows);
    ops = p.backend.profile.results().map((t) => ({ op: t.op, calls: t.calls / profiled, ms: t.milliseconds / profiled }));
    p.model.dispose();
  }
  results[layout] = { levels, profileRows, opsPerStep: ops };
}

console.log(`decode steps at position ${prompt}${rewind ? "" : " and on (the sequences grow from one row count to the next)"}, ${steps} steps per row count`);
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
if (capacities.bf16) {
  const c = capacities;
  console.log(`\nsequences of ${capacityContext} positions that fit (memory plan; loaded with them): BF16 ${c.bf16.sequences} (${c.bf16.loaded}), DF11 fused ${c.fused.sequences} (${c.fused.loaded})`);
}
writeFileSync(
  out,
  JSON.stringify({ benchmark: "decode-steps", date: new Date().toISOString(), model: dir, steps, promptTokens: prompt, position: prompt, rewound: rewind, maxContext, slots: maxRows, capacity: capacities.bf16 ? { context: capacityContext, ...capacities } : null, ...results }, null, 1),
);
console.log(`saved ${out}`);
