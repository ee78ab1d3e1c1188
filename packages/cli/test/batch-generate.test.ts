// `df11 generate --batch-size N` on the CPU, through the built command: sequences run together in one
// batch get exactly their solo runs' tokens (greedy, and sampled with seeds seed, seed+1, …, from the
// solo run's default seed without --seed), the official fixtures' batched greedy tokens equal
// transformers', and the summary's numbers hang together.
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_SEED, writeSyntheticModel } from "@df11/models";
import { fixtureNames, fixturesRoot, fixturesSkipReason } from "../../../test-support/fixtures.js";
import { planBatch, type BatchGenerateResult } from "../src/batch-generate.js";
import { df11, SMALL } from "./helpers.js";

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "df11-batch-"));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const json = async <T>(...args: string[]): Promise<T> => JSON.parse((await df11("generate", "--json", "--device", "cpu", ...args)).stdout) as T;
const batch = (...args: string[]) => json<BatchGenerateResult>(...args);
const solo = (...args: string[]) => json<{ tokenIds: number[]; text: string | null }>(...args);

/** The batch really ran together: one decode step per token of the longest sequence, not one per token of each. */
function expectBatched(r: BatchGenerateResult): void {
  const lengths = r.sequences.map((s) => s.tokenIds.length);
  expect(r.generatedTokens).toBe(lengths.reduce((a, b) => a + b, 0));
  expect(r.decodeSteps).toBe(Math.max(...lengths) - 1);
  expect(r.decodeSteps).toBeLessThan(lengths.reduce((a, n) => a + n - 1, 0));
}

