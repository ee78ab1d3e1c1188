#!/usr/bin/env node
/**
 * Tensor-parallel generation benchmark: the 8B-shaped model on one GPU and split over several
 * (TensorParallelBackend, NCCL), BF16 and DF11 (fused layout), batch 1, a prompt of --prompt-tokens and
 * --new-tokens greedy tokens, each variant in a process of its own; the speed-up of the extra GPUs,
 * peak memory per GPU, and whether every variant generated the same tokens.
 *
 * Each run also reports the room left for the KV cache: free device memory after loading, per GPU, in
 * positions and in sequences of 4,096 positions (a run's own KV cache and working memory are already
 * allocated then). With --prove-capacity that room is then used: a load whose KV cache holds that many
 * sequences of 4,096 positions, every one of them run through a prefill and a decode step, one filled to
 * its 4,096th position; and a load whose one sequence holds the longest context (capped at the model's
 * max_position_embeddings) running a prompt and decode steps.
 *
 * With --df11-only --bf16-layout, the DF11 model also runs with BF16 weights on the GPUs (decoded once
 * at load: the same weights as its BF16 checkpoint, without needing that checkpoint's files): the BF16
 * engine on one GPU (an OutOfDeviceMemoryError, recorded, when its weights do not fit) and split over all.
 *
 *   node apps/bench/dist/tp-generate.js --bf16 DIR --df11 DIR [--devices 0,1] [--out tp-generate.json]
 *   node apps/bench/dist/tp-generate.js --df11 DIR --df11-only [--bf16-layout] [--prove-capacity]   # 70B
 */
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { sizeThreadPoolForReads } from "@df11/hub-loader";
import { CausalLM, type Backend } from "@df11/models";
import { CudaBackend, devices as cudaDevices, memoryInfo, OutOfDeviceMemoryError, resetPeakAllocation, TensorParallelBackend, withDevice, type GpuWeightsLayout } from "@df11/cuda-kernel";
import { benchOptions, runChild, saveJson } from "./child.js";

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    ...benchOptions({ out: "bench-results/tp-generate.json", promptTokens: 512, newTokens: 128 }),
    devices: { type: "string", default: "0,1" },
    layout: { type: "string", default: "fused" },
    "df11-only": { type: "boolean", default: false },
    "bf16-layout": { type: "boolean", default: false },
    "prove-capacity": { type: "boolean", default: false },
    model: { type: "string", default: "Llama-3.1-8B-shaped, synthetic weights (tools/make_bench_model.py)" },
  },
});
sizeThreadPoolForReads();
const promptTokens = Number(args["prompt-tokens"]);
const newTokens = Number(args["new-tokens"]);
const log = (s: string) => console.error(s);

interface Run {
  readonly label: string;
  readonly devices: number[];
  readonly weights: "bf16" | "df11";
  readonly layout: string;
  readonly engine: unknown;
  readonly loadSeconds: number;
  readonly prefillTokensPerSecond: number;
  readonly decodeTokensPerSecond: number;
  /** Device memory df11 held per GPU: weights in use, and the peak while generating. */
  readonly perGpu: Array<{ device: number; inUseBytes: number; peakBytes: number }>;
  readonly weightsBytes: number;
  /** KV-cache room after loading: the least free memory of the GPUs (less 0.5 GB), in positions of one sequence. */
  readonly capacity: { freeBytesPerGpu: number[]; kvBytesPerPositionPerGpu: number; positions: number; sequencesOf4096: number; maxPositionEmbeddings: number };
  readonly tokenIds: number[];
}

/** A run that could not load: what the engine said (an OutOfDeviceMemoryError's sizes when it was one). */
interface FailedRun {
  readonly label: string;
  readonly devices: number[];
  readonly layout: string;
  readonly error: { name: string; message: string; neededBytes?: number; freeBytes?: number };
}

/** The KV room of a run, used: both loads allocate their whole KV cache up front. */
interface CapacityProof {
  readonly label: string;
  readonly devices: number[];
  readonly sequencesOf4096: { sequences: number; ok: boolean; error?: string; seconds?: number; filledPositions?: number; peakBytesPerGpu?: number[]; refused?: { sequences: number; error: string } };
  readonly longestContext: { positions: number; roomPositions: number; maxPositionEmbeddings: number; ok: boolean; error?: string; seconds?: number; peakBytesPerGpu?: number[] };
}

