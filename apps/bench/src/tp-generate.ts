#!/usr/bin/env node
/**
 * Tensor-parallel generation benchmark: the 8B-shaped model on one GPU and split over several
 * (TensorParallelBackend, NCCL), BF16 and DF11 (fused layout), batch 1, a prompt of --prompt-tokens and
 * --new-tokens greedy tokens, each variant in a process of its own; the speed-up of the extra GPUs,
 * peak memory per GPU, and whether every variant generated the same tokens.
 *
 * Each run also reports the room left for the KV cache: free device memory after loading, per GPU, in
 * positions and in sequences of 4,096 positions (a run's own KV cache and working memory are already
 * allocated then).
 *
 *   node apps/bench/dist/tp-generate.js --bf16 DIR --df11 DIR [--devices 0,1] [--out tp-generate.json]
 *   node apps/bench/dist/tp-generate.js --df11 DIR --df11-only   # models without a BF16 twin (70B)
 */
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { sizeThreadPoolForReads } from "@df11/hub-loader";
import { CausalLM, type Backend } from "@df11/models";
import { CudaBackend, devices as cudaDevices, memoryInfo, resetPeakAllocation, TensorParallelBackend, withDevice, type GpuWeightsLayout } from "@df11/cuda-kernel";
import { benchOptions, runChild, saveJson } from "./child.js";

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    ...benchOptions({ out: "bench-results/tp-generate.json", promptTokens: 512, newTokens: 128 }),
    devices: { type: "string", default: "0,1" },
    layout: { type: "string", default: "fused" },
    "df11-only": { type: "boolean", default: false },
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
  readonly capacity: { freeBytesPerGpu: number[]; kvBytesPerPositionPerGpu: number; positions: number; sequencesOf4096: number };
  readonly tokenIds: number[];
}

async function measure(dir: string, label: string, devices: number[], layout: GpuWeightsLayout): Promise<Run> {
  const maxContext = promptTokens + newTokens + 8;
  let t = performance.now();
  const backend: Backend & { synchronize(): void; engineConfig: unknown } =
    devices.length > 1 ? await TensorParallelBackend.load(dir, { devices, maxContext, gpuWeights: layout }) : await CudaBackend.load(dir, { device: devices[0], maxContext, gpuWeights: layout });
  const loadSeconds = (performance.now() - t) / 1000;
  const freeBytesPerGpu = devices.map((d) => withDevice(d, () => memoryInfo().free));
  const c = backend.config;
  // K and V, BF16, every layer; tensor parallelism splits the KV heads (or replicates them when fewer).
  const kvHeadsPerGpu = backend.shardConfig?.numKvHeads ?? c.numKvHeads;
  const kvBytesPerPositionPerGpu = 2 * c.numLayers * kvHeadsPerGpu * c.headDim * 2;
  const positions = Math.max(0, Math.floor((Math.min(...freeBytesPerGpu) - 0.5e9) / kvBytesPerPositionPerGpu));
  const capacity = { freeBytesPerGpu, kvBytesPerPositionPerGpu, positions, sequencesOf4096: Math.floor(positions / 4096) };
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
    console.log(JSON.stringify(await measure(positionals[1], positionals[2], devices, args.layout as GpuWeightsLayout)));
    return;
  }
  const df11Only = args["df11-only"];
  if (!args.df11 || (!args.bf16 && !df11Only)) throw new Error("give --bf16 DIR and --df11 DIR (or --df11 DIR --df11-only)");
  const self = fileURLToPath(import.meta.url);
  const all = args.devices!.split(",").map(Number);
  const child = (dir: string, label: string, devices: number[], layout: string) => {
    log(`measuring ${label} on GPU ${devices.join(",")}…`);
    return runChild<Run>(self, ["one", dir, label, devices.join(","), "--layout", layout, "--prompt-tokens", String(promptTokens), "--new-tokens", String(newTokens)], { NCCL_NVLS_ENABLE: "0" });
  };
  const runs: Run[] = [];
  const variants = [
    ...(df11Only ? [] : [[args.bf16!, "BF16 weights", "bf16"] as const]),
    [args.df11, "DF11, fused layout", "fused"] as const,
  ];
  for (const [dir, name, layout] of variants) {
    runs.push(child(dir, `${name}, 1 GPU`, [all[0]], layout));
    runs.push(child(dir, `${name}, tensor parallel over ${all.length} GPUs`, all, layout));
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
  const [bf16One, bf16Many, df11One, df11Many] = df11Only ? [undefined, undefined, runs[0], runs[1]] : runs;
  const speedUps = { ...(bf16One ? { bf16: speedUp(bf16One, bf16Many!) } : {}), df11: speedUp(df11One, df11Many) };
  log(`speed-up of ${all.length} GPUs: ${speedUps.bf16 ? `BF16 decode ×${speedUps.bf16.decode.toFixed(2)}, prefill ×${speedUps.bf16.prefill.toFixed(2)}; ` : ""}DF11 decode ×${speedUps.df11.decode.toFixed(2)}, prefill ×${speedUps.df11.prefill.toFixed(2)}`);
  // One GPU and several split the sums differently (rounding), so greedy paths may part after a while;
  // DF11 must equal BF16 on the same GPUs exactly.
  const agree = (a: number[], b: number[]) => (a.findIndex((v, i) => v !== b[i]) + 1 || a.length + 1) - 1;
  const tokens = {
    ...(bf16One ? { df11EqualsBf16OneGpu: agree(bf16One.tokenIds, df11One.tokenIds), df11EqualsBf16Parallel: agree(bf16Many!.tokenIds, df11Many.tokenIds) } : {}),
    parallelEqualsOneGpu: agree(df11One.tokenIds, df11Many.tokenIds),
  };
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
    tokens,
    runs: runs.map(({ tokenIds, ...r }) => r),
  };
  log(`saved ${saveJson(args.out!, result)}`);
  if (bf16One && (tokens.df11EqualsBf16OneGpu !== newTokens || tokens.df11EqualsBf16Parallel !== newTokens)) process.exitCode = 1;
}

main().catch((e: Error) => {
  console.error(`tp-generate: ${e.stack ?? e.message}`);
  process.exit(1);
});
