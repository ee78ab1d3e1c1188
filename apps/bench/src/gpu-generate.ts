#!/usr/bin/env node
/**
 * GPU generation benchmark: batch 1, a prompt of --prompt-tokens, --new-tokens greedy tokens, on our
 * engine from BF16 and from DF11 (each variant in a process of its own), with transformers' numbers
 * (tools/transformers_bench.py, same GPU, same run) merged in as the reference point.
 *
 *   node apps/bench/dist/gpu-generate.js --bf16 DIR --df11 DIR [--reference transformers.json] [--chunks 8,16,64]
 */
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { CausalLM } from "@df11/models";
import { CudaBackend, devices, memoryInfo, nativeAddon, type OpTime } from "@df11/cuda-kernel";
import { runChild, saveJson } from "./child.js";

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    bf16: { type: "string" },
    df11: { type: "string" },
    reference: { type: "string" },
    out: { type: "string", default: "bench-results/gpu-generate.json" },
    "prompt-tokens": { type: "string", default: "512" },
    "new-tokens": { type: "string", default: "256" },
    chunks: { type: "string", default: "" },
    chunk: { type: "string" },
    profile: { type: "boolean", default: false },
    "gemv-variants": { type: "boolean", default: false },
    variant: { type: "string" },
  },
});
const promptTokens = Number(args["prompt-tokens"]);
const newTokens = Number(args["new-tokens"]);
const log = (s: string) => console.error(s);

/** One variant's numbers. */
interface Run {
  readonly label: string;
  readonly weights: "bf16" | "df11";
  readonly decodeChunkElements?: number;
  readonly loadSeconds: number;
  readonly prefillTokensPerSecond: number;
  readonly decodeTokensPerSecond: number;
  readonly decodeMsPerToken: number;
  readonly gpuMsPerToken: number;
  readonly hostOverheadMsPerToken: number;
  /** Host time per token by phase: inputs upload call, graph launch call, wait + copy of the token. */
  readonly hostMsPerToken: { setStep: number; launch: number; readBack: number };
  readonly peakGpuBytes: number;
  readonly weightsBytes: number;
  readonly kvCacheBytes: number;
  readonly tokenIds: number[];
}

async function measure(dir: string, label: string, chunk?: number): Promise<Run> {
  memoryInfo(); // context first, so it is not counted
  const before = memoryInfo().free;
  let minFree = before;
  const sample = () => (minFree = Math.min(minFree, memoryInfo().free));
  const maxContext = promptTokens + newTokens + 32; // room for the GPU-time probe after the run
  let t = performance.now();
  const backend = await CudaBackend.load(dir, { maxContext, decodeChunkElements: chunk });
  const loadSeconds = (performance.now() - t) / 1000;
  using model = new CausalLM(backend.config, backend);
  sample();
  const vocab = backend.config.vocabSize;
  const prompt = Array.from({ length: promptTokens }, (_, i) => (i * 7919 + 13) % vocab);
  // Warm-up: the first steps allocate, the second one-token step records the CUDA graph.
  let id = model.forwardGreedy(prompt.slice(0, 32));
  for (let i = 0; i < 4; i++) id = model.forwardGreedy([id]);
  model.reset();
  backend.synchronize();
  sample();

  t = performance.now();
  id = model.forwardGreedy(prompt);
  const prefillSeconds = (performance.now() - t) / 1000;
  const tokenIds = [id];
  const host = backend.hostTimes;
  Object.assign(host, { steps: 0, setStep: 0, launch: 0, readBack: 0 });
  t = performance.now();
  for (let i = 1; i < newTokens; i++) tokenIds.push((id = model.forwardGreedy([id])));
  const decodeSeconds = (performance.now() - t) / 1000;
  const hostMsPerToken = { setStep: host.setStep / host.steps, launch: host.launch / host.steps, readBack: host.readBack / host.steps };
  sample();
  // GPU time of one replayed step (events around it) at the end of the run's context, to separate the
  // host's share of a token (an upper bound of the run's average: attention grows with the context).
  const gpuMs: number[] = [];
  for (let i = 0; i < 20; i++) gpuMs.push(backend.gpuMilliseconds(() => model.step([{ slot: 0, tokens: [tokenIds[i]] }])));
  gpuMs.sort((a, b) => a - b);
  const decodeMsPerToken = (decodeSeconds * 1000) / (newTokens - 1);
  const gpuMsPerToken = gpuMs[gpuMs.length >> 1];
  const c = backend.config;
  return {
    label,
    weights: backend.weights.kind,
    decodeChunkElements: backend.weights.kind === "df11" ? (chunk ?? 16 * 1024 * 1024) : undefined,
    loadSeconds,
    prefillTokensPerSecond: promptTokens / prefillSeconds,
    decodeTokensPerSecond: (newTokens - 1) / decodeSeconds,
    decodeMsPerToken,
    gpuMsPerToken,
    hostOverheadMsPerToken: decodeMsPerToken - gpuMsPerToken,
    hostMsPerToken,
    peakGpuBytes: before - minFree,
    weightsBytes: backend.weights.residentBytes,
    kvCacheBytes: 2 * c.numLayers * c.numKvHeads * maxContext * c.headDim * 2,
    tokenIds,
  };
}

