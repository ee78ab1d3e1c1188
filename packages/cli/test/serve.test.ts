// df11 serve through the official `openai` client on 127.0.0.1: chat and completions, streaming and
// not, stop strings, max_tokens, seeds, errors in OpenAI's shape, disconnects, concurrent clients.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, writeSyntheticModel, type Model } from "@df11/models";
import { serveModel, type RunningServer } from "../src/index.js";

const SHAPE = { vocab: 1024, hidden: 128, intermediate: 256, layers: 2, heads: 4, kvHeads: 2 };
const KEY = "test-key";
let work: string;
let model: Model;
let server: RunningServer;
let client: OpenAI;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "df11-serve-"));
  await writeSyntheticModel(join(work, "m"), SHAPE, { tokenizer: true, seed: 31 });
  model = await loadModel(join(work, "m"), { device: "cpu", slots: 16, maxContext: 256 });
  server = await serveModel(model, { port: 0, apiKey: KEY, modelId: "tiny" });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: KEY, maxRetries: 0 });
});
afterAll(async () => {
  await server?.close();
  model?.dispose();
  await rm(work, { recursive: true, force: true });
});

/** From now on, how many prompts each step of `m` that carried prompts prefilled (one entry per such step). */
function promptsPerStep(m: Model): number[] {
  const counts: number[] = [];
  const step = m.lm.step.bind(m.lm);
  m.lm.step = (sequences, options) => {
    if (sequences.some((q) => q.tokens.length > 1)) counts.push(sequences.length);
    return step(sequences, options);
  };
  return counts;
}

const user = (content: string) => [{ role: "user" as const, content }];
/** Non-standard extras the server accepts (vLLM's names). */
const extra = (o: object) => o as Record<string, never>;

