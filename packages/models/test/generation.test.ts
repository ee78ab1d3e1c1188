import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mulberry32 } from "@df11/codec";
import { argmax, BatchScheduler, ContextLengthError, DEFAULT_SEED, generate, loadCausalLM, loadModel, Sampler, seedState, TextTokenizer, writeSyntheticModel } from "../src/index.js";

describe("sampling", () => {
  const logits = Float32Array.from([0.1, 2.5, 2.4, -1, 0.3]);
  it("greedy is argmax (first on ties), also with temperature 0", () => {
    expect(argmax(Float32Array.from([1, 3, 3, 2]))).toBe(1);
    expect(new Sampler().next(logits, [])).toBe(1);
    expect(new Sampler({ temperature: 0.7, topK: 1 }).next(logits, [])).toBe(1);
  });
  it("the same seed draws the same tokens, another seed differs", () => {
    const draw = (seed: number) => {
      const s = new Sampler({ temperature: 1.5, seed });
      return Array.from({ length: 50 }, () => s.next(logits, []));
    };
    expect(draw(7)).toEqual(draw(7));
    expect(draw(7)).not.toEqual(draw(8));
    expect(new Set(draw(7)).size).toBeGreaterThan(2);
  });
  it("seeds below 2^32 keep their streams; larger safe seeds get streams of their own; other seeds are refused", () => {
    const flat = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i)); // many candidates: a draw shows its uniform
    const draw = (seed: number) => {
      const s = new Sampler({ temperature: 1, seed });
      return Array.from({ length: 24 }, () => s.next(flat, []));
    };
    // The sampler's stream for a 32-bit seed is mulberry32(seed), as it has always been (reference outputs depend on it).
    const reference = (seed: number) => {
      const rand = mulberry32(seed);
      const probs = Array.from(flat, (v) => Math.exp(v - Math.max(...flat)));
      const order = probs.map((_, i) => i).sort((a, b) => probs[b] - probs[a] || a - b);
      const total = probs.reduce((a, b) => a + b, 0);
      return Array.from({ length: 24 }, () => {
        let u = rand() * total;
        for (const t of order) if ((u -= probs[t]) <= 0) return t;
        return order.at(-1);
      });
    };
    for (const seed of [0, 1, 7, DEFAULT_SEED, 2 ** 31, 2 ** 32 - 1]) {
      expect(seedState(seed)).toBe(seed);
      expect(draw(seed), `seed ${seed}`).toEqual(reference(seed));
    }
    // 2^32 used to sample as 0, 2^32 + 7 as 7, and so on: the high word now counts.
    const large = [2 ** 32, 2 ** 32 + 7, 2 ** 33, 2 ** 33 + 7, 2 ** 52, Number.MAX_SAFE_INTEGER];
    for (const seed of large) {
      expect(draw(seed), `seed ${seed}`).not.toEqual(draw(seed % 2 ** 32));
      expect(draw(seed)).toEqual(draw(seed)); // still a seed: same seed, same tokens
    }
    expect(new Set(large.map(seedState)).size).toBe(large.length);
    expect(new Set([0, 1, 2, 3, 2 ** 21 - 1].map((high) => seedState(high * 2 ** 32 + 5))).size).toBe(5);
    for (const seed of [-1, 0.5, 2 ** 53, Number.MAX_SAFE_INTEGER + 2, Number.NaN, Infinity]) {
      expect(() => new Sampler({ seed }), `seed ${seed}`).toThrow(/seed must be an integer in 0…9007199254740991/);
    }
  });
  it("top-p, min-p and top-k restrict the candidates", () => {
    const many = (opts: object) => {
      const s = new Sampler({ temperature: 1, seed: 1, ...opts });
      return new Set(Array.from({ length: 200 }, () => s.next(logits, [])));
    };
    expect(many({ topK: 2 })).toEqual(new Set([1, 2]));
    expect(many({ topP: 0.5 })).toEqual(new Set([1, 2]));
    expect(many({ minP: 0.5 })).toEqual(new Set([1, 2]));
  });
  it("the repetition penalty turns greedy away from seen tokens", () => {
    expect(new Sampler({ repetitionPenalty: 1.2 }).next(logits, [1])).toBe(2);
  });
  it("rejects invalid settings", () => {
    expect(() => new Sampler({ temperature: -1 })).toThrow(/temperature/);
    expect(() => new Sampler({ topP: 0 })).toThrow(/top-p/);
  });
});

