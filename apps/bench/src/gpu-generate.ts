#!/usr/bin/env node
/**
 * GPU generation benchmark: batch 1, a prompt of --prompt-tokens, --new-tokens greedy tokens, on our
 * engine from BF16 (BF16 weights), from DF11 (fused layout, the default; and Huffman windows) and from
 * BF16 into the fused layout — each variant in a process of its own — with transformers' numbers
 * (tools/transformers_bench.py) and the cuBLAS floor (tools/cublas_floor.py) of the same GPU and run
 * merged in as reference points. Every run records the configuration the engine reports it ran with.
 *
 *   node apps/bench/dist/gpu-generate.js --bf16 DIR --df11 DIR [--reference transformers.json] [--floor floor.json]
 *        [--chunks 8,16] [--no-pdl] [--profile]
 */
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { sizeThreadPoolForReads } from "@df11/hub-loader";
import { CausalLM } from "@df11/models";
import { CudaBackend, type GpuWeightsLayout, type OpTime } from "@df11/cuda-kernel";
import { benchOptions, runChild, saveJson } from "./child.js";
import { generationResultHeader, measureGeneration, type GenerationRun } from "./gpu-measure.js";

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    ...benchOptions({ out: "bench-results/gpu-generate.json", promptTokens: 512, newTokens: 256 }),
    reference: { type: "string" },
    floor: { type: "string" },
    "no-pdl": { type: "boolean", default: false },
    chunks: { type: "string", default: "" },
    chunk: { type: "string" },
    profile: { type: "boolean", default: false },
  },
});
sizeThreadPoolForReads(); // before the first file is read
const promptTokens = Number(args["prompt-tokens"]);
const newTokens = Number(args["new-tokens"]);
const log = (s: string) => console.error(s);

type Run = GenerationRun;
const measure = (dir: string, label: string, chunk?: number, layout?: GpuWeightsLayout) => measureGeneration(dir, label, promptTokens, newTokens, { decodeChunkElements: chunk, gpuWeights: layout });