describe("df11 serve (OpenAI API, CPU, tiny model)", () => {
  it("binds 127.0.0.1 and answers /health and /v1/models", async () => {
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const health = await (await fetch(`${server.url}/health`)).json();
    expect(health).toMatchObject({ status: "ok", model: "tiny", device: "cpu", weights: { format: "bf16", layout: "bf16" } });
    expect(health.weights.residentBytes).toBeGreaterThan(0);
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(["tiny"]);
  });

  it("chat: streamed and non-streamed greedy replies are the same text; usage counts tokens", async () => {
    const body = { model: "tiny", messages: user("the water is"), max_tokens: 12, temperature: 0, ...extra({ ignore_eos: true }) };
    const whole = await client.chat.completions.create(body);
    expect(whole.object).toBe("chat.completion");
    expect(whole.choices[0].message.role).toBe("assistant");
    expect(whole.choices[0].finish_reason).toBe("length");
    expect(whole.usage?.completion_tokens).toBe(12);
    expect(whole.usage?.prompt_tokens).toBeGreaterThan(3);
    expect(whole.usage?.total_tokens).toBe(whole.usage!.prompt_tokens + 12);
    let streamed = "";
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of await client.chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } })) {
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices) {
        streamed += c.delta.content ?? "";
        finish = c.finish_reason ?? finish;
      }
    }
    expect(streamed).toBe(whole.choices[0].message.content);
    expect(finish).toBe("length");
    expect(usage?.completion_tokens).toBe(12);
  });

  it("completions: text prompts and token-id prompts, streaming and not", async () => {
    const r = await client.completions.create({ model: "tiny", prompt: "the water is", max_tokens: 6, temperature: 0, ...extra({ ignore_eos: true }) });
    expect(r.object).toBe("text_completion");
    expect(r.usage?.completion_tokens).toBe(6);
    let text = "";
    for await (const c of await client.completions.create({ model: "tiny", prompt: "the water is", max_tokens: 6, temperature: 0, stream: true, ...extra({ ignore_eos: true }) })) text += c.choices[0]?.text ?? "";
    expect(text).toBe(r.choices[0].text);
    const ids = await client.completions.create({ model: "tiny", prompt: [1, 40, 41, 42], max_tokens: 4, temperature: 0, ...extra({ ignore_eos: true }) });
    expect(ids.usage?.prompt_tokens).toBe(4);
  });

  it("stop strings end the reply before the stop text (streamed too); max_tokens bounds it", async () => {
    const base = { model: "tiny", messages: user("the water is"), max_tokens: 24, temperature: 0, ...extra({ ignore_eos: true }) };
    const free = (await client.chat.completions.create(base)).choices[0].message.content!;
    const words = free.trim().split(/\s+/);
    expect(words.length).toBeGreaterThan(3);
    const stopWord = words[2];
    const stopped = await client.chat.completions.create({ ...base, stop: [stopWord] });
    const cut = free.slice(0, free.indexOf(stopWord));
    expect(stopped.choices[0].message.content).toBe(cut);
    expect(stopped.choices[0].finish_reason).toBe("stop");
    let streamed = "";
    for await (const c of await client.chat.completions.create({ ...base, stop: stopWord, stream: true })) streamed += c.choices[0]?.delta.content ?? "";
    expect(streamed).toBe(cut);
    const short = await client.chat.completions.create({ ...base, max_tokens: 3 });
    expect(short.usage?.completion_tokens).toBe(3);
  });

  it("seed: the same seed gives the same sampled text, another seed another", async () => {
    const body = { model: "tiny", messages: user("tell me"), max_tokens: 16, temperature: 1.2, top_p: 0.95, ...extra({ ignore_eos: true }) };
    const a = await client.chat.completions.create({ ...body, seed: 7 });
    const b = await client.chat.completions.create({ ...body, seed: 7 });
    const c = await client.chat.completions.create({ ...body, seed: 8 });
    expect(b.choices[0].message.content).toBe(a.choices[0].message.content);
    expect(c.choices[0].message.content).not.toBe(a.choices[0].message.content);
  });

  it("errors come in OpenAI's shape: 400 naming the field, 401, 404, 413", async () => {
    const call = (body: object) => client.chat.completions.create(body as never);
    await expect(call({ model: "tiny", messages: user("hi"), temperature: -1 })).rejects.toMatchObject({ status: 400, param: "temperature", message: expect.stringMatching(/temperature/) });
    await expect(call({ model: "tiny", messages: [] })).rejects.toMatchObject({ status: 400, param: "messages" });
    await expect(call({ model: "tiny", messages: user("hi"), max_tokens: 0 })).rejects.toMatchObject({ status: 400, param: "max_tokens" });
    await expect(call({ model: "tiny", messages: user("hi"), n: 0 })).rejects.toMatchObject({ status: 400, param: "n" });
    await expect(call({ model: "other", messages: user("hi") })).rejects.toMatchObject({ status: 404, code: "model_not_found" });
    // This word-level vocabulary has no "{": it cannot write JSON, and says so up front.
    await expect(call({ model: "tiny", messages: user("hi"), response_format: { type: "json_object" } })).rejects.toMatchObject({ status: 400, param: "response_format", message: expect.stringMatching(/no token of this model's vocabulary/) });
    const wrongKey = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "nope", maxRetries: 0 });
    await expect(wrongKey.models.list()).rejects.toMatchObject({ status: 401, code: "invalid_api_key" });
    const noKey = await fetch(`${server.url}/v1/models`);
    expect(noKey.status).toBe(401);
    expect((await noKey.json()).error.type).toBe("authentication_error");
    const huge = await fetch(`${server.url}/v1/completions`, { method: "POST", headers: { authorization: `Bearer ${KEY}` }, body: JSON.stringify({ model: "tiny", prompt: "x".repeat(2 << 20) }) });
    expect(huge.status).toBe(413);
    const notJson = await fetch(`${server.url}/v1/completions`, { method: "POST", headers: { authorization: `Bearer ${KEY}` }, body: "{nope" });
    expect(notJson.status).toBe(400);
    expect((await notJson.json()).error.message).toMatch(/not valid JSON/);
    const tooLong = await fetch(`${server.url}/v1/completions`, { method: "POST", headers: { authorization: `Bearer ${KEY}` }, body: JSON.stringify({ model: "tiny", prompt: Array.from({ length: 300 }, () => 5) }) });
    expect(tooLong.status).toBe(400);
    expect((await tooLong.json()).error).toMatchObject({ code: "context_length_exceeded", param: "prompt", message: "the prompt has 300 tokens and the context length is 256: to generate, a prompt may have at most 255 tokens" });
  });

  it("a client that disconnects mid-stream frees its slot at once; the server stays healthy", async () => {
    const controller = new AbortController();
    const stream = await client.chat.completions.create({ model: "tiny", messages: user("go on"), max_tokens: 200, temperature: 0, stream: true, ...extra({ ignore_eos: true }) }, { signal: controller.signal });
    let chunks = 0;
    try {
      for await (const _ of stream) if (++chunks === 3) controller.abort();
    } catch {
      // the aborted read may throw or just end
    }
    expect(chunks).toBe(3);
    let active = -1;
    for (let i = 0; i < 50 && active !== 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
      active = (await (await fetch(`${server.url}/health`)).json()).active;
    }
    expect(active).toBe(0);
    expect(model.scheduler.stats.tokens).toBeLessThan(10_000);
    const after = await client.chat.completions.create({ model: "tiny", messages: user("still there?"), max_tokens: 4 });
    expect(after.choices[0].message.content).toBeTypeOf("string");
  });

  it("n = 16 choices: no MaxListenersExceededWarning (one abort listener per request, not per choice), and a disconnect still ends every choice", async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on("warning", onWarning);
    try {
      const body = { model: "tiny", messages: user("go on"), n: 16, max_tokens: 240, temperature: 1, seed: 3, ...extra({ ignore_eos: true }) };
      const whole = await client.chat.completions.create({ ...body, max_tokens: 4 });
      expect(whole.choices).toHaveLength(16);
      const before = model.scheduler.stats.tokens;
      const controller = new AbortController();
      const stream = await client.chat.completions.create({ ...body, stream: true }, { signal: controller.signal });
      let chunks = 0;
      try {
        for await (const _ of stream) if (++chunks === 40) controller.abort();
      } catch {
        // the aborted read may throw or just end
      }
      let health = { active: -1, queued: -1 };
      for (let i = 0; i < 50 && (health.active !== 0 || health.queued !== 0); i++) {
        await new Promise((r) => setTimeout(r, 20));
        health = await (await fetch(`${server.url}/health`)).json();
      }
      expect(health).toMatchObject({ active: 0, queued: 0 });
      // Every choice stopped early: far fewer than the 16 × 240 tokens asked for.
      expect(model.scheduler.stats.tokens - before).toBeLessThan((16 * 240) / 2);
      await new Promise((r) => setTimeout(r, 50)); // warnings are emitted on a later tick
      expect(warnings.map((w) => `${w.name}: ${w.message}`).filter((w) => /MaxListeners|memory leak/.test(w))).toEqual([]);
    } finally {
      process.off("warning", onWarning);
    }
  });

  it("16 concurrent clients each get exactly what they get alone (greedy), and the server is healthy after", async () => {
    const prompts = Array.from({ length: 16 }, (_, i) => `the ${["water", "word", "sound", "time"][i % 4]} of ${i} is`);
    const ask = (p: string, n: number) => client.chat.completions.create({ model: "tiny", messages: user(p), max_tokens: n, temperature: 0, ...extra({ ignore_eos: true }) });
    const lengths = prompts.map((_, i) => 6 + (i % 5) * 3); // different lengths: requests leave the batch at different steps
    const alone: string[] = [];
    for (const [i, p] of prompts.entries()) alone.push((await ask(p, lengths[i])).choices[0].message.content!);
    const stepsBefore = model.scheduler.stats.steps;
    const together = await Promise.all(prompts.map((p, i) => ask(p, lengths[i])));
    expect(together.map((r) => r.choices[0].message.content)).toEqual(alone);
    // Batched: far fewer forward passes than tokens.
    const tokens = lengths.reduce((a, b) => a + b, 0);
    expect(model.scheduler.stats.steps - stepsBefore).toBeLessThan(tokens / 2);
    expect((await (await fetch(`${server.url}/health`)).json()).active).toBe(0);
  });

  it("shared prefill (df11 serve's default): prompts admitted together share steps, and on the CPU each still gets its solo tokens", async () => {
    const shared = await loadModel(join(work, "m"), { device: "cpu", slots: 16, maxContext: 256, sharedPrefill: true });
    try {
      const steps = promptsPerStep(shared);
      const prompts = Array.from({ length: 16 }, (_, i) => Array.from({ length: 3 + (i % 7) }, (_, j) => (i * 31 + j * 7 + 1) % 1000));
      const run = (p: number[]) => shared.generate(p, { maxTokens: 8, temperature: 0, ignoreEos: true }).result();
      // Submitted in one tick: admitted together, prefilled in shared steps.
      const together = await Promise.all(prompts.map(run));
      expect(steps.length).toBeGreaterThan(0);
      expect(Math.max(...steps)).toBe(prompts.length);
      // The CPU backend's products are row by row, so sharing a step changes no bits: the same tokens as alone.
      const alone = [];
      for (const p of prompts) alone.push((await run(p)).tokenIds);
      expect(together.map((r) => r.tokenIds)).toEqual(alone);
      expect(steps.reduce((a, b) => a + b, 0)).toBe(2 * prompts.length); // every prompt prefilled once per round
    } finally {
      shared.dispose();
    }
  });

  it("a burst of HTTP requests is prefilled in one or two shared steps with a gather window (prefillGatherMs); each request still gets its tokens", async () => {
    const gathered = await loadModel(join(work, "m"), { device: "cpu", slots: 16, maxContext: 256, sharedPrefill: true, prefillGatherMs: 200 });
    const server = await serveModel(gathered, { port: 0, modelId: "tiny" });
    try {
      const prompts = promptsPerStep(gathered);
      const ask = (i: number) =>
        fetch(`${server.url}/v1/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ model: "tiny", prompt: `request ${i} says`, max_tokens: 6, temperature: 0, ignore_eos: true }),
        }).then(async (r) => ({ status: r.status, body: await r.json() }));
      const before = gathered.scheduler.stats.prefillSteps;
      // 16 requests sent at once: each body is read and tokenized over several event-loop turns, and without
      // the window the first to arrive would be prefilled before the others are in.
      const results = await Promise.all(Array.from({ length: 16 }, (_, i) => ask(i)));
      expect(results.every((r) => r.status === 200 && r.body.usage.completion_tokens === 6)).toBe(true);
      // One step here (without the window: 13–16 steps of one or two prompts). The window ends early only
      // after 1 ms and GATHER_QUIET_TURNS event-loop turns without a new request, so a turn stretched by a
      // loaded host does not end it (next test); ≤ 2 leaves room for a burst that really pauses.
      expect(gathered.scheduler.stats.prefillSteps - before).toBeLessThanOrEqual(2);
      expect(prompts.reduce((a, b) => a + b, 0)).toBe(16);
      expect(Math.max(...prompts)).toBeGreaterThanOrEqual(8);
      // The same text as each request alone (the CPU's products are row by row: sharing changes no bits).
      const alone = await ask(3);
      expect(alone.body.choices[0].text).toBe(results[3].body.choices[0].text);
    } finally {
      await server.close();
      gathered.dispose();
    }
  });

  it("the gather window outlasts a stalled event-loop turn (a loaded host), yet a lone request still waits only for quiet", async () => {
    const gathered = await loadModel(join(work, "m"), { device: "cpu", slots: 16, maxContext: 256, sharedPrefill: true, prefillGatherMs: 200 });
    try {
      const steps = promptsPerStep(gathered);
      const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
      const run = (i: number) => gathered.generate([1 + i, 2 + i, 3 + i], { maxTokens: 2, temperature: 0, ignoreEos: true }).result();
      const results = [run(0)];
      await turn(); // the scheduler's loop is in its gather window now
      // A turn in which the process does nothing for 5 ms (as when a loaded host deschedules it) and no
      // request arrives: more than 1 ms passes without one, but the process had no chance to read any.
      const t = performance.now();
      while (performance.now() - t < 5);
      await turn();
      // The rest of the burst, a request a turn: all 16 share the first prefill step.
      for (let i = 1; i < 16; i++) {
        results.push(run(i));
        await turn();
      }
      await Promise.all(results);
      expect(steps).toEqual([16]);
      // Quiet still ends the window long before its 200 ms: a lone request is prefilled after ~1 ms.
      const t0 = performance.now();
      await run(20);
      expect(performance.now() - t0).toBeLessThan(150);
      expect(steps).toEqual([16, 1]);
    } finally {
      gathered.dispose();
    }
  });

  it("return_token_ids (vLLM's): token ids beside the text — completions (echo too) and chat, streamed and not", async () => {
    type WithIds = { token_ids?: number[]; prompt_token_ids?: number[] };
    const greedy = { max_tokens: 5, temperature: 0, ...extra({ ignore_eos: true }) };
    const expected = (await model.generate("the water is", { maxTokens: 5, temperature: 0, ignoreEos: true }).result()).tokenIds;
    const promptIds = model.promptIds("the water is");
    const plain = await client.completions.create({ model: "tiny", prompt: "the water is", ...greedy });
    expect(plain.choices[0]).not.toHaveProperty("token_ids"); // only when asked for
    const body = { model: "tiny", prompt: "the water is", ...greedy, ...extra({ return_token_ids: true }) };
    const whole = (await client.completions.create(body)).choices[0] as OpenAI.CompletionChoice & WithIds;
    expect(whole).toMatchObject({ text: plain.choices[0].text, prompt_token_ids: promptIds, token_ids: expected });
    const echoed = (await client.completions.create({ ...body, echo: true })).choices[0] as OpenAI.CompletionChoice & WithIds;
    expect(echoed.token_ids).toEqual([...promptIds, ...expected]);
    const chunks: Array<OpenAI.CompletionChoice & WithIds> = [];
    for await (const chunk of await client.completions.create({ ...body, stream: true })) chunks.push(...(chunk.choices as Array<OpenAI.CompletionChoice & WithIds>));
    expect(chunks[0].prompt_token_ids).toEqual(promptIds);
    expect(chunks.flatMap((c) => c.token_ids ?? [])).toEqual(expected);

    // Chat: the prompt's ids (chat template applied) on the response, as vLLM puts them.
    const chatBody = { model: "tiny", messages: user("the water is"), ...greedy, ...extra({ return_token_ids: true }) };
    const chat = (await client.chat.completions.create(chatBody)) as OpenAI.ChatCompletion & WithIds;
    expect(chat.prompt_token_ids).toEqual(model.promptIds(user("the water is")));
    expect(chat.prompt_token_ids).toHaveLength(chat.usage!.prompt_tokens);
    const chatIds = (chat.choices[0] as OpenAI.ChatCompletion.Choice & WithIds).token_ids;
    expect(chatIds).toHaveLength(5);
    const chatChunks: Array<OpenAI.ChatCompletionChunk & WithIds> = [];
    for await (const chunk of await client.chat.completions.create({ ...chatBody, stream: true })) chatChunks.push(chunk as OpenAI.ChatCompletionChunk & WithIds);
    expect(chatChunks[0].prompt_token_ids).toEqual(chat.prompt_token_ids);
    expect(chatChunks.flatMap((c) => c.choices.flatMap((x) => (x as WithIds).token_ids ?? []))).toEqual(chatIds);
  });

  it("a model without a tokenizer: token-id prompts answer with the generated token ids (streamed too); text prompts, chat and stop strings get a 400 naming the missing tokenizer", async () => {
    await writeSyntheticModel(join(work, "bare"), SHAPE, { seed: 32 });
    const bare = await loadModel(join(work, "bare"), { device: "cpu", slots: 4, maxContext: 256 });
    const served = await serveModel(bare, { port: 0, modelId: "bare" });
    try {
      type WithIds = OpenAI.CompletionChoice & { token_ids?: number[]; prompt_token_ids?: number[] };
      const c = new OpenAI({ baseURL: `${served.url}/v1`, apiKey: "none", maxRetries: 0 });
      const prompt = [5, 17, 42, 99];
      const expected = (await bare.generate(prompt, { maxTokens: 6, temperature: 0, ignoreEos: true }).result()).tokenIds;
      const body = { model: "bare", prompt, max_tokens: 6, temperature: 0, ...extra({ ignore_eos: true }) };
      const whole = await c.completions.create(body);
      expect(whole.choices[0] as WithIds).toMatchObject({ text: "", finish_reason: "length", prompt_token_ids: prompt, token_ids: expected });
      expect(whole.usage?.completion_tokens).toBe(6);
      // Streamed: the prompt's ids on the choice's first chunk, then the ids each chunk adds.
      const chunks: WithIds[] = [];
      for await (const chunk of await c.completions.create({ ...body, stream: true })) chunks.push(...(chunk.choices as WithIds[]));
      expect(chunks[0].prompt_token_ids).toEqual(prompt);
      expect(chunks.flatMap((x) => x.token_ids ?? [])).toEqual(expected);
      // Log-probabilities name tokens by id; the text they index is "", so every text_offset is 0 (not the names' lengths).
      const names = [...prompt, ...expected].map((id) => `token_id:${id}`);
      const scored = (await c.completions.create({ ...body, echo: true, logprobs: 1 })).choices[0];
      expect(scored.text).toBe("");
      expect(scored.logprobs).toMatchObject({ tokens: names, text_offset: names.map(() => 0) });
      const offsets: number[] = [];
      for await (const chunk of await c.completions.create({ ...body, echo: true, logprobs: 1, stream: true })) offsets.push(...(chunk.choices[0]?.logprobs?.text_offset ?? []));
      expect(offsets).toEqual(names.map(() => 0));
      // What needs a tokenizer is refused, naming it.
      const refusals: Array<[() => Promise<unknown>, string]> = [
        [() => c.completions.create({ model: "bare", prompt: "hello", max_tokens: 4 }), "prompt"],
        [() => c.completions.create({ model: "bare", prompt: [prompt, "hello"] as unknown as number[][], max_tokens: 4 }), "prompt"],
        [() => c.chat.completions.create({ model: "bare", messages: user("hello"), max_tokens: 4 }), "messages"],
        [() => c.completions.create({ ...body, stop: ["x"] }), "stop"],
      ];
      for (const [call, param] of refusals) {
        await expect(call()).rejects.toMatchObject({ status: 400, code: "no_tokenizer", param, message: expect.stringMatching(/the model `bare` has no tokenizer \(no tokenizer\.json\)/) });
      }
      expect(bare.scheduler.stats.requests).toBe(5); // the refused requests started nothing
    } finally {
      await served.close();
      bare.dispose();
    }
  });

  it("answers 503 when the queue is full", async () => {
    const small = await loadModel(join(work, "m"), { device: "cpu", slots: 1, maxQueue: 1, maxContext: 256 });
    const busy = await serveModel(small, { port: 0, modelId: "tiny" });
    try {
      const c = new OpenAI({ baseURL: `${busy.url}/v1`, apiKey: "none", maxRetries: 0 });
      const results = await Promise.allSettled(Array.from({ length: 6 }, () => c.chat.completions.create({ model: "tiny", messages: user("hi"), max_tokens: 30, ...extra({ ignore_eos: true }) })));
      const refused = results.filter((r) => r.status === "rejected");
      expect(refused.length).toBeGreaterThan(0);
      for (const r of refused) expect((r as PromiseRejectedResult).reason).toMatchObject({ status: 503, code: "queue_full" });
      expect(results.some((r) => r.status === "fulfilled")).toBe(true);
    } finally {
      await busy.close();
      small.dispose();
    }
  });
});