const loadBackend = (dir: string, devices: number[], layout: GpuWeightsLayout, maxContext: number, slots: number) =>
  devices.length > 1 ? TensorParallelBackend.load(dir, { devices, maxContext, slots, gpuWeights: layout }) : CudaBackend.load(dir, { device: devices[0], maxContext, slots, gpuWeights: layout });

const peaks = (backend: { memory?(): { peakBytes: number; devices?: ReadonlyArray<{ peakBytes: number }> } }) => {
  const m = backend.memory!();
  return m.devices ? m.devices.map((d) => d.peakBytes) : [m.peakBytes];
};

/**
 * Use the room a measured run reported: `sequences` sequences of 4,096 positions (each given an 8-token
 * prompt and a decode step, sequence 0 then filled to 4,096 positions), then one sequence of `longest`
 * positions (a 512-token prompt and 4 decode steps). The KV cache is allocated whole at load, so a load
 * that succeeds holds that many positions next to the weights.
 */
async function proveCapacity(
  dir: string,
  label: string,
  devices: number[],
  layout: GpuWeightsLayout,
  sequences: number,
  room: number,
  maxPositionEmbeddings: number,
  kvBytesPerPositionPerGpu: number,
): Promise<CapacityProof> {
  const first = await holdSequences(dir, devices, layout, sequences);
  // The load's memory plan is conservative (it counts the fused layout's bytes before transcoding, a few GB
  // over on a 70B): when it refuses the count measured from free memory, the count it admits is used, and
  // both are reported.
  const over = first.shortfallBytes;
  const sequencesOf4096 =
    over !== undefined && over > 0
      ? { ...(await holdSequences(dir, devices, layout, sequences - Math.ceil(over / (4096 * kvBytesPerPositionPerGpu)))).result, refused: { sequences, error: first.result.error! } }
      : first.result;
  return { label, devices, sequencesOf4096, longestContext: await holdLongest(dir, devices, layout, room, maxPositionEmbeddings) };
}

const errorText = (e: unknown) => (e instanceof Error ? `${e.name}: ${e.message}` : String(e));

/**
 * Load with `sequences` × 4,096 positions of KV cache; each sequence a prefill and a decode step, sequence 0
 * filled to 4,096. shortfallBytes: by how much the load's memory plan found too little memory, when it refused.
 */
async function holdSequences(dir: string, devices: number[], layout: GpuWeightsLayout, sequences: number): Promise<{ result: CapacityProof["sequencesOf4096"]; shortfallBytes?: number }> {
  let result: CapacityProof["sequencesOf4096"];
  let shortfallBytes: number | undefined;
  const t = performance.now();
  try {
    const backend = await loadBackend(dir, devices, layout, 4096, sequences);
    try {
      using model = new CausalLM(backend.config, backend);
      const vocab = backend.config.vocabSize;
      const prompt = (slot: number, n: number) => Array.from({ length: n }, (_, i) => (slot * 131 + i * 7919 + 13) % vocab);
      const perStep = Math.max(1, Math.floor(backend.maxRows / 8));
      for (let first = 0; first < sequences; first += perStep) {
        const group = Array.from({ length: Math.min(perStep, sequences - first) }, (_, i) => ({ slot: first + i, tokens: prompt(first + i, 8) }));
        model.step(group);
      }
      for (let first = 0; first < sequences; first += backend.maxRows) {
        model.step(Array.from({ length: Math.min(backend.maxRows, sequences - first) }, (_, i) => ({ slot: first + i, tokens: [(first + i) % vocab] })));
      }
      model.forwardGreedy(prompt(0, 4096 - model.length(0)), 0);
      backend.synchronize();
      result = { sequences, ok: true, seconds: (performance.now() - t) / 1000, filledPositions: model.length(0), peakBytesPerGpu: peaks(backend) };
    } finally {
      backend.dispose();
    }
  } catch (e) {
    result = { sequences, ok: false, error: errorText(e) };
    if (e instanceof OutOfDeviceMemoryError && e.neededBytes !== undefined && e.freeBytes !== undefined) shortfallBytes = e.neededBytes - e.freeBytes;
  }
  return { result, shortfallBytes };
}

