#!/usr/bin/env node
/**
 * DFloat11's quick start, on our engine: `df11 generate --batch-size N --json` for each N of a list on
 * one model directory, each in a process of its own (N different prompts of --prompt-tokens ids,
 * --new-tokens greedy tokens each, EOS ignored), all results in one JSON file: latency, prefill,
 * aggregate and per-sequence tokens/s, the backend's memory in use and peak, and whether sequence 1 of
 * each batch got exactly the tokens of the batch-1 run.
 *
 *   node apps/bench/dist/batch-generate.js --model DIR [--batch-sizes 1,8,32] [--device cuda] [--out FILE]
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { promisify } from "node:util";
import type { BatchGenerateResult } from "@df11/cli";
import { devices, isCudaAvailable, memoryInfo } from "@df11/cuda-kernel";
import { saveJson } from "./child.js";

const { values: args } = parseArgs({
  options: {
    model: { type: "string" },
    "batch-sizes": { type: "string", default: "1,8,32" },
    "prompt-tokens": { type: "string", default: "128" },
    "new-tokens": { type: "string", default: "256" },
    device: { type: "string", default: "auto" },
    out: { type: "string", default: "bench-results/batch-generate.json" },
  },
});
const log = (s: string) => console.error(s);
const positive = (name: string, v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name}: expected a positive integer, got "${v}"`);
  return n;
};
const promptTokens = positive("prompt-tokens", args["prompt-tokens"]!);
const newTokens = positive("new-tokens", args["new-tokens"]!);
const batchSizes = args["batch-sizes"]!.split(",").map((v) => positive("batch-sizes", v));
const df11Bin = join(dirname(createRequire(import.meta.url).resolve("@df11/cli/package.json")), "dist", "bin.js");

/** The model's vocabulary size (config.json, or its text_config). */
function vocabOf(dir: string): number {
  const c = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
  const v = c.vocab_size ?? c.text_config?.vocab_size;
  if (!Number.isInteger(v) || v < 2) throw new Error(`${dir}/config.json: no vocab_size`);
  return v;
}

/** Sequence s's prompt: ids spread over the vocabulary, different for every sequence. */
const promptOf = (s: number, vocab: number) => Array.from({ length: promptTokens }, (_, i) => (i * 7919 + s * 104729 + 13) % vocab);

/**
 * Run one batch size in a child `df11 generate`. Meanwhile the device's free memory is sampled from here
 * every 20 ms: the device-wide peak use (the child's CUDA context included), a cross-check of the
 * backend's own numbers.
 */
async function measure(dir: string, batchSize: number, vocab: number): Promise<BatchGenerateResult & { deviceUsedPeakBytesSampled?: number }> {
  const cuda = args.device !== "cpu" && isCudaAvailable();
  const freeBefore = cuda ? memoryInfo().free : 0;
  let minFree = freeBefore;
  const timer = cuda ? setInterval(() => (minFree = Math.min(minFree, memoryInfo().free)), 20) : undefined;
  try {
    const cmd = [df11Bin, "generate", dir, "--json", "--device", args.device!, "--batch-size", String(batchSize), "-n", String(newTokens), "--ignore-eos"];
    cmd.push("--max-context", String(promptTokens + newTokens + 8));
    for (let s = 0; s < batchSize; s++) cmd.push("--input-ids", promptOf(s, vocab).join(","));
    const { stdout } = await promisify(execFile)(process.execPath, cmd, { maxBuffer: 1 << 28 });
    const result = JSON.parse(stdout) as BatchGenerateResult;
    return cuda ? { ...result, deviceUsedPeakBytesSampled: freeBefore - minFree } : result;
  } finally {
    clearInterval(timer);
  }
}

async function main() {
  const dir = args.model;
  if (!dir) throw new Error("give --model DIR (a BF16 or DF11 model directory)");
  const vocab = vocabOf(dir);
  const runs: (BatchGenerateResult & { deviceUsedPeakBytesSampled?: number })[] = [];
  for (const n of batchSizes) {
    log(`batch ${n}…`);
    runs.push(await measure(dir, n, vocab));
  }
  // Sequence 1 has the same prompt in every run: does the batch change its greedy tokens?
  const solo = runs.find((r) => r.batchSize === 1)?.sequences[0].tokenIds;
  const firstDiff = (a: number[], b: number[]) => {
    const i = a.findIndex((v, k) => v !== b[k]);
    return i < 0 && a.length === b.length ? null : i < 0 ? Math.min(a.length, b.length) : i;
  };
  const gb = (n: number | undefined) => (n === undefined ? "n/a" : (n / 1e9).toFixed(2));
  log("");
  log("| batch | latency s | prefill s | aggregate tok/s | per-sequence tok/s | GPU/RSS GB in use | peak | sampled device peak GB | seq 1 = batch 1 |");
  log("|---|---|---|---|---|---|---|---|---|");
  const rows = runs.map(({ sequences, ...r }) => {
    const diff = solo ? firstDiff(sequences[0].tokenIds, solo) : undefined;
    const row = { ...r, sequence1EqualsBatch1: diff === undefined ? undefined : diff === null, sequence1FirstDifferentToken: diff ?? undefined, stopReasons: [...new Set(sequences.map((s) => s.stopReason))] };
    log(
      `| ${r.batchSize} | ${r.seconds.total.toFixed(2)} | ${r.seconds.prefill.toFixed(2)} | ${r.tokensPerSecond.aggregate.toFixed(1)} | ${r.tokensPerSecond.perSequence.toFixed(1)} | ` +
        `${gb(r.memory?.inUseBytes)} | ${gb(r.memory?.peakBytes)} | ${gb(r.deviceUsedPeakBytesSampled)} | ${row.sequence1EqualsBatch1 ?? "n/a"} |`,
    );
    return row;
  });
  const result = {
    benchmark: "batch-generate",
    date: new Date().toISOString(),
    gpu: args.device !== "cpu" && isCudaAvailable() ? devices()[0] : undefined,
    model: dir,
    promptTokens,
    newTokens,
    runs: rows,
  };
  log(`saved ${saveJson(args.out!, result)}`);
}

main().catch((e: Error) => {
  console.error(e.stack ?? e.message);
  process.exit(1);
});
