#!/usr/bin/env node
/**
 * Serving benchmark on the GPU: `df11 serve`'s server (in this process, over HTTP on 127.0.0.1) with
 * 1, 4, 16 and 64 concurrent streaming requests (prompt of --prompt-tokens ids, --new-tokens greedy
 * tokens each): aggregate tokens/s, time to first token, request latency; BF16 vs DF11 (each variant
 * in a process of its own), and the most concurrent requests / the longest context each fits on this GPU.
 *
 * The server runs as `df11 serve` does by default (steps of up to 2048 tokens, shared prefill, a 5 ms
 * gather window); each level
 * records how many prefill and decode steps it took. Each level runs --repeat waves (default 3) and reports
 * the median one.
 *
 *   node apps/bench/dist/gpu-serve.js --bf16 DIR --df11 DIR [--out FILE] [--solo-prefill] [--prefill-gather-ms MS] [--max-batch-tokens N] [--repeat N]
 */
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { loadModel, type Model } from "@df11/models";
import { CudaBackend, devices, memoryInfo, type GpuWeightsLayout } from "@df11/cuda-kernel";
import { serveModel } from "@df11/cli";
import { runChild, saveJson } from "./child.js";

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    bf16: { type: "string" },
    df11: { type: "string" },
    out: { type: "string", default: "bench-results/gpu-serve.json" },
    "prompt-tokens": { type: "string", default: "128" },
    "new-tokens": { type: "string", default: "128" },
    concurrency: { type: "string", default: "1,4,16,64" },
    // As `df11 serve --no-shared-prefill`: each prompt prefilled in a step of its own.
    "solo-prefill": { type: "boolean", default: false },
    // As `df11 serve --prefill-gather-ms` (its default: 5).
    "prefill-gather-ms": { type: "string", default: "5" },
    // As `df11 serve --max-batch-tokens` (its default: 2048): rows of one step.
    "max-batch-tokens": { type: "string", default: "2048" },
    // Waves per level; the median one is reported.
    repeat: { type: "string", default: "3" },
  },
});
const sharedPrefill = !args["solo-prefill"];
const prefillGatherMs = Number(args["prefill-gather-ms"]);
const repeat = Math.max(1, Number(args.repeat));
const maxRows = Number(args["max-batch-tokens"]);
const promptTokens = Number(args["prompt-tokens"]);
const newTokens = Number(args["new-tokens"]);
const levels = args.concurrency!.split(",").map(Number);
const log = (s: string) => console.error(s);
const median = (v: number[]) => [...v].sort((a, b) => a - b)[v.length >> 1];
const p95 = (v: number[]) => [...v].sort((a, b) => a - b)[Math.min(v.length - 1, Math.floor(v.length * 0.95))];

interface Level {
  readonly concurrency: number;
  readonly aggregateTokensPerSecond: number;
  readonly wallSeconds: number;
  readonly medianTimeToFirstTokenMs: number;
  readonly p95TimeToFirstTokenMs: number;
  readonly medianLatencyMs: number;
  readonly p95LatencyMs: number;
  readonly tokens: number;
  /** Scheduler steps the level took: prefill steps (prompts alone or sharing one) and decode steps. */
  readonly prefillSteps: number;
  readonly decodeSteps: number;
  /** Every wave's aggregate tokens/s (the level is the median wave). */
  readonly waveTokensPerSecond: number[];
}

/** One streaming completion; returns (first token ms, total ms, tokens). */
async function request(url: string, seed: number): Promise<{ ttft: number; total: number; tokens: number }> {
  const prompt = Array.from({ length: promptTokens }, (_, i) => (i * 7919 + seed * 104729 + 13) % 128000);
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "bench", prompt, max_tokens: newTokens, temperature: 0, stream: true, ignore_eos: true, stream_options: { include_usage: true } }),
  });
  if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  let ttft = 0;
  let tokens = 0;
  const decoder = new TextDecoder();
  for await (const part of res.body) {
    const text = decoder.decode(part as Uint8Array, { stream: true });
    if (!ttft && text.includes("data: {")) ttft = performance.now() - t0; // first token's event
    const usage = /"completion_tokens":(\d+)/.exec(text);
    if (usage) tokens = Number(usage[1]);
  }
  return { ttft, total: performance.now() - t0, tokens };
}

async function measureLevels(model: Model): Promise<Level[]> {
  const server = await serveModel(model, { port: 0, modelId: "bench" });
  try {
    await request(server.url, 999); // warm-up: graphs, allocations
    const out: Level[] = [];
    for (const c of levels) {
      // `repeat` waves of c requests; the level is the wave with the median aggregate throughput (one
      // wave is ~1 s and varies by ±10 % from run to run on the H200).
      const waves = [];
      for (let r = 0; r < repeat; r++) {
        const before = { ...model.scheduler.stats };
        const t0 = performance.now();
        const results = await Promise.all(Array.from({ length: c }, (_, i) => request(server.url, i)));
        const wall = (performance.now() - t0) / 1000;
        const stats = model.scheduler.stats;
        const tokens = results.reduce((s, q) => s + q.tokens, 0);
        waves.push({
          concurrency: c,
          aggregateTokensPerSecond: tokens / wall,
          wallSeconds: wall,
          medianTimeToFirstTokenMs: median(results.map((q) => q.ttft)),
          p95TimeToFirstTokenMs: p95(results.map((q) => q.ttft)),
          medianLatencyMs: median(results.map((q) => q.total)),
          p95LatencyMs: p95(results.map((q) => q.total)),
          tokens,
          prefillSteps: stats.prefillSteps - before.prefillSteps,
          decodeSteps: stats.steps - before.steps,
        });
      }
      const sorted = [...waves].sort((a, b) => a.aggregateTokensPerSecond - b.aggregateTokensPerSecond);
      const level = { ...sorted[sorted.length >> 1], waveTokensPerSecond: waves.map((w) => w.aggregateTokensPerSecond) };
      log(
        `  ${c} concurrent: ${level.aggregateTokensPerSecond.toFixed(0)} tok/s aggregate (median of ${repeat}: ${level.waveTokensPerSecond.map((v) => v.toFixed(0)).join(", ")}), TTFT median ${level.medianTimeToFirstTokenMs.toFixed(0)} ms, latency median ${level.medianLatencyMs.toFixed(0)} ms, ${level.prefillSteps} prefill + ${level.decodeSteps} decode steps`,
      );
      out.push(level);
    }
    return out;
  } finally {
    await server.close();
  }
}

