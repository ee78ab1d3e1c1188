// The scheduler's pipelined greedy decoding under a random mix (fixed seeds): requests arriving while steps
// are in flight, greedy ones with stop ids, stop strings and context ends, sampled and logprobs ones joining
// and leaving the pipelined batch, prompt scoring, max_tokens 0, aborts and consumers that stop reading.
// Every request's tokens (text, logprobs, finish reason) must be those it gets alone and unpipelined — a
// prefix of them when it was cut short — and every KV-cache slot must be free again at the end.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BatchScheduler, TextTokenizer, loadCausalLM, writeSyntheticModel, type BatchRequest, type CausalLM, type GeneratedToken } from "../src/index.js";

let dir: string;
let tokenizer: TextTokenizer;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "df11-pipelined-mix-"));
  await writeSyntheticModel(dir, { vocab: 512, hidden: 32, intermediate: 48, layers: 2, heads: 4, kvHeads: 2 }, { tokenizer: true, family: "qwen3", seed: 3 });
  tokenizer = (await TextTokenizer.load(dir))!;
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** mulberry32: the test's own random numbers, fixed by seed. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Run {
  tokens: GeneratedToken[];
  finish: string | undefined;
  error?: unknown;
}

async function read(stream: ReturnType<BatchScheduler["submit"]>, stopAfter?: number): Promise<Run> {
  const tokens: GeneratedToken[] = [];
  try {
    for await (const t of stream) {
      tokens.push(t);
      if (stopAfter !== undefined && tokens.length >= stopAfter) break;
    }
    return { tokens, finish: stream.finishReason };
  } catch (error) {
    return { tokens, finish: stream.finishReason, error };
  }
}

const MAX_CONTEXT = 40;
const MAX_BATCH = 4;

/** A request alone in an unpipelined scheduler. */
const alone = (lm: CausalLM, request: BatchRequest) => read(new BatchScheduler(lm, { tokenizer, maxBatch: 1, pipelineGreedy: false }).submit(request));

describe("BatchScheduler, pipelined greedy decoding in a random mix of requests", () => {
  it("gives every request its tokens alone, and frees every slot", async () => {
    using lm = await loadCausalLM(dir, { maxContext: MAX_CONTEXT });
    using reference = await loadCausalLM(dir, { maxContext: MAX_CONTEXT });
    let pipelined = 0;
    for (let seed = 1; seed <= 16; seed++) {
      const r = random(seed);
      const specs = Array.from({ length: 14 }, (_, i) => {
        const prompt = Array.from({ length: 1 + Math.floor(r() * 8) }, () => 3 + Math.floor(r() * 500));
        const kind = r();
        const base: BatchRequest = { prompt, maxTokens: r() < 0.1 ? 0 : 1 + Math.floor(r() * 45), stopTokenIds: [] }; // up to 53 positions: some reach the context's end
        const request: BatchRequest = kind < 0.15 ? { ...base, temperature: 0.8, seed: i } : kind < 0.25 ? { ...base, logprobs: 2 } : kind < 0.3 ? { ...base, promptLogprobs: 1 } : base;
        return { request, delay: Math.floor(r() * 6), stopAfter: r() < 0.15 ? 1 + Math.floor(r() * 6) : undefined, abortAfter: r() < 0.15 ? Math.floor(r() * 8) : undefined, stop: r() };
      });
      // Stop ids and stop strings that the requests meet, taken from their tokens alone.
      for (const s of specs) {
        if (s.request.maxTokens === 0 || s.stop > 0.4) continue;
        const { tokens } = await alone(reference, s.request);
        if (tokens.length < 2) continue;
        const text = tokens.map((t) => t.text).join("");
        const at = Math.floor(r() * tokens.length);
        if (s.stop < 0.2) s.request = { ...s.request, stopTokenIds: [tokens[at].id] };
        else if (text.length > 2) s.request = { ...s.request, stopStrings: [text.slice(at % (text.length - 2), (at % (text.length - 2)) + 2)] };
      }
      const expected: Run[] = [];
      for (const s of specs) expected.push(await alone(reference, s.request));
      const scheduler = new BatchScheduler(lm, { tokenizer, maxBatch: MAX_BATCH });
      const runs = await Promise.all(
        specs.map(
          (s) =>
            new Promise<Run>((resolve) =>
              setTimeout(() => {
                const abort = new AbortController();
                if (s.abortAfter !== undefined) setTimeout(() => abort.abort(), s.abortAfter);
                void read(scheduler.submit({ ...s.request, signal: abort.signal }), s.stopAfter).then(resolve);
              }, s.delay),
            ),
        ),
      );
      runs.forEach((run, i) => {
        const want = expected[i];
        const what = `seed ${seed}, request ${i}: ${JSON.stringify(specs[i])}`;
        expect(run.error, what).toBeUndefined();
        if (run.finish === "aborted" && specs[i].abortAfter !== undefined) expect(run.tokens, what).toEqual(want.tokens.slice(0, run.tokens.length));
        else if (specs[i].stopAfter !== undefined && specs[i].stopAfter! < want.tokens.length) expect(run.tokens, what).toEqual(want.tokens.slice(0, specs[i].stopAfter));
        else expect(run, what).toEqual(want);
      });
      await new Promise((resolve) => setTimeout(resolve, 2)); // the scheduler's last turn (a step in flight behind aborted sequences)
      expect(scheduler.active + scheduler.queued, `seed ${seed}`).toBe(0);
      for (let slot = 0; slot < MAX_BATCH; slot++) expect(lm.length(slot), `seed ${seed}, slot ${slot}`).toBe(0);
      pipelined += scheduler.stats.pipelinedSteps;
    }
    expect(pipelined).toBeGreaterThan(100);
  });
});
