#!/usr/bin/env node
/**
 * CPU offload benchmark (--max-gpu-memory) on the 8B-shaped models: at a device-memory budget BF16 does
 * not fit in (default 12 GB), (a) decode and prefill tokens/s and peak GPU memory of DF11 resident (fused
 * layout, no budget), BF16 offloaded and DF11 offloaded (fused) — batch 1, a prompt of --prompt-tokens,
 * --new-tokens greedy tokens — with the speed ratios DF11-resident / BF16-offloaded and DF11-offloaded /
 * BF16-offloaded (the DFloat11 paper reports up to 38.8× against BF16 with CPU offload); (b) at a budget
 * (default 18 GB), the longest context BF16 and DF11 hold with every weight resident, from the memory plan,
 * each proven by prefilling a prompt of that length and generating a few tokens. One process per run.
 *
 *   node apps/bench/dist/offload-generate.js --bf16 DIR --df11 DIR [--budget 12GB] [--context-budget 18GB]
 *        [--prompt-tokens 512] [--new-tokens 96] [--no-context] [--out FILE]
 */
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { parseBytes } from "@df11/cli";
import { readModelConfig, sizeThreadPoolForReads } from "@df11/hub-loader";
import { CausalLM, parseTextModelConfig } from "@df11/models";
import { CudaBackend, memoryInfo, resetPeakAllocation, type CudaBackendOptions, type GpuWeightsLayout } from "@df11/cuda-kernel";
import { benchOptions, runChild, saveJson } from "./child.js";
import { generationResultHeader, measureGeneration, type GenerationRun } from "./gpu-measure.js";

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    ...benchOptions({ out: "bench-results/offload-generate.json", promptTokens: 512, newTokens: 96 }),
    budget: { type: "string", default: "12GB" },
    "context-budget": { type: "string", default: "18GB" },
    "no-context": { type: "boolean", default: false },
    "max-gpu-memory": { type: "string" },
  },
});
sizeThreadPoolForReads(); // before the first file is read
const promptTokens = Number(args["prompt-tokens"]);
const newTokens = Number(args["new-tokens"]);
const log = (s: string) => console.error(s);
const gb = (n: number) => (n / 1e9).toFixed(2);

/** (b): the longest resident context within a budget, and the run that proves it. */
interface ContextRun {
  readonly label: string;
  readonly layout: string;
  readonly budgetBytes: number;
  /** Longest maxContext whose memory plan keeps every weight on the GPU within the budget. */
  readonly maxContext: number;
  /** The model's own limit (max_position_embeddings) stopped the search. */
  readonly cappedByModel: boolean;
  readonly plannedDeviceBytes: number;
  readonly kvCacheBytes: number;
  /** The proof: a prompt of promptTokens = maxContext − generated ids, prefilled, then `generated` tokens. */
  readonly promptTokens: number;
  readonly generated: number;
  readonly prefillSeconds: number;
  readonly prefillTokensPerSecond: number;
  readonly peakGpuBytes: number;
  readonly withinBudget: boolean;
}

/** Whether `maxContext` positions fit the budget with every weight resident (the memory plan only). */
async function residentPlan(dir: string, layout: GpuWeightsLayout, budget: number, maxContext: number) {
  try {
    const p = await CudaBackend.planMemory(dir, { gpuWeights: layout, maxGpuMemory: budget, maxContext });
    return p.offload ? undefined : p;
  } catch {
    return undefined; // does not fit even offloaded
  }
}

async function longestContext(dir: string, label: string, layout: GpuWeightsLayout, budget: number): Promise<ContextRun> {
  const limit = parseTextModelConfig(await readModelConfig(dir)).maxPositionEmbeddings;
  if (!(await residentPlan(dir, layout, budget, 64))) throw new Error(`${label}: the weights do not fit ${gb(budget)} GB even with a 64-position cache`);
  let lo = 64;
  let hi = limit;
  if (!(await residentPlan(dir, layout, budget, hi))) {
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (await residentPlan(dir, layout, budget, mid)) lo = mid;
      else hi = mid;
    }
  } else lo = hi;
  const maxContext = lo;
  const plan = (await residentPlan(dir, layout, budget, maxContext))!;
  log(`${label}: longest resident context within ${gb(budget)} GB: ${maxContext} positions (KV cache ${gb(plan.kvBytes)} GB); proving it…`);
  memoryInfo();
  resetPeakAllocation();
  const backend = await CudaBackend.load(dir, { gpuWeights: layout, maxGpuMemory: budget, maxContext });
  using model = new CausalLM(backend.config, backend);
  const generated = 4;
  const prompt = Array.from({ length: maxContext - generated }, (_, i) => (i * 7919 + 13) % backend.config.vocabSize);
  const t = performance.now();
  let id = model.forwardGreedy(prompt);
  const prefillSeconds = (performance.now() - t) / 1000;
  for (let i = 1; i < generated; i++) id = model.forwardGreedy([id]);
  backend.synchronize();
  const peakGpuBytes = backend.memory().peakBytes;
  return {
    label,
    layout,
    budgetBytes: budget,
    maxContext,
    cappedByModel: maxContext === limit,
    plannedDeviceBytes: plan.deviceBytes,
    kvCacheBytes: plan.kvBytes,
    promptTokens: prompt.length,
    generated,
    prefillSeconds,
    prefillTokensPerSecond: prompt.length / prefillSeconds,
    peakGpuBytes,
    withinBudget: peakGpuBytes <= budget,
  };
}