/** Load with one sequence of the longest context (room, capped at max_position_embeddings); a 512-token prompt and 4 decode steps. */
async function holdLongest(dir: string, devices: number[], layout: GpuWeightsLayout, room: number, maxPositionEmbeddings: number): Promise<CapacityProof["longestContext"]> {
  let longestContext: CapacityProof["longestContext"];
  const t = performance.now();
  const cap = Math.min(room, maxPositionEmbeddings);
  try {
    const backend = await loadBackend(dir, devices, layout, cap, 1);
    try {
      using model = new CausalLM(backend.config, backend);
      let id = model.forwardGreedy(Array.from({ length: 512 }, (_, i) => (i * 7919 + 13) % backend.config.vocabSize));
      for (let i = 0; i < 4; i++) id = model.forwardGreedy([id]);
      backend.synchronize();
      longestContext = { positions: cap, roomPositions: room, maxPositionEmbeddings, ok: true, seconds: (performance.now() - t) / 1000, peakBytesPerGpu: peaks(backend) };
    } finally {
      backend.dispose();
    }
  } catch (e) {
    longestContext = { positions: cap, roomPositions: room, maxPositionEmbeddings, ok: false, error: errorText(e) };
  }
  return longestContext;
}

async function measure(dir: string, label: string, devices: number[], layout: GpuWeightsLayout): Promise<Run> {
  const maxContext = promptTokens + newTokens + 8;
  let t = performance.now();
  const backend: Backend & { synchronize(): void; engineConfig: unknown } = await loadBackend(dir, devices, layout, maxContext, 1);
  const loadSeconds = (performance.now() - t) / 1000;
  const freeBytesPerGpu = devices.map((d) => withDevice(d, () => memoryInfo().free));
  const c = backend.config;
  // K and V, BF16, every layer; tensor parallelism splits the KV heads (or replicates them when fewer).
  const kvHeadsPerGpu = backend.shardConfig?.numKvHeads ?? c.numKvHeads;
  const kvBytesPerPositionPerGpu = 2 * c.numLayers * kvHeadsPerGpu * c.headDim * 2;
  const positions = Math.max(0, Math.floor((Math.min(...freeBytesPerGpu) - 0.5e9) / kvBytesPerPositionPerGpu));
  const capacity = { freeBytesPerGpu, kvBytesPerPositionPerGpu, positions, sequencesOf4096: Math.floor(positions / 4096), maxPositionEmbeddings: c.maxPositionEmbeddings };
  using model = new CausalLM(backend.config, backend);
  const prompt = Array.from({ length: promptTokens }, (_, i) => (i * 7919 + 13) % backend.config.vocabSize);
  // Warm-up: allocations, NCCL's first collectives, the one-token graphs.
  let id = model.forwardGreedy(prompt.slice(0, 32));
  for (let i = 0; i < 4; i++) id = model.forwardGreedy([id]);
  model.reset();
  backend.synchronize();
  for (const d of devices) resetPeakAllocation(d);
  t = performance.now();
  id = model.forwardGreedy(prompt);
  const prefillSeconds = (performance.now() - t) / 1000;
  const tokenIds = [id];
  t = performance.now();
  for (let i = 1; i < newTokens; i++) tokenIds.push((id = model.forwardGreedy([id])));
  const decodeSeconds = (performance.now() - t) / 1000;
  const memory = backend.memory!();
  return {
    label,
    devices,
    weights: backend.weights.kind,
    layout: backend.weights.layout ?? backend.weights.kind,
    engine: backend.engineConfig,
    loadSeconds,
    prefillTokensPerSecond: promptTokens / prefillSeconds,
    decodeTokensPerSecond: (newTokens - 1) / decodeSeconds,
    perGpu: memory.devices ? [...memory.devices] : [{ device: devices[0], inUseBytes: memory.inUseBytes, peakBytes: memory.peakBytes }],
    weightsBytes: backend.weights.residentBytes,
    capacity,
    tokenIds,
  };
}