describe("df11 generate --batch-size on the CPU", () => {
  it("4 different text prompts, greedy: each equals its solo run, on BF16 and DF11 weights; the summary adds up", async () => {
    const bf16 = join(work, "bf16");
    await writeSyntheticModel(bf16, SMALL, { tokenizer: true, seed: 41 });
    const dfDir = join(work, "df11");
    await df11("compress", bf16, "-o", dfDir);
    const prompts = ["the water is", "a cat sat on the mat and", "hello", "one two three four five six seven"];
    for (const dir of [bf16, dfDir]) {
      const r = await batch(dir, "-n", "12", ...prompts.flatMap((p) => ["-p", p]));
      expect(r.batchSize).toBe(4);
      expect(r.weights).toBe(dir === bf16 ? "bf16" : "df11");
      expect(r.weightsInUse.format).toBe(r.weights);
      expect(new Set(r.sequences.map((s) => s.promptTokenIds.length)).size).toBeGreaterThan(1); // positions differ per slot
      for (const [i, p] of prompts.entries()) {
        const alone = await solo(dir, "-n", "12", "-p", p);
        expect(r.sequences[i].tokenIds).toEqual(alone.tokenIds);
        expect(r.sequences[i].text).toBe(alone.text);
      }
      expectBatched(r);
      expect(r.seconds.prefill).toBeGreaterThan(0);
      expect(r.seconds.decode).toBeGreaterThan(0);
      expect(r.seconds.total).toBeGreaterThanOrEqual(r.seconds.prefill + r.seconds.decode - 1e-3);
      expect(r.tokensPerSecond.aggregate).toBeCloseTo(r.generatedTokens / r.seconds.total, 6);
      expect(r.tokensPerSecond.perSequence).toBeCloseTo(r.decodeSteps / r.seconds.decode, 6);
      expect(r.memory?.measure).toBe("process-rss");
      expect(r.memory!.inUseBytes).toBeGreaterThan(1e6);
      expect(r.memory!.peakBytes).toBeGreaterThanOrEqual(r.memory!.inUseBytes);
      expect(r.warmedUp).toBe(false);
    }
  });

  it("one prompt N times with sampling: sequence i uses seed + i and equals `df11 generate --seed seed+i`", async () => {
    const dir = join(work, "bf16");
    const r = await batch(dir, "-p", "the water is", "-n", "10", "-b", "3", "--temperature", "1.5", "--seed", "7", "--ignore-eos");
    expect(r.sequences.map((s) => s.seed)).toEqual([7, 8, 9]);
    expect(r.sequences.every((s) => s.tokenIds.length === 10 && s.stopReason === "max-tokens")).toBe(true);
    expect(new Set(r.sequences.map((s) => s.tokenIds.join())).size).toBeGreaterThan(1);
    for (const s of r.sequences) {
      const alone = await solo(dir, "-p", "the water is", "-n", "10", "--temperature", "1.5", "--seed", String(s.seed));
      // Solo stops at EOS; the batch ignored it, so compare the solo run's length.
      expect(s.tokenIds.slice(0, alone.tokenIds.length)).toEqual(alone.tokenIds);
    }
    expectBatched(r);
  });

  it("without --seed a batch starts from `df11 generate`'s default seed: sequence 0 samples as a solo run without --seed", async () => {
    const dir = join(work, "bf16");
    const args = ["-p", "the water is", "-n", "10", "--temperature", "1.5"];
    const r = await batch(dir, ...args, "-b", "2", "--ignore-eos");
    const alone = await json<{ tokenIds: number[]; settings: { sampling: { seed: number } } }>(dir, ...args);
    expect(alone.settings.sampling.seed).toBe(DEFAULT_SEED);
    expect(r.settings.sampling.seed).toBe(DEFAULT_SEED);
    expect(r.sequences.map((s) => s.seed)).toEqual([DEFAULT_SEED, DEFAULT_SEED + 1]);
    expect(r.sequences[0].tokenIds.slice(0, alone.tokenIds.length)).toEqual(alone.tokenIds);
    expect(planBatch(1, 3).map((p) => p.seed)).toEqual([DEFAULT_SEED, DEFAULT_SEED + 1, DEFAULT_SEED + 2]);
  });

  it("prints labelled responses and one summary line; refuses bad combinations with a clear message", async () => {
    const dir = join(work, "bf16");
    const { stdout, stderr } = await df11("generate", dir, "--device", "cpu", "-n", "4", "-p", "the water is", "-p", "hello");
    expect(stdout).toMatch(/^\[1\/2\] .+\n\[2\/2\] .+\n$/);
    expect(stderr).toMatch(/\[2 sequences, \d+ tokens .*latency [\d.]+ s \(prefill [\d.]+ s, decode [\d.]+ s in \d+ steps\); [\d.]+ tok\/s aggregate, [\d.]+ tok\/s per sequence; bf16 on cpu; RSS .+ in use, .+ peak\]/);
    await expect(df11("generate", dir, "-p", "a", "-p", "b", "-b", "3")).rejects.toMatchObject({ stderr: expect.stringMatching(/--batch-size 3 with 2 prompts: give one prompt \(run 3 times\) or exactly 3/) });
    await expect(df11("generate", dir, "-p", "a", "--input-ids", "1,2", "-b", "2")).rejects.toMatchObject({ stderr: expect.stringMatching(/--prompt or --input-ids, not both/) });
    await expect(df11("generate", dir, "--input-ids", "1,2", "--input-ids", "3,99999")).rejects.toMatchObject({ stderr: expect.stringMatching(/token id 99999 is outside/) });
    await expect(df11("generate", dir, "-b", "2", "-p", "the water is", "--max-context", "3")).rejects.toMatchObject({ stderr: expect.stringMatching(/a prompt has 4 tokens and the context length is 3: to generate, a prompt may have at most 2 tokens \(--max-context; this model's maximum is \d+\)/) });
    await expect(df11("generate", dir, "-b", "0", "-p", "a")).rejects.toMatchObject({ stderr: expect.stringMatching(/expected a positive integer/) });
    const bare = join(work, "no-tokenizer");
    await writeSyntheticModel(bare, SMALL, { seed: 42 });
    await expect(df11("generate", bare, "-p", "a", "-b", "2")).rejects.toMatchObject({ stderr: expect.stringMatching(/no tokenizer\.json: use --input-ids/) });
  });
});

describe.skipIf(fixtureNames.length === 0)(`df11 generate --batch-size on the official fixtures (${fixtureNames.length ? fixtureNames.join(", ") : fixturesSkipReason})`, () => {
  for (const name of fixtureNames) {
    it(`${name}: 4 prompts batched (official DF11 weights) = solo runs; the reference prompt gives transformers' greedy tokens`, async () => {
      const ref = JSON.parse(readFileSync(join(fixturesRoot, name, "reference.json"), "utf8")) as { input_ids: number[]; greedy_fp32: number[] };
      const dir = join(fixturesRoot, name, "df11");
      const prompts = [ref.input_ids, [...ref.input_ids].reverse(), ref.input_ids.slice(0, 3), [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21]];
      const n = String(ref.greedy_fp32.length);
      const r = await batch(dir, "-n", n, ...prompts.flatMap((p) => ["--input-ids", p.join(",")]));
      expect(r.sequences[0].tokenIds).toEqual(ref.greedy_fp32.slice(0, r.sequences[0].tokenIds.length));
      for (const [i, p] of prompts.entries()) {
        const alone = await solo(dir, "-n", n, "--input-ids", p.join(","));
        expect(r.sequences[i].tokenIds).toEqual(alone.tokenIds);
        expect(r.sequences[i].text).toBeNull();
      }
      expectBatched(r);
    });
  }
});
