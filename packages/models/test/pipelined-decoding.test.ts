// Pipelined greedy decoding: a decode step queued before the previous step's tokens are read, its input
// tokens taken on the backend (CausalLM.greedyAsync / stepGreedy; BatchScheduler.pipelineGreedy). The
// tokens and logits must be those of plain steps, bit for bit, whatever ends or joins in between.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { CausalLM, CpuBackend, Model, generate, loadCausalLM, writeSyntheticModel, type GeneratedToken } from "../src/index.js";

const bitsEqual = (a: Float32Array, b: Float32Array) => a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "df11-pipelined-"));
  await writeSyntheticModel(dir, { vocab: 64, hidden: 32, intermediate: 48, layers: 2, heads: 4, kvHeads: 2 });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const prompts = [
  [3, 14, 15, 9, 26],
  [5, 35, 8],
  [60, 2, 7, 1, 8, 2, 8],
];

/** Prefill every prompt in its slot; returns the prompts' greedy next tokens. */
function prefill(model: CausalLM): number[] {
  return prompts.map((p, slot) => model.forwardGreedy(p, slot));
}

describe("CausalLM.stepGreedy", () => {
  it("gives the logits and tokens of plain steps, taking the tokens on the backend (setStepFromArgmax)", async () => {
    using plain = await loadCausalLM(dir);
    using piped = await loadCausalLM(dir);
    let next = prefill(plain);
    expect(prefill(piped)).toEqual(next);
    const backend = piped.backend as CpuBackend;
    const fromArgmax = vi.spyOn(backend, "setStepFromArgmax");
    const setStep = vi.spyOn(backend, "setStep");
    // The pipelined model's first step starts from the host's tokens, the rest from the previous step's greedy tokens.
    let logits = piped.step(next.map((t, slot) => ({ slot, tokens: [t] })));
    let pending = piped.greedyAsync(logits);
    for (let i = 0; i < 6; i++) {
      const expected = plain.step(next.map((t, slot) => ({ slot, tokens: [t] })));
      expect(bitsEqual(piped.backend.read(logits), plain.backend.read(expected)), `step ${i}`).toBe(true);
      const tokens = plain.backend.argmax(expected);
      logits = piped.stepGreedy(pending); // queued before pending is read
      expect(pending.slots).toEqual([0, 1, 2]);
      expect([...pending.read()]).toEqual([...tokens]);
      pending = piped.greedyAsync(logits);
      next = [...tokens];
    }
    expect(fromArgmax).toHaveBeenCalledTimes(6);
    expect(fromArgmax.mock.results.every((r) => r.value === true)).toBe(true);
    expect(setStep.mock.calls.filter((c) => c[0].tokens.length === 3)).toHaveLength(7); // the first step, and the 6 set from argmax (inside setStepFromArgmax)
    // The pipelined model has queued one step more (the one `logits` holds).
    prompts.forEach((p, slot) => expect(piped.length(slot)).toBe(plain.length(slot) + 1));
  });

  it("falls back to the host's tokens when another argmax came between (same logits)", async () => {
    using plain = await loadCausalLM(dir);
    using piped = await loadCausalLM(dir);
    const next = prefill(plain);
    prefill(piped);
    const logits = piped.step(next.map((t, slot) => ({ slot, tokens: [t] })));
    const pending = piped.greedyAsync(logits);
    piped.backend.argmax(logits); // overwrites what the backend holds
    const fromArgmax = vi.spyOn(piped.backend as CpuBackend, "setStepFromArgmax");
    const after = piped.stepGreedy(pending);
    expect(fromArgmax.mock.results[0].value).toBe(false);
    const first = plain.step(next.map((t, slot) => ({ slot, tokens: [t] })));
    const tokens = [...plain.backend.argmax(first)];
    expect([...pending.read()]).toEqual(tokens);
    const expected = plain.step(tokens.map((t, slot) => ({ slot, tokens: [t] })));
    expect(bitsEqual(piped.backend.read(after), plain.backend.read(expected))).toBe(true);
  });

  it("takes only the latest step's logits, and refuses a step past maxContext", async () => {
    using model = await loadCausalLM(dir, { maxContext: 8 });
    prefill(model);
    const a = model.step([{ slot: 1, tokens: [4] }]);
    model.forward([5], { slot: 0 });
    expect(() => model.greedyAsync(a)).toThrowError(/latest step/);
    const b = model.step([{ slot: 2, tokens: [4] }]); // slot 2 now holds 8 = maxContext positions
    expect(() => model.stepGreedy(model.greedyAsync(b))).toThrowError(/sequence 2 would exceed maxContext 8/);
    expect(model.length(2)).toBe(8);
    expect(() => model.stepGreedy({ slots: [0], read: () => Int32Array.of(1) })).toThrowError(/what greedyAsync returned/);
  });
});