/** Per-op GPU times (serialised): the prompt's prefill, and one-token steps averaged per token. */
async function profile(dir: string, chunk?: number, layout?: GpuWeightsLayout): Promise<{ prefill: OpTime[]; decodePerToken: OpTime[] }> {
  const backend = await CudaBackend.load(dir, { maxContext: promptTokens + 64, decodeChunkElements: chunk, profile: true, gpuWeights: layout });
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
  const layoutArg = args.layout as GpuWeightsLayout | undefined;
  if (positionals[0] === "profile") {
    console.log(JSON.stringify(await profile(positionals[1], args.chunk ? Number(args.chunk) : undefined, layoutArg)));
    return;
  }
  if (positionals[0] === "one") {
    const run = await measure(positionals[1], positionals[2], args.chunk ? Number(args.chunk) : undefined, layoutArg);
    console.log(JSON.stringify(run));
    return;
  }
  if (!args.bf16 || !args.df11) throw new Error("give --bf16 DIR and --df11 DIR");
  const self = fileURLToPath(import.meta.url);
  const child = (dir: string, label: string, layout: GpuWeightsLayout, o: { chunk?: number; mode?: string; env?: Record<string, string> } = {}) => {
    const mode = o.mode ?? "one";
    log(`${mode === "one" ? "measuring" : "profiling"} ${label}…`);
    const extra = [...(o.chunk ? ["--chunk", String(o.chunk)] : []), "--layout", layout];
    return runChild<Run | { prefill: OpTime[]; decodePerToken: OpTime[] }>(self, [mode, dir, label, "--prompt-tokens", String(promptTokens), "--new-tokens", String(newTokens), ...extra], o.env);
  };
  const runs = [
    child(args.bf16, "df11 engine, BF16 checkpoint, BF16 weights", "bf16"),
    child(args.df11, "df11 engine, DF11 checkpoint, fused layout (default)", "fused"),
    child(args.df11, "df11 engine, DF11 checkpoint, Huffman windows", "huffman"),
    child(args.bf16, "df11 engine, BF16 checkpoint, fused layout", "fused"),
  ] as Run[];
  for (const c of args.chunks!.split(",").filter(Boolean)) runs.push(child(args.df11, `df11 engine, DF11 checkpoint, Huffman windows of ${c} Mi elements`, "huffman", { chunk: Number(c) * 1024 * 1024 }) as Run);
  if (args["no-pdl"]) {
    runs.push(child(args.bf16, "df11 engine, BF16 weights, without programmatic launches", "bf16", { env: { DF11_PDL: "0" } }) as Run);
    runs.push(child(args.df11, "df11 engine, fused layout, without programmatic launches", "fused", { env: { DF11_PDL: "0" } }) as Run);
  }
  type Profile = { prefill: OpTime[]; decodePerToken: OpTime[] };
  const profiles = args.profile
    ? {
        bf16: child(args.bf16, "BF16", "bf16", { mode: "profile" }) as Profile,
        fused: child(args.df11, "DF11 fused", "fused", { mode: "profile" }) as Profile,
        huffman: child(args.df11, "DF11 Huffman", "huffman", { mode: "profile" }) as Profile,
      }
    : undefined;
  const reference = args.reference && existsSync(args.reference) ? JSON.parse(readFileSync(args.reference, "utf8")) : undefined;
  const floor = args.floor && existsSync(args.floor) ? JSON.parse(readFileSync(args.floor, "utf8")) : undefined;
  const same = (a: number[], b: number[]) => a.findIndex((v, i) => v !== b[i]);
  const identical = runs.every((r) => same(runs[0].tokenIds, r.tokenIds) === -1);
  const agreeWithTransformers = reference ? (same(runs[0].tokenIds, reference.tokenIds) + 1 || newTokens + 1) - 1 : undefined;
  const gb = (n: number) => (n / 1e9).toFixed(2);
  log("");
  log(`| engine | prefill tok/s | decode tok/s | ms/token (GPU + host) | weights GB | peak GPU GB |`);
  log(`|---|---|---|---|---|---|`);
  if (reference) log(`| ${reference.engine} | ${reference.prefillTokensPerSecond.toFixed(0)} | ${reference.decodeTokensPerSecond.toFixed(1)} | ${(1000 / reference.decodeTokensPerSecond).toFixed(2)} | ${gb(reference.weightsBytes)} | ${gb(reference.peakGpuBytes)} |`);
  if (floor) log(`| cuBLAS floor (every GEMV of a token, one CUDA graph) | | ${floor.tokensPerSecond.toFixed(1)} | ${floor.msPerToken.toFixed(2)} | | |`);
  for (const r of runs) {
    log(`| ${r.label} | ${r.prefillTokensPerSecond.toFixed(0)} | ${r.decodeTokensPerSecond.toFixed(1)} | ${r.decodeMsPerToken.toFixed(2)} (${r.gpuMsPerToken.toFixed(2)} + ${r.hostOverheadMsPerToken.toFixed(3)}) | ${gb(r.weightsBytes)} | ${gb(r.peakGpuBytes)} |`);
  }
  for (const r of runs) log(`${r.label}: load ${r.loadSeconds.toFixed(2)} s, first token ${r.firstTokenSeconds.toFixed(2)} s; host ms/token: inputs ${r.hostMsPerToken.setStep.toFixed(3)}, graph launch ${r.hostMsPerToken.launch.toFixed(3)}, wait + read back ${r.hostMsPerToken.readBack.toFixed(3)}`);
  for (const r of runs) log(`${r.label}: load phases (host ms) ${Object.entries(r.loadPhases).map(([k, v]) => `${k.replace(/Ms$/, "")} ${v.toFixed(0)}`).join(", ")}`);
  for (const r of runs) log(`${r.label}: decode pipelined (as generate() and df11 serve run greedy decoding) ${r.pipelinedDecodeTokensPerSecond.toFixed(1)} tok/s vs ${r.decodeTokensPerSecond.toFixed(1)} one step at a time; tokens ${r.pipelinedTokensEqual ? "identical" : "DIFFER"}`);
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
  log(`all runs' tokens identical: ${identical}${reference ? `; first ${agreeWithTransformers} tokens equal transformers' (BF16 arithmetic differs, so greedy paths may part)` : ""}`);
  const result = {
    ...generationResultHeader("gpu-generate", promptTokens, newTokens),
    tokensIdentical: identical,
    tokensEqualToTransformers: agreeWithTransformers,
    reference: reference ? { ...reference, tokenIds: undefined } : undefined,
    floor,
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