async function main() {
  if (positionals[0] === "one") {
    const devices = positionals[3].split(",").map(Number);
    try {
      console.log(JSON.stringify(await measure(positionals[1], positionals[2], devices, args.layout as GpuWeightsLayout)));
    } catch (e) {
      // A load that does not fit is a result (the BF16 70B on one GPU), reported with the engine's sizes.
      if (!(e instanceof OutOfDeviceMemoryError)) throw e;
      const failed: FailedRun = { label: positionals[2], devices, layout: args.layout!, error: { name: e.name, message: e.message, neededBytes: e.neededBytes, freeBytes: e.freeBytes } };
      console.log(JSON.stringify(failed));
    }
    return;
  }
  if (positionals[0] === "capacity") {
    const devices = positionals[3].split(",").map(Number);
    const [sequences, room, maxPositions, kvBytesPerPosition] = positionals.slice(4, 8).map(Number);
    console.log(JSON.stringify(await proveCapacity(positionals[1], positionals[2], devices, args.layout as GpuWeightsLayout, sequences, room, maxPositions, kvBytesPerPosition)));
    return;
  }
  const df11Only = args["df11-only"];
  if (!args.df11 || (!args.bf16 && !df11Only)) throw new Error("give --bf16 DIR and --df11 DIR (or --df11 DIR --df11-only)");
  if (args["bf16-layout"] && !df11Only) throw new Error("--bf16-layout goes with --df11-only (with --bf16 DIR the BF16 checkpoint already runs as BF16)");
  const self = fileURLToPath(import.meta.url);
  const all = args.devices!.split(",").map(Number);
  const child = (dir: string, label: string, devices: number[], layout: string) => {
    log(`measuring ${label} on GPU ${devices.join(",")}…`);
    return runChild<Run | FailedRun>(self, ["one", dir, label, devices.join(","), "--layout", layout, "--prompt-tokens", String(promptTokens), "--new-tokens", String(newTokens)], { NCCL_NVLS_ENABLE: "0" });
  };
  const results: Array<Run | FailedRun> = [];
  const variants = [
    ...(df11Only ? [] : [[args.bf16!, "BF16 weights", "bf16"] as const]),
    [args.df11, "DF11, fused layout", "fused"] as const,
    ...(df11Only && args["bf16-layout"] ? [[args.df11, "BF16 weights (decoded from DF11 at load)", "bf16"] as const] : []),
  ];
  for (const [dir, name, layout] of variants) {
    results.push(child(dir, `${name}, 1 GPU`, [all[0]], layout));
    results.push(child(dir, `${name}, tensor parallel over ${all.length} GPUs`, all, layout));
  }
  const failed = results.filter((r): r is FailedRun => "error" in r);
  const runs = results.filter((r): r is Run => !("error" in r));
  for (const f of failed) log(`${f.label}: does not load — ${f.error.message}`);
  const proofs: CapacityProof[] = [];
  if (args["prove-capacity"]) {
    for (const r of runs.filter((x) => x.layout === "fused")) {
      log(`using the KV room of ${r.label}: ${r.capacity.sequencesOf4096} sequences of 4,096, then ${Math.min(r.capacity.positions, r.capacity.maxPositionEmbeddings).toLocaleString("en")} positions…`);
      const cap = r.capacity;
      proofs.push(runChild<CapacityProof>(self, ["capacity", args.df11, r.label, r.devices.join(","), String(cap.sequencesOf4096), String(cap.positions), String(cap.maxPositionEmbeddings), String(cap.kvBytesPerPositionPerGpu), "--layout", r.layout], { NCCL_NVLS_ENABLE: "0" }));
    }
  }
  const gb = (n: number) => (n / 1e9).toFixed(2);
  log("");
  log(`| run | prefill tok/s | decode tok/s | weights GB (all GPUs) | peak GB per GPU | free GB per GPU after load | KV room: positions (× 4,096) | load s |`);
  log(`|---|---|---|---|---|---|---|---|`);
  for (const r of runs) {
    const room = `${r.capacity.positions.toLocaleString("en")} (${r.capacity.sequencesOf4096})`;
    log(`| ${r.label} | ${r.prefillTokensPerSecond.toFixed(0)} | ${r.decodeTokensPerSecond.toFixed(1)} | ${gb(r.weightsBytes)} | ${r.perGpu.map((d) => gb(d.peakBytes)).join(" / ")} | ${r.capacity.freeBytesPerGpu.map(gb).join(" / ")} | ${room} | ${r.loadSeconds.toFixed(2)} |`);
  }
  const speedUp = (a: Run, b: Run) => ({ decode: b.decodeTokensPerSecond / a.decodeTokensPerSecond, prefill: b.prefillTokensPerSecond / a.prefillTokensPerSecond });
  const find = (layout: string, many: boolean) => runs.find((r) => r.layout === layout && (r.devices.length > 1) === many);
  const [df11One, df11Many] = [find("fused", false), find("fused", true)];
  const [bf16One, bf16Many] = df11Only ? [undefined, undefined] : [find("bf16", false), find("bf16", true)];
  // A run the comparisons need that did not load (an OutOfDeviceMemoryError is a result, not a crash):
  // keep what was measured, say which run is missing and why.
  if (!df11One || !df11Many || (!df11Only && (!bf16One || !bf16Many))) {
    const partial = { benchmark: "tp-generate", date: new Date().toISOString(), model: args.model, promptTokens, newTokens, runs: runs.map(({ tokenIds, ...r }) => r), failedRuns: failed };
    log(`saved ${saveJson(args.out!, partial)} (incomplete)`);
    throw new Error(`the speed-ups need DF11 (fused)${df11Only ? "" : " and BF16"} on one GPU and on ${all.length}; runs that did not load: ${failed.map((f) => `${f.label} (${f.error.message})`).join("; ") || "none"}`);
  }
  const speedUps = { ...(bf16One ? { bf16: speedUp(bf16One, bf16Many!) } : {}), df11: speedUp(df11One, df11Many) };
  log(`speed-up of ${all.length} GPUs: ${speedUps.bf16 ? `BF16 decode ×${speedUps.bf16.decode.toFixed(2)}, prefill ×${speedUps.bf16.prefill.toFixed(2)}; ` : ""}DF11 decode ×${speedUps.df11.decode.toFixed(2)}, prefill ×${speedUps.df11.prefill.toFixed(2)}`);
  // One GPU and several split the sums differently (rounding), so greedy paths may part after a while;
  // DF11 must equal BF16 on the same GPUs exactly.
  const agree = (a: number[], b: number[]) => (a.findIndex((v, i) => v !== b[i]) + 1 || a.length + 1) - 1;
  const tokens = {
    ...(bf16One ? { df11EqualsBf16OneGpu: agree(bf16One.tokenIds, df11One.tokenIds), df11EqualsBf16Parallel: agree(bf16Many!.tokenIds, df11Many.tokenIds) } : {}),
    parallelEqualsOneGpu: agree(df11One.tokenIds, df11Many.tokenIds),
  };
  const bf16LayoutMany = df11Only ? find("bf16", true) : undefined;
  const layoutAgreement = bf16LayoutMany ? { df11EqualsBf16LayoutParallel: agree(bf16LayoutMany.tokenIds, df11Many.tokenIds) } : {};
  if (bf16LayoutMany) log(`tokens equal (of ${newTokens}): DF11 fused = BF16 weights on ${all.length} GPUs ${layoutAgreement.df11EqualsBf16LayoutParallel}`);
  for (const p of proofs) {
    const s4 = p.sequencesOf4096;
    const lc = p.longestContext;
    if (s4.refused) log(`${p.label}: ${s4.refused.sequences} sequences of 4,096 positions (the room measured) refused by the load's memory plan: ${s4.refused.error}`);
    log(`${p.label}: ${s4.sequences} sequences of 4,096 positions ${s4.ok ? `held and run (sequence 0 filled to ${s4.filledPositions}; peak ${s4.peakBytesPerGpu!.map(gb).join(" / ")} GB per GPU; ${s4.seconds!.toFixed(1)} s)` : `FAILED: ${s4.error}`}`);
    log(`${p.label}: one sequence of ${lc.positions.toLocaleString("en")} positions (room ${lc.roomPositions.toLocaleString("en")}, model max ${lc.maxPositionEmbeddings.toLocaleString("en")}) ${lc.ok ? `held and run (peak ${lc.peakBytesPerGpu!.map(gb).join(" / ")} GB per GPU)` : `FAILED: ${lc.error}`}`);
  }
  log(`tokens equal (of ${newTokens}): ${bf16One ? `DF11 = BF16 on one GPU ${tokens.df11EqualsBf16OneGpu}, on ${all.length} GPUs ${tokens.df11EqualsBf16Parallel}; ` : ""}${all.length} GPUs = one GPU ${tokens.parallelEqualsOneGpu}`);
  const result = {
    benchmark: "tp-generate",
    date: new Date().toISOString(),
    device: cudaDevices()[all[0]],
    gpus: all.length,
    model: args.model,
    batch: 1,
    promptTokens,
    newTokens,
    speedUps,
    tokens: { ...tokens, ...layoutAgreement },
    runs: runs.map(({ tokenIds, ...r }) => r),
    ...(failed.length ? { failedRuns: failed } : {}),
    ...(proofs.length ? { capacityProofs: proofs } : {}),
  };
  log(`saved ${saveJson(args.out!, result)}`);
  if (bf16One && (tokens.df11EqualsBf16OneGpu !== newTokens || tokens.df11EqualsBf16Parallel !== newTokens)) process.exitCode = 1;
  if (bf16LayoutMany && layoutAgreement.df11EqualsBf16LayoutParallel !== newTokens) process.exitCode = 1;
  if (proofs.some((p) => !p.sequencesOf4096.ok || !p.longestContext.ok)) process.exitCode = 1;
}

main().catch((e: Error) => {
  console.error(`tp-generate: ${e.stack ?? e.message}`);
  process.exit(1);
});