async function main() {
  const layoutArg = args.layout as GpuWeightsLayout | undefined;
  const budget = parseBytes(args.budget!);
  const contextBudget = parseBytes(args["context-budget"]!);
  if (positionals[0] === "one") {
    const options: CudaBackendOptions = { gpuWeights: layoutArg, ...(args["max-gpu-memory"] ? { maxGpuMemory: Number(args["max-gpu-memory"]) } : {}) };
    console.log(JSON.stringify(await measureGeneration(positionals[1], positionals[2], promptTokens, newTokens, options)));
    return;
  }
  if (positionals[0] === "context") {
    console.log(JSON.stringify(await longestContext(positionals[1], positionals[2], layoutArg!, contextBudget)));
    return;
  }
  if (!args.bf16 || !args.df11) throw new Error("give --bf16 DIR and --df11 DIR");
  const self = fileURLToPath(import.meta.url);
  const common = ["--prompt-tokens", String(promptTokens), "--new-tokens", String(newTokens), "--budget", args.budget!, "--context-budget", args["context-budget"]!];
  const child = <T>(mode: string, dir: string, label: string, layout: GpuWeightsLayout, maxGpuMemory?: number) => {
    log(`${mode === "one" ? "measuring" : "longest context:"} ${label}…`);
    return runChild<T>(self, [mode, dir, label, ...common, "--layout", layout, ...(maxGpuMemory ? ["--max-gpu-memory", String(maxGpuMemory)] : [])]);
  };
  const runs = {
    df11Resident: child<GenerationRun>("one", args.df11, "DF11 resident (fused layout, no budget)", "fused"),
    bf16Offloaded: child<GenerationRun>("one", args.bf16, `BF16 offloaded (--max-gpu-memory ${args.budget})`, "bf16", budget),
    df11Offloaded: child<GenerationRun>("one", args.df11, `DF11 offloaded (fused layout, --max-gpu-memory ${args.budget})`, "fused", budget),
  };
  const context = args["no-context"]
    ? undefined
    : {
        bf16: child<ContextRun>("context", args.bf16, "BF16", "bf16"),
        df11: child<ContextRun>("context", args.df11, "DF11 (fused layout)", "fused"),
      };
  const all = Object.values(runs);
  const identical = all.every((r) => r.tokenIds.every((t, i) => t === all[0].tokenIds[i]));
  const ratio = (a: GenerationRun, b: GenerationRun) => a.decodeTokensPerSecond / b.decodeTokensPerSecond;
  const ratios = { df11ResidentOverBf16Offloaded: ratio(runs.df11Resident, runs.bf16Offloaded), df11OffloadedOverBf16Offloaded: ratio(runs.df11Offloaded, runs.bf16Offloaded) };
  log("");
  log(`| run | offloaded layers | host GB | prefill tok/s | decode tok/s | peak GPU GB |`);
  log(`|---|---|---|---|---|---|`);
  for (const r of all) {
    const o = r.engine.offload;
    log(`| ${r.label} | ${o ? o.layers.length : 0} | ${o ? gb(o.hostBytes) : "0"} | ${r.prefillTokensPerSecond.toFixed(0)} | ${r.decodeTokensPerSecond.toFixed(2)} | ${gb(r.peakGpuBytes)} |`);
  }
  log(`decode speed ratio DF11 resident / BF16 offloaded: ${ratios.df11ResidentOverBf16Offloaded.toFixed(2)}×; DF11 offloaded / BF16 offloaded: ${ratios.df11OffloadedOverBf16Offloaded.toFixed(2)}× (paper: up to 38.8×)`);
  log(`DF11 resident peak ${gb(runs.df11Resident.peakGpuBytes)} GB ${runs.df11Resident.peakGpuBytes <= budget ? "fits" : "does not fit"} the ${args.budget} budget`);
  if (context) {
    log(`longest resident context within ${args["context-budget"]}: BF16 ${context.bf16.maxContext}, DF11 ${context.df11.maxContext} (${(context.df11.maxContext / context.bf16.maxContext).toFixed(2)}×); proven: prefill ${context.bf16.promptTokens} / ${context.df11.promptTokens} tokens, peak ${gb(context.bf16.peakGpuBytes)} / ${gb(context.df11.peakGpuBytes)} GB`);
  }
  log(`all runs' tokens identical: ${identical}`);
  const result = {
    ...generationResultHeader("offload-generate", promptTokens, newTokens),
    budgetBytes: budget,
    tokensIdentical: identical,
    runs: all.map(({ tokenIds, ...r }) => r),
    ratios,
    context: context ? { budgetBytes: contextBudget, ...context, ratio: context.df11.maxContext / context.bf16.maxContext } : undefined,
  };
  log(`saved ${saveJson(args.out!, result)}`);
  if (!identical || (context && !(context.bf16.withinBudget && context.df11.withinBudget))) process.exitCode = 1;
}

main().catch((e: Error) => {
  console.error(`offload-generate: ${e.stack ?? e.message}`);
  process.exit(1);
});
