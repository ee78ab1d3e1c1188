import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { generate, loadCausalLM, peakRssBytes, writeSyntheticModel, type GenerationStats, type SyntheticModelShape } from "@df11/models";
import { compressModel } from "@df11/cli";

/** One variant's measurement, taken in a process of its own so peak RSS is its own. */
export interface GenerationRun {
  readonly weights: "bf16" | "df11";
  readonly prefillTokensPerSecond: number;
  readonly decodeTokensPerSecond: number;
  readonly peakRssBytes: number;
  readonly residentWeightBytes: number;
  readonly tokenIds: number[];
}

/** Child side: load, prefill `promptTokens` tokens, decode `newTokens` greedily, report. */
export async function measureGeneration(dir: string, promptTokens: number, newTokens: number): Promise<GenerationRun> {
  using model = await loadCausalLM(dir);
  const prompt = Array.from({ length: promptTokens }, (_, i) => (i * 7919 + 13) % model.config.vocabSize);
  const stats: { value?: GenerationStats } = {};
  const tokenIds: number[] = [];
  for await (const t of generate(model, prompt, { maxTokens: newTokens, stopTokenIds: [] }, stats)) tokenIds.push(t.id);
  const s = stats.value!;
  return {
    weights: model.weights.kind,
    prefillTokensPerSecond: s.promptTokens / s.prefillSeconds,
    decodeTokensPerSecond: (s.generatedTokens - 1) / s.decodeSeconds,
    peakRssBytes: peakRssBytes(),
    residentWeightBytes: model.weights.residentBytes,
    tokenIds,
  };
}

export const BENCH_SHAPE: SyntheticModelShape = { vocab: 8192, hidden: 768, intermediate: 2048, layers: 6, heads: 12, kvHeads: 4 };

/** Orchestrates: builds a BF16 model, compresses it, measures both in separate processes. */
export async function runGenerationBench(promptTokens: number, newTokens: number, log = console.error) {
  const work = await mkdtemp(join(tmpdir(), "df11-genbench-"));
  try {
    const bf16 = join(work, "bf16");
    const df11 = join(work, "df11");
    log(`writing a ${BENCH_SHAPE.layers}-layer llama-shaped model (hidden ${BENCH_SHAPE.hidden}, vocab ${BENCH_SHAPE.vocab})…`);
    await writeSyntheticModel(bf16, BENCH_SHAPE);
    await compressModel(bf16, df11);
    const child = fileURLToPath(new URL("./index.js", import.meta.url));
    const run = async (dir: string): Promise<GenerationRun> => {
      const { stdout } = await promisify(execFile)(process.execPath, [child, "generate-one", dir, String(promptTokens), String(newTokens)], { maxBuffer: 1 << 24 });
      return JSON.parse(stdout);
    };
    const runs = [await run(bf16), await run(df11)];
    const identical = JSON.stringify(runs[0].tokenIds) === JSON.stringify(runs[1].tokenIds);
    if (!identical) throw new Error("BF16 and DF11 generated different tokens");
    for (const r of runs) {
      log(
        `${r.weights}: prefill ${r.prefillTokensPerSecond.toFixed(1)} tok/s, decode ${r.decodeTokensPerSecond.toFixed(1)} tok/s, ` +
          `weights resident ${(r.residentWeightBytes / 2 ** 20).toFixed(1)} MiB, peak RSS ${(r.peakRssBytes / 2 ** 20).toFixed(1)} MiB`,
      );
    }
    return {
      benchmark: "generate-cpu",
      date: new Date().toISOString(),
      shape: BENCH_SHAPE,
      promptTokens,
      newTokens,
      tokensIdentical: identical,
      runs: runs.map(({ tokenIds, ...r }) => ({ ...r, tokensGenerated: tokenIds.length })),
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
