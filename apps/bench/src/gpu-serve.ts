#!/usr/bin/env node
/**
 * Serving benchmark on the GPU: `df11 serve`'s server (in this process, over HTTP on 127.0.0.1) with
 * 1, 4, 16 and 64 concurrent streaming requests (prompt of --prompt-tokens ids, --new-tokens greedy
 * tokens each): aggregate tokens/s, time to first token, request latency; BF16 vs DF11 (each variant
 * in a process of its own), and the most concurrent requests / the longest context each fits on this GPU.
 * The requests come from a load generator in a Node process of its own (`serve-client.ts`), as a real
 * app's would; `--client same-process` runs it in the server's process, as this benchmark did before
 * (its stream parsing then waits on the server's event loop, which each GPU step holds).
 *
 * The server runs as `df11 serve` does by default (steps of up to 2048 tokens, shared prefill, a 5 ms
 * gather window); each level
 * records how many prefill and decode steps it took. Each level runs --repeat waves (default 3) and reports
 * the median one.
 *
 *   node apps/bench/dist/gpu-serve.js --bf16 DIR --df11 DIR [--out FILE] [--solo-prefill] [--no-pipeline] [--prefill-gather-ms MS] [--max-batch-tokens N] [--repeat N] [--client same-process]
 */
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { loadModel } from "@df11/models";
import { CudaBackend, devices, memoryInfo, type GpuWeightsLayout } from "@df11/cuda-kernel";
import { runChild, saveJson } from "./child.js";
import { CLIENT_MODES, measureServing, type ClientMode, type Level } from "./serve-measure.js";

const USAGE =
  "usage: node apps/bench/dist/gpu-serve.js --bf16 DIR --df11 DIR [--out FILE] [--prompt-tokens N] [--new-tokens N] [--concurrency 1,4,16,64] [--solo-prefill] [--no-pipeline] [--prefill-gather-ms MS] [--max-batch-tokens N] [--repeat N] [--client separate-process|same-process]";
if (process.argv.includes("--help") || process.argv.includes("-h")) {
  console.log(USAGE);
  process.exit(0);
}
const parsed = (() => {
  try {
    return parseArgs({
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
        // As loadModel's pipelineGreedy: false — each decode step waits for the previous step's tokens.
        "no-pipeline": { type: "boolean", default: false },
        // Waves per level; the median one is reported.
        repeat: { type: "string", default: "3" },
        // Where the load generator runs: a Node process of its own (the default), or the server's (as before).
        client: { type: "string", default: "separate-process" },
      },
    });
  } catch (e) {
    console.error(`gpu-serve: ${(e as Error).message}\n${USAGE}`);
    process.exit(2);
  }
})();
const { values: args, positionals } = parsed;
if (!(CLIENT_MODES as readonly string[]).includes(args.client!)) {
  console.error(`gpu-serve: --client takes ${CLIENT_MODES.join(" or ")}, not ${args.client}`);
  process.exit(2);
}
const client = args.client as ClientMode;
const sharedPrefill = !args["solo-prefill"];
const pipelineGreedy = !args["no-pipeline"];
const prefillGatherMs = Number(args["prefill-gather-ms"]);
const repeat = Math.max(1, Number(args.repeat));
const maxRows = Number(args["max-batch-tokens"]);
const promptTokens = Number(args["prompt-tokens"]);
const newTokens = Number(args["new-tokens"]);
const levels = args.concurrency!.split(",").map(Number);
const log = (s: string) => console.error(s);
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
  const model = await loadModel(dir, { device: "cuda", slots: Math.max(...levels), maxContext: promptTokens + newTokens + 8, gpuWeights, maxRows, sharedPrefill, prefillGatherMs, pipelineGreedy });
  const weights = model.lm.weights;
  const result = { weights: weights.kind, layout: weights.layout, weightsBytes: weights.residentBytes, levels: await measureServing(model, { levels, repeat, promptTokens, newTokens, client, log }) };
  model.dispose();
  return { ...result, capacity: await capacity(dir, gpuWeights) };
}

async function main() {
  if (positionals[0] === "one") return console.log(JSON.stringify(await one(positionals[1], positionals[2] as GpuWeightsLayout)));
  if (!args.bf16 || !args.df11) throw new Error("give --bf16 DIR and --df11 DIR");
  const self = fileURLToPath(import.meta.url);
  const child = (dir: string, label: string, layout: GpuWeightsLayout) => {
    log(`${label}:`);
    return runChild<Awaited<ReturnType<typeof one>>>(self, ["one", dir, layout, "--prompt-tokens", String(promptTokens), "--new-tokens", String(newTokens), "--concurrency", args.concurrency!, ...(sharedPrefill ? [] : ["--solo-prefill"]), ...(pipelineGreedy ? [] : ["--no-pipeline"]), "--prefill-gather-ms", String(prefillGatherMs), "--repeat", String(repeat), "--max-batch-tokens", String(maxRows), "--client", client]);
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
  const result = { benchmark: "gpu-serve", date: new Date().toISOString(), device: devices()[0], model: "Llama-3.1-8B-shaped, synthetic weights", client, promptTokens, newTokens, maxBatchTokens: maxRows, sharedPrefill, prefillGatherMs, pipelineGreedy, repeat, bf16, df11 };
  log(`saved ${saveJson(args.out!, result)}`);
}

main().catch((e: Error) => {
  console.error(`gpu-serve: ${e.stack ?? e.message}`);
  process.exit(1);
});
