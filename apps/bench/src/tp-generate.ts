#!/usr/bin/env node
/**
 * Tensor-parallel generation benchmark: the 8B-shaped model on one GPU and split over several
 * (TensorParallelBackend, NCCL), BF16 and DF11 (fused layout), batch 1, a prompt of --prompt-tokens and
 * --new-tokens greedy tokens, each variant in a process of its own; the speed-up of the extra GPUs,
 * peak memory per GPU, and whether every variant generated the same tokens.
 *
 *   node apps/bench/dist/tp-generate.js --bf16 DIR --df11 DIR [--devices 0,1] [--out tp-generate.json]
 */
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { sizeThreadPoolForReads } from "@df11/hub-loader";
import { CausalLM, type Backend } from "@df11/models";
import { CudaBackend, devices as cudaDevices, resetPeakAllocation, TensorParallelBackend, type GpuWeightsLayout } from "@df11/cuda-kernel";
import { runChild, saveJson } from "./child.js";

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    bf16: { type: "string" },
    df11: { type: "string" },
    devices: { type: "string", default: "0,1" },
    layout: { type: "string", default: "fused" },
    out: { type: "string", default: "bench-results/tp-generate.json" },
    "prompt-tokens": { type: "string", default: "512" },
    "new-tokens": { type: "string", default: "128" },
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
  readonly tokenIds: number[];
}

async function measure(dir: string, label: string, devices: number[], layout: GpuWeightsLayout): Promise<Run> {
  const maxContext = promptTokens + newTokens + 8;
  let t = performance.now();
  const backend: Backend & { synchronize(): void; engineConfig: unknown } =
    devices.length > 1 ? await TensorParallelBackend.load(dir, { devices, maxContext, gpuWeights: layout }) : await CudaBackend.load(dir, { device: devices[0], maxContext, gpuWeights: layout });
  const loadSeconds = (performance.now() - t) / 1000;
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
    tokenIds,
  };
}

async function main() {
  if (positionals[0] === "one") {
    const devices = positionals[3].split(",").map(Number);
    console.log(JSON.stringify(await measure(positionals[1], positionals[2], devices, args.layout as GpuWeightsLayout)));
    return;
  }
  if (!args.bf16 || !args.df11) throw new Error("give --bf16 DIR and --df11 DIR");
  const self = fileURLToPath(import.meta.url);
  const all = args.devices!.split(",").map(Number);
  const child = (dir: string, label: string, devices: number[], layout: string) => {
    log(`measuring ${label} on GPU ${devices.join(",")}…`);
    return runChild<Run>(self, ["one", dir, label, devices.join(","), "--layout", layout, "--prompt-tokens", String(promptTokens), "--new-tokens", String(newTokens)], { NCCL_NVLS_ENABLE: "0" });
  };
  const runs: Run[] = [];
  for (const [dir, name, layout] of [
    [args.bf16, "BF16 weights", "bf16"],
    [args.df11, "DF11, fused layout", "fused"],
  ] as const) {
    runs.push(child(dir, `${name}, 1 GPU`, [all[0]], layout));
    runs.push(child(dir, `${name}, tensor parallel over ${all.length} GPUs`, all, layout));
  }
  const gb = (n: number) => (n / 1e9).toFixed(2);
  log("");
  log(`| run | prefill tok/s | decode tok/s | weights GB (all GPUs) | peak GB per GPU | load s |`);
  log(`|---|---|---|---|---|---|`);
  for (const r of runs) log(`| ${r.label} | ${r.prefillTokensPerSecond.toFixed(0)} | ${r.decodeTokensPerSecond.toFixed(1)} | ${gb(r.weightsBytes)} | ${r.perGpu.map((d) => gb(d.peakBytes)).join(" / ")} | ${r.loadSeconds.toFixed(2)} |`);
  const speedUp = (a: Run, b: Run) => ({ decode: b.decodeTokensPerSecond / a.decodeTokensPerSecond, prefill: b.prefillTokensPerSecond / a.prefillTokensPerSecond });
  const speedUps = { bf16: speedUp(runs[0], runs[1]), df11: speedUp(runs[2], runs[3]) };
  log(`speed-up of ${all.length} GPUs: BF16 decode ×${speedUps.bf16.decode.toFixed(2)}, prefill ×${speedUps.bf16.prefill.toFixed(2)}; DF11 decode ×${speedUps.df11.decode.toFixed(2)}, prefill ×${speedUps.df11.prefill.toFixed(2)}`);
  // One GPU and several split the sums differently (rounding), so greedy paths may part after a while;
  // DF11 must equal BF16 on the same GPUs exactly.
  const agree = (a: number[], b: number[]) => (a.findIndex((v, i) => v !== b[i]) + 1 || a.length + 1) - 1;
  const tokens = { df11EqualsBf16OneGpu: agree(runs[0].tokenIds, runs[2].tokenIds), df11EqualsBf16Parallel: agree(runs[1].tokenIds, runs[3].tokenIds), parallelEqualsOneGpu: agree(runs[0].tokenIds, runs[1].tokenIds) };
  log(`tokens equal (of ${newTokens}): DF11 = BF16 on one GPU ${tokens.df11EqualsBf16OneGpu}, on ${all.length} GPUs ${tokens.df11EqualsBf16Parallel}; ${all.length} GPUs = one GPU ${tokens.parallelEqualsOneGpu}`);
  const result = {
    benchmark: "tp-generate",
    date: new Date().toISOString(),
    device: cudaDevices()[all[0]],
    gpus: all.length,
    model: "Llama-3.1-8B-shaped, synthetic weights (tools/make_bench_model.py)",
    batch: 1,
    promptTokens,
    newTokens,
    speedUps,
    tokens,
    runs: runs.map(({ tokenIds, ...r }) => r),
  };
  log(`saved ${saveJson(args.out!, result)}`);
  if (tokens.df11EqualsBf16OneGpu !== newTokens || tokens.df11EqualsBf16Parallel !== newTokens) process.exitCode = 1;
}

main().catch((e: Error) => {
  console.error(`tp-generate: ${e.stack ?? e.message}`);
  process.exit(1);
});