/** Per-op GPU times (serialised): the prompt's prefill, and one-token steps averaged per token. */
async function profile(dir: string, chunk?: number): Promise<{ prefill: OpTime[]; decodePerToken: OpTime[] }> {
  const backend = await CudaBackend.load(dir, { maxContext: promptTokens + 64, decodeChunkElements: chunk, profile: true });
  using model = new CausalLM(backend.config, backend);
  const prompt = Array.from({ length: promptTokens }, (_, i) => (i * 7919 + 13) % backend.config.vocabSize);
  model.forwardGreedy(prompt.slice(0, 16)); // one-time host work (row spans of the embedding) out of the profile
  model.reset();
  backend.profile!.reset();
  let id = model.forwardGreedy(prompt);
  const prefill = backend.profile!.results();
  backend.profile!.reset();
  const steps = 32;
  for (let i = 0; i < steps; i++) id = model.forwardGreedy([id]);
  const decodePerToken = backend.profile!.results().map((t) => ({ ...t, calls: t.calls / steps, milliseconds: t.milliseconds / steps }));
  return { prefill, decodePerToken };
}

async function main() {
  if (positionals[0] === "profile") {
    console.log(JSON.stringify(await profile(positionals[1], args.chunk ? Number(args.chunk) : undefined)));
    return;
  }
  if (positionals[0] === "one") {
    if (args.variant) nativeAddon().setGemvVariant(args.variant === "no-allocate");
    const run = await measure(positionals[1], positionals[2], args.chunk ? Number(args.chunk) : undefined);
    console.log(JSON.stringify(run));
    return;
  }
  if (!args.bf16 || !args.df11) throw new Error("give --bf16 DIR and --df11 DIR");
  const self = fileURLToPath(import.meta.url);
  const child = (dir: string, label: string, chunk?: number, mode = "one", variant?: string) => {
    log(`${mode === "one" ? "measuring" : "profiling"} ${label}…`);
    const extra = [...(chunk ? ["--chunk", String(chunk)] : []), ...(variant ? ["--variant", variant] : [])];
    return runChild<Run | { prefill: OpTime[]; decodePerToken: OpTime[] }>(self, [mode, dir, label, "--prompt-tokens", String(promptTokens), "--new-tokens", String(newTokens), ...extra]);
  };
  const runs = [child(args.bf16, "df11 engine, BF16 weights"), child(args.df11, "df11 engine, DF11 weights")] as Run[];
  for (const c of args.chunks!.split(",").filter(Boolean)) runs.push(child(args.df11, `df11 engine, DF11 weights, decode window ${c} Mi elements`, Number(c) * 1024 * 1024) as Run);
  if (args["gemv-variants"]) {
    for (const [v, name] of [["allocate", "weights through L1"]]) {
      runs.push(child(args.bf16, `df11 engine, BF16 weights, GEMV ${name}`, undefined, "one", v) as Run);
    }
  }
  const profiles = args.profile
    ? { bf16: child(args.bf16, "BF16", undefined, "profile") as { prefill: OpTime[]; decodePerToken: OpTime[] }, df11: child(args.df11, "DF11", undefined, "profile") as { prefill: OpTime[]; decodePerToken: OpTime[] } }
    : undefined;
  const reference = args.reference && existsSync(args.reference) ? JSON.parse(readFileSync(args.reference, "utf8")) : undefined;
  const same = (a: number[], b: number[]) => a.findIndex((v, i) => v !== b[i]);
  const identical = same(runs[0].tokenIds, runs[1].tokenIds) === -1;
  const agreeWithTransformers = reference ? (same(runs[0].tokenIds, reference.tokenIds) + 1 || newTokens + 1) - 1 : undefined;
  const gb = (n: number) => (n / 1e9).toFixed(2);
  log("");
  log(`| engine | prefill tok/s | decode tok/s | ms/token (GPU + host) | weights GB | peak GPU GB |`);
  log(`|---|---|---|---|---|---|`);
  if (reference) log(`| ${reference.engine} | ${reference.prefillTokensPerSecond.toFixed(0)} | ${reference.decodeTokensPerSecond.toFixed(1)} | ${(1000 / reference.decodeTokensPerSecond).toFixed(2)} | ${gb(reference.weightsBytes)} | ${gb(reference.peakGpuBytes)} |`);
  for (const r of runs) {
    log(`| ${r.label} | ${r.prefillTokensPerSecond.toFixed(0)} | ${r.decodeTokensPerSecond.toFixed(1)} | ${r.decodeMsPerToken.toFixed(2)} (${r.gpuMsPerToken.toFixed(2)} + ${r.hostOverheadMsPerToken.toFixed(3)}) | ${gb(r.weightsBytes)} | ${gb(r.peakGpuBytes)} |`);
  }
  for (const r of runs) log(`${r.label}: host ms/token: inputs ${r.hostMsPerToken.setStep.toFixed(3)}, graph launch ${r.hostMsPerToken.launch.toFixed(3)}, wait + read back ${r.hostMsPerToken.readBack.toFixed(3)}`);
  if (profiles) {
    for (const [name, p] of Object.entries(profiles)) {
      log(`\n${name}: GPU ms per op (serialised), prefill of ${promptTokens} | one decode step`);
      const ops = new Set([...p.prefill.map((o) => o.op), ...p.decodePerToken.map((o) => o.op)]);
      for (const op of ops) {
        const a = p.prefill.find((o) => o.op === op);
        const b = p.decodePerToken.find((o) => o.op === op);
        log(`  ${op.padEnd(22)} ${(a?.milliseconds ?? 0).toFixed(2).padStart(9)} | ${(b?.milliseconds ?? 0).toFixed(3).padStart(8)}`);
      }
    }
  }
  log(`BF16 and DF11 tokens identical: ${identical}${reference ? `; first ${agreeWithTransformers} tokens equal transformers' (BF16 arithmetic differs, so greedy paths may part)` : ""}`);
  const result = {
    benchmark: "gpu-generate",
    date: new Date().toISOString(),
    device: devices()[0],
    model: "Llama-3.1-8B-shaped, synthetic weights (tools/make_bench_model.py)",
    batch: 1,
    promptTokens,
    newTokens,
    tokensIdentical: identical,
    tokensEqualToTransformers: agreeWithTransformers,
    reference: reference ? { ...reference, tokenIds: undefined } : undefined,
    runs: runs.map(({ tokenIds, ...r }) => r),
    profiles,
  };
  log(`saved ${saveJson(args.out!, result)}`);
  if (!identical) process.exitCode = 1;
}

main().catch((e: Error) => {
  console.error(`gpu-generate: ${e.stack ?? e.message}`);
  process.exit(1);
});