/** The most sequences of `context` positions (and the longest single context) this GPU holds beside the weights. */
async function capacity(dir: string, gpuWeights: GpuWeightsLayout) {
  const probe = await CudaBackend.load(dir, { maxContext: 64, slots: 1, gpuWeights });
  const c = probe.config;
  const weights = probe.weights.residentBytes;
  probe.dispose();
  const free = memoryInfo().free;
  const perPosition = 2 * c.numLayers * c.numKvHeads * c.headDim * 2;
  const spare = free - weights - 1.5e9; // working memory, scratch, margin
  const context = 4096;
  const slots = Math.floor(spare / (perPosition * context));
  const longest = Math.floor(spare / perPosition);
  // Prove the claim: load with that many slots of `context` positions.
  let loaded = false;
  try {
    const b = await CudaBackend.load(dir, { maxContext: context, slots, maxRows: 64, gpuWeights });
    b.dispose();
    loaded = true;
  } catch (e) {
    log(`  ${slots} × ${context} did not load: ${(e as Error).message}`);
  }
  return { freeGpuBytesBeforeLoad: free, kvBytesPerPosition: perPosition, slotsOf4096Positions: slots, loadedWithThoseSlots: loaded, longestSingleContext: longest };
}

/** The BF16 checkpoint runs as BF16 (the baseline), the DF11 one in its default layout (fused). */
async function one(dir: string, gpuWeights: GpuWeightsLayout) {
  const model = await loadModel(dir, { device: "cuda", slots: Math.max(...levels), maxContext: promptTokens + newTokens + 8, gpuWeights, maxRows, sharedPrefill, prefillGatherMs });
  const weights = model.lm.weights;
  const result = { weights: weights.kind, layout: weights.layout, weightsBytes: weights.residentBytes, levels: await measureLevels(model) };
  model.dispose();
  return { ...result, capacity: await capacity(dir, gpuWeights) };
}

async function main() {
  if (positionals[0] === "one") return console.log(JSON.stringify(await one(positionals[1], positionals[2] as GpuWeightsLayout)));
  if (!args.bf16 || !args.df11) throw new Error("give --bf16 DIR and --df11 DIR");
  const self = fileURLToPath(import.meta.url);
  const child = (dir: string, label: string, layout: GpuWeightsLayout) => {
    log(`${label}:`);
    return runChild<Awaited<ReturnType<typeof one>>>(self, ["one", dir, layout, "--prompt-tokens", String(promptTokens), "--new-tokens", String(newTokens), "--concurrency", args.concurrency!, ...(sharedPrefill ? [] : ["--solo-prefill"]), "--prefill-gather-ms", String(prefillGatherMs), "--repeat", String(repeat), "--max-batch-tokens", String(maxRows)]);
  };
  const bf16 = child(args.bf16, "BF16", "bf16");
  const df11 = child(args.df11, "DF11", "auto");
  log(`\n| concurrent | BF16 tok/s | DF11 tok/s | DF11 / BF16 | BF16 TTFT / latency ms | DF11 TTFT / latency ms |`);
  log(`|---|---|---|---|---|---|`);
  bf16.levels.forEach((b: Level, i: number) => {
    const d: Level = df11.levels[i];
    log(`| ${b.concurrency} | ${b.aggregateTokensPerSecond.toFixed(0)} | ${d.aggregateTokensPerSecond.toFixed(0)} | ${((100 * d.aggregateTokensPerSecond) / b.aggregateTokensPerSecond).toFixed(0)} % | ${b.medianTimeToFirstTokenMs.toFixed(0)} / ${b.medianLatencyMs.toFixed(0)} | ${d.medianTimeToFirstTokenMs.toFixed(0)} / ${d.medianLatencyMs.toFixed(0)} |`);
  });
  log(`capacity at 4096 positions each: BF16 ${bf16.capacity.slotsOf4096Positions} sequences (loaded: ${bf16.capacity.loadedWithThoseSlots}), DF11 ${df11.capacity.slotsOf4096Positions} (loaded: ${df11.capacity.loadedWithThoseSlots}); longest single context: BF16 ${bf16.capacity.longestSingleContext}, DF11 ${df11.capacity.longestSingleContext} positions`);
  const result = { benchmark: "gpu-serve", date: new Date().toISOString(), device: devices()[0], model: "Llama-3.1-8B-shaped, synthetic weights", promptTokens, newTokens, maxBatchTokens: maxRows, sharedPrefill, prefillGatherMs, repeat, bf16, df11 };
  log(`saved ${saveJson(args.out!, result)}`);
}

main().catch((e: Error) => {
  console.error(`gpu-serve: ${e.stack ?? e.message}`);
  process.exit(1);
});