describe("generation on a generated model with a tokenizer", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "df11-gen-"));
    await writeSyntheticModel(join(dir, "m"), { vocab: 512, hidden: 64, intermediate: 128, layers: 2, heads: 4, kvHeads: 2 }, { tokenizer: true, family: "qwen3", seed: 9 });
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("tokenizes, applies the chat template, streams text, and stops on stop strings", async () => {
    const tok = (await TextTokenizer.load(join(dir, "m")))!;
    const ids = tok.encode("the water is hot");
    expect(ids[0]).toBe(1); // <s> from the post-processor
    expect(tok.decode(ids)).toBe("the water is hot");
    expect(tok.applyChatTemplate([{ role: "user", content: "hi" }])).toBe("<|user|> hi <|assistant|>");
    using model = await loadCausalLM(join(dir, "m"));
    const pieces: string[] = [];
    const all: number[] = [];
    for await (const t of generate(model, ids, { maxTokens: 20, tokenizer: tok, stopTokenIds: [] })) {
      pieces.push(t.text);
      all.push(t.id);
    }
    expect(pieces.join("")).toBe(tok.decode(all));
    const stopAt = tok.decode(all.slice(0, 3)).trim().split(" ").pop()!;
    const stopped: number[] = [];
    let reason: string | undefined;
    for await (const t of generate(model, ids, { maxTokens: 20, tokenizer: tok, stopTokenIds: [], stopStrings: [stopAt] })) {
      stopped.push(t.id);
      reason = t.stop;
    }
    expect(reason).toBe("stop-string");
    expect(stopped.length).toBeLessThanOrEqual(3);
  });

  it("a prompt of exactly the context length is refused by generate(), the scheduler and Model alike (ContextLengthError naming both numbers); one token shorter generates to the context's end; maxTokens 0 reads a full one", async () => {
    using lm = await loadCausalLM(join(dir, "m"), { maxContext: 8 });
    const prompt = [1, 40, 41, 42, 43, 44, 45, 46];
    const message = "the prompt has 8 tokens and the context length is 8: to generate, a prompt may have at most 7 tokens";
    const read = async (p: number[], options: Parameters<typeof generate>[2] = {}) => {
      const out: Array<{ id: number; stop?: string }> = [];
      for await (const t of generate(lm, p, { stopTokenIds: [], ...options })) out.push(t);
      return out;
    };
    // generate() gave one token here (from the last position's logits) while the scheduler behind df11 serve refused it.
    await expect(read(prompt, { maxTokens: 4 })).rejects.toThrowError(new ContextLengthError(8, 8, true));
    await expect(read(prompt, { maxTokens: 4 })).rejects.toMatchObject({ name: "ContextLengthError", promptTokens: 8, contextLength: 8, message });
    await expect(read([...prompt, 47], { maxTokens: 0 })).rejects.toThrowError("the prompt has 9 tokens and the context length is 8: a prompt may have at most 8 tokens");
    expect(await read(prompt, { maxTokens: 0 })).toEqual([]); // only read (scored): it may fill the context
    const shorter = await read(prompt.slice(0, 7), { maxTokens: 4 });
    expect(shorter.map((t) => t.stop)).toEqual([undefined, "max-context"]); // the last token needs no position
    // continueSequence counts what the sequence holds already.
    lm.reset();
    lm.forward(prompt.slice(0, 6));
    await expect(read([47, 48], { maxTokens: 2, continueSequence: true })).rejects.toThrowError("the prompt has 2 tokens after the 6 the sequence holds and the context length is 8: to generate, a prompt may have at most 1 more token");
    expect(await read([47], { maxTokens: 1, continueSequence: true })).toHaveLength(1);
    using scheduler = new BatchScheduler(lm, { maxBatch: 1 });
    expect(() => scheduler.submit({ prompt, maxTokens: 4 })).toThrowError(message);
    expect(() => scheduler.submit({ prompt, maxTokens: 4 })).toThrowError(ContextLengthError);
    let scored = 0;
    for await (const t of scheduler.submit({ prompt, maxTokens: 0, promptLogprobs: 0 })) scored += t.id >= 0 ? 1 : 0;
    expect(scored).toBe(0);
    using model = await loadModel(join(dir, "m"), { device: "cpu", maxContext: 8 });
    expect(() => model.generate(prompt, { maxTokens: 4 })).toThrowError(message);
    expect((await model.generate(prompt.slice(0, 7), { maxTokens: 4, ignoreEos: true }).result()).finishReason).toBe("max-context");
  });

  it("KV-cached decoding gives the same logits as recomputing the whole sequence", async () => {
    using model = await loadCausalLM(join(dir, "m"));
    const seq = [1, 40, 41, 42, 43, 44, 45];
    const full = model.forward(seq, { allLogits: true });
    model.reset();
    model.forward(seq.slice(0, 4));
    let last = new Float32Array(0);
    for (const id of seq.slice(4)) last = model.forward([id]);
    const expected = full.subarray(full.length - 512);
    const diff = last.reduce((m, v, i) => Math.max(m, Math.abs(v - expected[i])), 0);
    expect(diff).toBeLessThan(1e-5);
  });
});