describe("BatchScheduler, pipelined greedy decoding", () => {
  /** Requests of every kind at once: greedy of different lengths, one sampled, one ending on a stop id, one aborted. */
  async function serve(pipelineGreedy: boolean) {
    const lm = await loadCausalLM(dir, { maxContext: 40 });
    const model = new Model("synthetic", dir, lm, undefined, { maxBatch: 6, pipelineGreedy });
    try {
      const abort = new AbortController();
      const runs = [
        model.generate(prompts[0], { maxTokens: 12, temperature: 0, ignoreEos: true }),
        model.generate(prompts[1], { maxTokens: 20, temperature: 0, ignoreEos: true }),
        model.generate(prompts[2], { maxTokens: 7, temperature: 0, ignoreEos: true }),
        model.generate(prompts[0], { maxTokens: 60, temperature: 0, ignoreEos: true }), // ends at the context's end (40 positions)
        model.generate(prompts[1], { maxTokens: 9, temperature: 0.9, seed: 7, ignoreEos: true }),
        model.generate(prompts[2], { maxTokens: 30, temperature: 0, ignoreEos: true, signal: abort.signal }),
      ];
      setTimeout(() => abort.abort(), 0);
      const results = await Promise.all(runs.map((r) => r.result().catch((e: unknown) => e)));
      // A late request joins while the others run.
      const late = await model.generate([9, 9, 9], { maxTokens: 10, temperature: 0, ignoreEos: true }).result();
      return { results, late, stats: { ...model.scheduler.stats } };
    } finally {
      model.dispose();
    }
  }

  it("streams the tokens of unpipelined decoding, with most decode steps pipelined", async () => {
    const off = await serve(false);
    const on = await serve(true);
    const ids = (r: unknown) => (r && typeof r === "object" && "tokenIds" in r ? (r as { tokenIds: number[] }).tokenIds : r);
    for (const i of [0, 1, 2, 3, 4]) expect(ids(on.results[i]), `request ${i}`).toEqual(ids(off.results[i]));
    expect(ids(on.late)).toEqual(ids(off.late));
    // The context's last position takes the last token in: 40 − 5 positions + the token its logits choose.
    expect((on.results[3] as { tokenIds: number[]; finishReason: string }).tokenIds.length).toBe(40 - prompts[0].length + 1);
    expect(off.stats.pipelinedSteps).toBe(0);
    expect(on.stats.pipelinedSteps).toBeGreaterThan(on.stats.steps / 2);
    expect(on.stats.tokens).toBeGreaterThan(0);
  });
});

describe("BatchScheduler, aborted requests", () => {
  it("ends a request whose signal was aborted before it was submitted, without running it", async () => {
    const lm = await loadCausalLM(dir);
    const model = new Model("synthetic", dir, lm, undefined, { maxBatch: 2 });
    try {
      const before = { ...model.scheduler.stats };
      const result = await model.generate(prompts[0], { maxTokens: 8, temperature: 0, ignoreEos: true, signal: AbortSignal.abort() }).result();
      expect(result.finishReason).toBe("aborted");
      expect(result.tokenIds).toEqual([]);
      expect(model.scheduler.stats.prefillSteps).toBe(before.prefillSteps);
      expect(model.scheduler.active + model.scheduler.queued).toBe(0);
      // The scheduler still serves.
      expect((await model.generate(prompts[1], { maxTokens: 3, temperature: 0, ignoreEos: true }).result()).tokenIds).toHaveLength(3);
    } finally {
      model.dispose();
    }
  });
});

describe("generate(), pipelined when greedy", () => {
  /** Greedy tokens one step at a time, as generate() made them before it was pipelined. */
  function stepwise(model: CausalLM, prompt: number[], n: number): number[] {
    const out = [model.forwardGreedy(prompt)];
    while (out.length < n) out.push(model.forwardGreedy([out[out.length - 1]]));
    return out;
  }

  it("yields the step-by-step tokens and leaves the KV cache as it did (the last token not fed), however it ends", async () => {
    using reference = await loadCausalLM(dir);
    const expected = stepwise(reference, prompts[2], 12);
    using model = await loadCausalLM(dir);
    const all: number[] = [];
    for await (const t of generate(model, prompts[2], { maxTokens: 12, stopTokenIds: [] })) all.push(t.id);
    expect(all).toEqual(expected);
    expect(model.length()).toBe(prompts[2].length + 11);
    // Stopped by an end-of-sequence id (not known before it comes): the step queued behind it is dropped.
    const eos = expected[4];
    const first = expected.indexOf(eos);
    const stopped: number[] = [];
    for await (const t of generate(model, prompts[2], { maxTokens: 12, stopTokenIds: [eos] })) stopped.push(t.id);
    expect(stopped).toEqual(expected.slice(0, first + 1));
    expect(model.length()).toBe(prompts[2].length + first);
    // The consumer stops asking: as if the next token had never been fed.
    const some: number[] = [];
    for await (const t of generate(model, prompts[2], { maxTokens: 12, stopTokenIds: [] })) {
      some.push(t.id);
      if (some.length === 3) break;
    }
    expect(some).toEqual(expected.slice(0, 3));
    expect(model.length()).toBe(prompts[2].length + 2);
    // …so a continued sequence gets the logits of one fed by hand.
    const more: number[] = [];
    for await (const t of generate(model, [some[2], 7, 8], { maxTokens: 4, stopTokenIds: [], continueSequence: true })) more.push(t.id);
    reference.reset();
    reference.forward(prompts[2]);
    reference.forward(some.slice(0, 2));
    expect(more).toEqual(stepwise(reference, [some[2], 7, 8], 4));
  });

  it("ends at the context's end as before", async () => {
    using model = await loadCausalLM(dir, { maxContext: 12 });
    const tokens: GeneratedToken[] = [];
    for await (const t of generate(model, prompts[0], { maxTokens: 40, stopTokenIds: [] })) tokens.push(t);
    using reference = await loadCausalLM(dir, { maxContext: 12 });
    expect(tokens.map((t) => t.id)).toEqual(stepwise(reference, prompts[0], 12 - prompts[0].length + 1));
    expect(tokens[tokens.length - 1].stop).toBe("max-context");
    expect(model.length()).toBe(12);
  });
});
