// Every OpenAI chat-completions and completions parameter through `df11 serve` and the official `openai`
// client: honoured where the engine can (a test each), or refused with a 400 naming it — never silently
// ignored. Tiny scripted models (test-support/scripted-model.ts) make the expected output and
// log-probabilities known in advance.
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, type Model } from "@df11/models";
import {
  chatTemplatesRoot,
  CHATML_TOOLS_TEMPLATE,
  LLAMA3_TOOLS_TEMPLATE,
  STRICT_TEMPLATE,
  TEMPLATE_SPECIALS,
  uniqueTokens,
  writeScriptedModel,
  type ScriptedModel,
  type ScriptedModelSpec,
  type Tok,
  AFE,
  bytesTok,
} from "../../../test-support/scripted-model.js";
import { serveModel, type RunningServer } from "../src/index.js";

const IM_END = 258;
const user = (content: string) => [{ role: "user" as const, content }];
/** Parameters the openai client's types do not know (vLLM's, or ones we test refusals of). */
const extra = (o: object) => o as Record<string, never>;

let work: string;
const running: Array<{ server: RunningServer; model: Model }> = [];
beforeAll(async () => {
  work = process.env.DBG_DIR ?? (await mkdtemp(join(tmpdir(), "df11-openai-")));
});
afterAll(async () => {
  for (const r of running) {
    await r.server.close();
    r.model.dispose();
  }
  await rm(work, { recursive: true, force: true });
});

/** Write a scripted model (ChatML template, <|im_end|> ends it unless the spec says otherwise), serve it, and return a client. */
async function served(name: string, spec: Partial<ScriptedModelSpec> & { script: Tok[] }): Promise<{ client: OpenAI; scripted: ScriptedModel; model: Model }> {
  const scripted = await writeScriptedModel(join(work, name), {
    special: TEMPLATE_SPECIALS,
    ...spec,
    config: { eos_token_id: IM_END, max_position_embeddings: 4096, ...spec.config },
    tokenizerConfig: { eos_token: "<|im_end|>", bos_token: "<|begin_of_text|>", chat_template: CHATML_TOOLS_TEMPLATE, ...spec.tokenizerConfig },
  });
  const model = await loadModel(scripted.dir, { device: "cpu", slots: 8, maxContext: 4096 });
  const server = await serveModel(model, { port: 0, modelId: "m" });
  running.push({ server, model });
  return { client: new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "none", maxRetries: 0 }), scripted, model };
}

describe("log-probabilities", () => {
  let client: OpenAI;
  let s: ScriptedModel;
  /** log-softmax of the scripted logits: `logit` at one token, 0 at the other V-1. */
  const lp = (logit: number, of = logit) => of - Math.log(Math.exp(logit) + s.vocabSize - 1);
  beforeAll(async () => {
    ({ client, scripted: s } = await served("logprobs", { script: [...AFE, "<|im_end|>"] }));
  });

  it("chat logprobs + top_logprobs: each token's log-probability (the model's own), its bytes, and the top alternatives — streamed the same", async () => {
    const r = await client.chat.completions.create({ model: "m", messages: user("hi"), temperature: 0, logprobs: true, top_logprobs: 2 });
    const content = r.choices[0].logprobs!.content!;
    expect(r.choices[0].message.content).toBe("afé 😀");
    expect(content).toHaveLength(AFE.length); // the end-of-sequence token that stopped it is not part of the reply
    expect(content[0].logprob).toBeCloseTo(lp(4), 5); // the first token follows the prompt's (logit 4)
    for (const t of content.slice(1)) expect(t.logprob).toBeCloseTo(lp(8), 5);
    expect(content.map((t) => t.bytes).flat()).toEqual([...new TextEncoder().encode("afé 😀")]);
    expect(Buffer.from(content.flatMap((t) => t.bytes!)).toString("utf8")).toBe("afé 😀");
    expect(content[2].token).toBe("\uFFFD"); // half an é: its bytes say what it is
    expect(content[1].top_logprobs.map((t) => t.token)).toEqual(["f", "!"]); // then the lowest id of the rest (all 0)
    expect(content[1].top_logprobs[1].logprob).toBeCloseTo(lp(8, 0), 5);
    const streamed: typeof content = [];
    for await (const c of await client.chat.completions.create({ model: "m", messages: user("hi"), temperature: 0, logprobs: true, top_logprobs: 2, stream: true })) {
      streamed.push(...(c.choices[0]?.logprobs?.content ?? []));
    }
    expect(streamed).toEqual(content);
    const none = await client.chat.completions.create({ model: "m", messages: user("hi"), temperature: 0 });
    expect(none.choices[0].logprobs).toBeNull();
    await expect(client.chat.completions.create({ model: "m", messages: user("hi"), top_logprobs: 2 })).rejects.toMatchObject({ status: 400, param: "top_logprobs" });
    await expect(client.chat.completions.create({ model: "m", messages: user("hi"), logprobs: true, top_logprobs: 21 })).rejects.toMatchObject({ status: 400, param: "top_logprobs" });
  });

  it("completions echo + logprobs + max_tokens 0 scores prompts as evaluation harnesses do (a batch of token-id prompts); max_tokens 1 adds the next token", async () => {
    const ids = (toks: Tok[]) => toks.map((t) => s.idOf(t));
    const following = ids(AFE.slice(0, 4)); // each token is the one the model expects after the one before
    const surprising = ids(["a", "Z", "f"]);
    const r = await client.completions.create({ model: "m", prompt: [following, surprising], max_tokens: 0, echo: true, logprobs: 1, temperature: 0 });
    expect(r.choices.map((c) => c.index)).toEqual([0, 1]);
    expect(r.usage).toMatchObject({ prompt_tokens: 7, completion_tokens: 0 });
    const [one, two] = r.choices.map((c) => c.logprobs!);
    expect(r.choices[0]).toMatchObject({ text: "afé", finish_reason: "length" });
    expect(one.tokens).toEqual(["a", "f", "\uFFFD", "\uFFFD"]);
    expect(one.token_logprobs![0]).toBeNull();
    expect(one.top_logprobs![0]).toBeNull();
    for (const v of one.token_logprobs!.slice(1)) expect(v).toBeCloseTo(lp(8), 5);
    expect(one.text_offset).toEqual([0, 1, 2, 2]); // é's two bytes both start at é (the text is "afé")
    expect(two.token_logprobs![1]).toBeCloseTo(lp(8, 0), 5); // "Z" after "a" is not what the model expects
    expect(two.token_logprobs![2]).toBeCloseTo(lp(4, 0), 5); // "Z" has no successor of its own: the script's start ("a") gets 4, "f" 0
    // lm-eval's is_greedy: the top alternative is the token itself when the model expects it.
    expect(Object.keys(one.top_logprobs![1]!)).toContain("f");
    expect(Object.entries(two.top_logprobs![1]!).sort((x, y) => y[1] - x[1])[0][0]).toBe("f");
    const next = await client.completions.create({ model: "m", prompt: [following], max_tokens: 1, echo: true, logprobs: 0, temperature: 0 });
    expect(next.choices[0].text).toBe("afé ");
    expect(next.choices[0].logprobs!.tokens).toEqual(["a", "f", "\uFFFD", "\uFFFD", " "]);
    expect(next.choices[0].logprobs!.token_logprobs![4]).toBeCloseTo(lp(8), 5);
    expect(next.choices[0].logprobs!.text_offset).toEqual([0, 1, 2, 2, 3]); // " " follows "afé" at 3, not 4
    expect(next.usage?.completion_tokens).toBe(1);
    const plain = await client.completions.create({ model: "m", prompt: "hi", max_tokens: 2, echo: true, temperature: 0 });
    expect(plain.choices[0].text).toBe("hiaf");
    expect(plain.choices[0].logprobs).toBeNull();
  });
});

describe("completions text_offset: where each token's text starts, in characters (code points)", () => {
  // "aé😀!" as byte-level pieces a | C3 | A9 F0 | 9F 98 | 80 21: a piece that completes é also starts 😀, and the one
  // that completes 😀 also writes "!". Each starts at the character its first byte belongs to.
  const SPAN: Tok[] = ["a", bytesTok(0xc3), bytesTok(0xa9, 0xf0), bytesTok(0x9f, 0x98), bytesTok(0x80, 0x21)];
  let client: OpenAI;
  let s: ScriptedModel;
  beforeAll(async () => {
    ({ client, scripted: s } = await served("offsets", { script: [...SPAN, "<|im_end|>"] }));
  });

  it("generated (streamed and not) and echoed (a prompt of the same pieces): [0, 1, 1, 2, 2], after the echoed text's characters", async () => {
    const body = { model: "m", prompt: "hi", max_tokens: 10, logprobs: 0, temperature: 0 } as const;
    const r = await client.completions.create(body);
    expect(r.choices[0].text).toBe("aé😀!");
    expect(r.choices[0].logprobs!.text_offset).toEqual([0, 1, 1, 2, 2]);
    const streamed: number[] = [];
    for await (const c of await client.completions.create({ ...body, stream: true })) streamed.push(...(c.choices[0]?.logprobs?.text_offset ?? []));
    expect(streamed).toEqual([0, 1, 1, 2, 2]);
    // Echoed: the prompt "aé😀!x" as the same pieces and "x", then the reply from its 5 characters on (6 UTF-16 units).
    const echoed = await client.completions.create({ ...body, prompt: [...SPAN, "x"].map((t) => s.idOf(t)), echo: true });
    expect(echoed.choices[0].text).toBe("aé😀!xaé😀!");
    expect(echoed.choices[0].logprobs!.text_offset).toEqual([0, 1, 1, 2, 2, 4, 5, 6, 6, 7, 7]);
  });

  it("a byte that starts a character the next token does not continue is a U+FFFD of its own: the next token starts after it (\"a\\uFFFDb\": 0, 1, 2), generated and echoed", async () => {
    const broken = await served("offsets-broken", { script: ["a", bytesTok(0xc3), "b", "<|im_end|>"] });
    const body = { model: "m", prompt: "hi", max_tokens: 10, logprobs: 0, temperature: 0 } as const;
    const r = await broken.client.completions.create(body);
    expect(r.choices[0].text).toBe("a\uFFFDb");
    expect(r.choices[0].logprobs!.text_offset).toEqual([0, 1, 2]);
    const streamed: number[] = [];
    for await (const c of await broken.client.completions.create({ ...body, stream: true })) streamed.push(...(c.choices[0]?.logprobs?.text_offset ?? []));
    expect(streamed).toEqual([0, 1, 2]);
    const echoed = await broken.client.completions.create({ ...body, prompt: [bytesTok(0xc3), "x"].map((t) => broken.scripted.idOf(t)), max_tokens: 1, echo: true });
    expect(echoed.choices[0].text).toBe("\uFFFDxa");
    expect(echoed.choices[0].logprobs!.text_offset).toEqual([0, 1, 2]);
  });

  it("an echoed prompt's special tokens are part of its text (ids, or written in a text prompt): \"a<|im_end|>x\" is [0, 1, 11], not [0, 1, 1]; a BOS the tokenizer adds to a text prompt has no text", async () => {
    const body = { model: "m", max_tokens: 1, logprobs: 0, temperature: 0, echo: true } as const;
    for (const prompt of [["a", "<|im_end|>", "x"].map((t) => s.idOf(t)), "a<|im_end|>x"]) {
      const r = await client.completions.create({ ...body, prompt });
      expect(r.choices[0].text).toBe("a<|im_end|>xa");
      expect(r.choices[0].logprobs!.text_offset).toEqual([0, 1, 11, 12]);
      const streamed: number[] = [];
      for await (const c of await client.completions.create({ ...body, prompt, stream: true })) streamed.push(...(c.choices[0]?.logprobs?.text_offset ?? []));
      expect(streamed).toEqual([0, 1, 11, 12]);
    }
    // A tokenizer that starts every text prompt with <|begin_of_text|> (Llama's post-processor): that token is not in the echoed text.
    const bos = await served("offsets-bos", { script: [...SPAN, "<|im_end|>"] });
    const file = join(bos.scripted.dir, "tokenizer.json");
    const tokenizer = JSON.parse(readFileSync(file, "utf8"));
    const id = bos.scripted.idOf("<|begin_of_text|>");
    tokenizer.post_processor = { type: "TemplateProcessing", single: [{ SpecialToken: { id: "<|begin_of_text|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }], pair: [{ Sequence: { id: "A", type_id: 0 } }], special_tokens: { "<|begin_of_text|>": { id: "<|begin_of_text|>", ids: [id], tokens: ["<|begin_of_text|>"] } } };
    await writeFile(file, JSON.stringify(tokenizer));
    const model = await loadModel(bos.scripted.dir, { device: "cpu", slots: 2, maxContext: 64 });
    const server = await serveModel(model, { port: 0, modelId: "m" });
    running.push({ server, model });
    const withBos = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "none", maxRetries: 0 });
    const r = await withBos.completions.create({ ...body, prompt: "a<|im_end|>x", ...extra({ return_token_ids: true }) });
    expect((r.choices[0] as unknown as { token_ids: number[] }).token_ids[0]).toBe(id);
    expect(r.choices[0].text).toBe("a<|im_end|>xa");
    expect(r.choices[0].logprobs!.text_offset).toEqual([0, 0, 1, 11, 12]);
  });
});

describe("n, seed, best_of", () => {
  let client: OpenAI;
  beforeAll(async () => {
    ({ client } = await served("branch", {
      script: ["A", "<|im_end|>"],
      transitions: ["A", "B", "C", "D"].map((to, i) => ({ from: "?", to, logit: 3 - i / 8 })).concat(["B", "C", "D"].map((from) => ({ from, to: "<|im_end|>", logit: 8 }))),
    }));
  });

  it("n choices are choice i seeded with seed + i, streamed and not; without a seed each draws its own", async () => {
    const body = { model: "m", prompt: "?", max_tokens: 3, temperature: 1, top_k: 4, ...extra({}) } as const;
    const many = await client.completions.create({ ...body, n: 6, seed: 11 });
    expect(many.choices.map((c) => c.index)).toEqual([0, 1, 2, 3, 4, 5]);
    const alone = await Promise.all([0, 1, 2, 3, 4, 5].map(async (i) => (await client.completions.create({ ...body, seed: 11 + i })).choices[0].text));
    expect(many.choices.map((c) => c.text)).toEqual(alone);
    expect(new Set(alone).size).toBeGreaterThan(1);
    const streamed = ["", "", "", "", "", ""];
    for await (const c of await client.completions.create({ ...body, n: 6, seed: 11, stream: true })) for (const ch of c.choices) streamed[ch.index] += ch.text;
    expect(streamed).toEqual(alone);
    const chat = await client.chat.completions.create({ model: "m", messages: user("?"), n: 3, seed: 2, temperature: 1, top_k: 4, ...extra({}) } as never);
    expect((chat as OpenAI.ChatCompletion).choices).toHaveLength(3);
    const unseeded = new Set<string>();
    for (let i = 0; i < 4; i++) for (const c of (await client.completions.create({ ...body, n: 4 })).choices) unseeded.add(c.text);
    expect(unseeded.size).toBeGreaterThan(1);
  });

  it("seed: any integer in 0…2^53 − 1 (choice i's seed + i too); 2^32 no longer samples as 0; others are a 400 naming seed", async () => {
    const body = { model: "m", prompt: "?", max_tokens: 3, temperature: 1, top_k: 4, n: 8 } as const;
    const texts = async (seed: number) => (await client.completions.create({ ...body, seed })).choices.map((c) => c.text);
    // Before, a seed was taken mod 2^32: these 8 choices (seeds 2^32 … 2^32 + 7) were seeds 0 … 7's.
    expect(await texts(2 ** 32)).not.toEqual(await texts(0));
    expect(await texts(2 ** 32)).toEqual(await texts(2 ** 32));
    expect(await texts(Number.MAX_SAFE_INTEGER - 7)).toHaveLength(8);
    const refused: Array<[number, number, RegExp]> = [
      [-1, 1, /seed: expected an integer in 0…9007199254740991 \(2\^53 − 1\), got -1/],
      [2 ** 53, 1, /seed: expected an integer in 0…9007199254740991/],
      [1e20, 1, /seed: expected an integer in 0…9007199254740991/],
      [Number.MAX_SAFE_INTEGER, 2, /seed: expected an integer in 0…9007199254740990 \(choice j samples with seed \+ j, at most 2\^53 − 1\)/],
    ];
    for (const [seed, n, message] of refused) {
      await expect(client.completions.create({ ...body, n, seed }), String(seed)).rejects.toMatchObject({ status: 400, param: "seed", code: "invalid_value", type: "invalid_request_error", message: expect.stringMatching(message) });
      await expect(client.chat.completions.create({ model: "m", messages: user("?"), n, seed }), String(seed)).rejects.toMatchObject({ status: 400, param: "seed" });
    }
  });

  it("best_of: the candidate of highest log-probability among best_of (not streamable)", async () => {
    const body = { model: "m", prompt: "?", max_tokens: 3, temperature: 1, top_k: 4, logprobs: 0 } as const;
    const candidates = await Promise.all([0, 1, 2, 3].map((i) => client.completions.create({ ...body, seed: 40 + i })));
    const total = (c: OpenAI.Completion) => c.choices[0].logprobs!.token_logprobs!.reduce((a: number, v) => a + (v ?? 0), 0);
    const best = [...candidates].sort((x, y) => total(y) - total(x))[0].choices[0].text;
    expect(new Set(candidates.map((c) => c.choices[0].text)).size).toBeGreaterThan(1);
    const r = await client.completions.create({ ...body, seed: 40, best_of: 4, logprobs: undefined });
    expect(r.choices).toHaveLength(1);
    expect(r.choices[0].text).toBe(best);
    expect(r.choices[0].logprobs).toBeNull();
    expect(r.usage?.completion_tokens).toBe(candidates.reduce((n, c) => n + c.usage!.completion_tokens, 0));
    await expect(client.completions.create({ ...body, best_of: 2, stream: true })).rejects.toMatchObject({ status: 400, param: "best_of" });
    await expect(client.completions.create({ ...body, best_of: 1, n: 2 })).rejects.toMatchObject({ status: 400, param: "best_of" });
  });

  it("temperature, top_p, top_k, min_p, repetition_penalty, ignore_eos, max_tokens / max_completion_tokens", async () => {
    const text = async (o: object) => (await client.completions.create({ model: "m", prompt: "?", max_tokens: 3, seed: 1, ...o } as never)).choices[0].text;
    expect(await text({ temperature: 0 })).toBe("A");
    // The filters leave only A however the draw goes.
    for (const seed of [1, 2, 3, 4]) {
      expect(await text({ temperature: 1, top_p: 0.01, seed })).toBe("A");
      expect(await text({ temperature: 1, ...extra({ top_k: 1 }), seed })).toBe("A");
      expect(await text({ temperature: 1, ...extra({ min_p: 0.99 }), seed })).toBe("A");
    }
    expect(await text({ temperature: 0, prompt: "A?", ...extra({ repetition_penalty: 1.5 }) })).toBe("B");
    const long = await client.completions.create({ model: "m", prompt: "?", max_tokens: 5, temperature: 0, ...extra({ ignore_eos: true }) });
    expect(long.choices[0].finish_reason).toBe("length");
    expect(long.usage?.completion_tokens).toBe(5);
    const capped = await client.chat.completions.create({ model: "m", messages: user("?"), max_completion_tokens: 1, temperature: 0, ...extra({ ignore_eos: true }) });
    expect(capped.usage?.completion_tokens).toBe(1);
    expect(capped.choices[0].finish_reason).toBe("length");
  });
});

describe("penalties and logit_bias", () => {
  let client: OpenAI;
  let s: ScriptedModel;
  beforeAll(async () => {
    // After A: A (3) or B (2.5); B ends the answer.
    ({ client, scripted: s } = await served("penalties", {
      script: ["A"],
      transitions: [
        { from: "A", to: "A", logit: 3 },
        { from: "A", to: "B", logit: 2.5 },
        { from: "B", to: "<|im_end|>", logit: 8 },
      ],
    }));
  });
  const reply = async (o: object) => (await client.chat.completions.create({ model: "m", messages: user("go"), max_tokens: 8, temperature: 0, ...o } as never)).choices[0].message.content;

  it("presence_penalty and frequency_penalty count the reply's tokens, as OpenAI defines them", async () => {
    expect(await reply({})).toBe("AAAAAAAA");
    expect(await reply({ presence_penalty: 1 })).toBe("AB"); // 3 - 1 < 2.5 once A is there
    expect(await reply({ frequency_penalty: 0.2 })).toBe("AAAB"); // 3 - 3 × 0.2 < 2.5
    expect(await reply({ presence_penalty: -1 })).toBe("AAAAAAAA");
    await expect(reply({ presence_penalty: 2.5 })).rejects.toMatchObject({ status: 400, param: "presence_penalty" });
  });

  it("logit_bias shifts (or bans) tokens by id", async () => {
    expect(await reply({ logit_bias: { [s.idOf("B")]: 1 } })).toBe("AB"); // after A: 2.5 + 1 > 3
    expect(await reply({ logit_bias: { [s.idOf("B")]: 10 } })).toBe("BBBBBBBB"); // and B now beats the end too
    expect(await reply({ logit_bias: { [s.idOf("A")]: -100 } })).not.toContain("A");
    await expect(reply({ logit_bias: { 99999: 1 } })).rejects.toMatchObject({ status: 400, param: "logit_bias" });
    await expect(reply({ logit_bias: { [s.idOf("B")]: 101 } })).rejects.toMatchObject({ status: 400, param: "logit_bias" });
  });
});

describe("response_format", () => {
  let client: OpenAI;
  let jsonModel: Model;
  beforeAll(async () => {
    // Greedy, the model says "Sure!"; its second choice after the prompt starts a JSON object.
    const json = ['{"', "city", '": "', "Paris", '"}'];
    ({ client, model: jsonModel } = await served("json", {
      script: ["Sure", "!", "<|im_end|>"],
      transitions: [
        { from: "\n", to: "Sure", logit: 4 },
        { from: "\n", to: '{"', logit: 2 },
        ...json.map((t, i) => ({ from: t, to: json[i + 1] ?? "<|im_end|>", logit: 8 })),
      ],
    }));
  });

  it("json_object constrains the reply to one JSON object (streamed too); text changes nothing; json_schema is refused by name", async () => {
    const free = await client.chat.completions.create({ model: "m", messages: user("city?"), temperature: 0 });
    expect(free.choices[0].message.content).toBe("Sure!");
    expect((await client.chat.completions.create({ model: "m", messages: user("city?"), temperature: 0, response_format: { type: "text" } })).choices[0].message.content).toBe("Sure!");
    const json = await client.chat.completions.create({ model: "m", messages: user("city?"), temperature: 0, response_format: { type: "json_object" } });
    expect(JSON.parse(json.choices[0].message.content!)).toEqual({ city: "Paris" });
    expect(json.choices[0].finish_reason).toBe("stop");
    let streamed = "";
    for await (const c of await client.chat.completions.create({ model: "m", messages: user("city?"), temperature: 0, response_format: { type: "json_object" }, stream: true })) streamed += c.choices[0]?.delta.content ?? "";
    expect(streamed).toBe(json.choices[0].message.content);
    // Sampled over the whole vocabulary, the reply still parses as one object.
    for (const seed of [1, 2, 3]) {
      const sampled = await client.chat.completions.create({ model: "m", messages: user("city?"), temperature: 1, seed, response_format: { type: "json_object" } });
      expect(sampled.choices[0].finish_reason).toBe("stop");
      const value = JSON.parse(sampled.choices[0].message.content!);
      expect(typeof value === "object" && value !== null && !Array.isArray(value)).toBe(true);
    }
    await expect(
      client.chat.completions.create({ model: "m", messages: user("x"), response_format: { type: "json_schema", json_schema: { name: "x", schema: {} } } }),
    ).rejects.toMatchObject({ status: 400, param: "response_format", message: expect.stringMatching(/json_schema/) });
  });

  it("the library gives the same: responseFormat json_object, with logprobs of the constrained tokens", async () => {
    const r = await jsonModel.chat(user("city?"), { responseFormat: "json_object", logprobs: 1 }).result();
    expect(JSON.parse(r.text)).toEqual({ city: "Paris" });
    expect(r.logprobs!.map((t) => t.id)).toEqual(r.tokenIds.slice(0, -1)); // every token but the end-of-sequence one
    expect((await jsonModel.chat(user("city?")).result()).text).toBe("Sure!");
  });
});

/** A tool list. */
const TOOLS: OpenAI.ChatCompletionTool[] = [
  { type: "function", function: { name: "get_weather", description: "Weather in a city", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } } },
  { type: "function", function: { name: "get_time", description: "Time in a zone", parameters: { type: "object", properties: { zone: { type: "string" } } } } },
];

/** Tool calls as a streaming client assembles them from deltas. */
async function streamedCalls(stream: AsyncIterable<OpenAI.ChatCompletionChunk>) {
  const calls: Array<{ id?: string; name: string; arguments: string }> = [];
  let content = "";
  let finish: string | null = null;
  for await (const chunk of stream) {
    const c = chunk.choices[0];
    if (!c) continue;
    content += c.delta.content ?? "";
    for (const d of c.delta.tool_calls ?? []) {
      calls[d.index] ??= { name: "", arguments: "" };
      if (d.id) calls[d.index].id = d.id;
      calls[d.index].name += d.function?.name ?? "";
      calls[d.index].arguments += d.function?.arguments ?? "";
    }
    finish = c.finish_reason ?? finish;
  }
  return { calls, content, finish };
}

describe("tools and tool_choice", () => {
  const used = new Set<string>();
  const weather = '\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n';
  const hermes: Tok[] = ["<tool_call>", ...uniqueTokens(weather, used), "</tool_call>", ...uniqueTokens('\n<tool_call>\n{"name": "get_time", "arguments": {"zone": "CET"}}\n</tool_call>', used), "<|im_end|>"];
  let qwenStyle: OpenAI;
  let qwenModel: Model;
  let llamaStyle: OpenAI;
  let forced: OpenAI;
  let noTools: OpenAI;
  beforeAll(async () => {
    ({ client: qwenStyle, model: qwenModel } = await served("tools-hermes", { script: hermes, added: ["<tool_call>", "</tool_call>"] }));
    ({ client: llamaStyle } = await served("tools-llama", {
      script: [...uniqueTokens('{"name": "get_weather", "parameters": {"city": "Paris"}}'), "<|eot_id|>"],
      config: { eos_token_id: [IM_END, 263] },
      tokenizerConfig: { chat_template: LLAMA3_TOOLS_TEMPLATE, eos_token: "<|eot_id|>" },
    }));
    // Free, it answers in words; a call is its second choice.
    const taken = new Set<string>();
    const call = ["<tool_call>", ...uniqueTokens(weather, taken), "</tool_call>", "<|im_end|>"];
    ({ client: forced } = await served("tools-forced", {
      script: [...uniqueTokens("I am not sure.", taken), "<|im_end|>"],
      added: ["<tool_call>", "</tool_call>"],
      transitions: [{ from: "\n", to: "I", logit: 4 }, { from: "\n", to: "<tool_call>", logit: 2 }, ...call.slice(0, -1).map((t, i) => ({ from: t, to: call[i + 1], logit: 8 }))],
    }));
    ({ client: noTools } = await served("tools-none", { script: [...AFE, "<end_of_turn>"], config: { eos_token_id: 265 }, tokenizerConfig: { chat_template: STRICT_TEMPLATE, eos_token: "<end_of_turn>" } }));
  });

  it("Hermes/Qwen template: tools rendered, <tool_call> blocks read into tool_calls (finish_reason tool_calls), streamed as deltas; parallel_tool_calls: false keeps one", async () => {
    const r = await qwenStyle.chat.completions.create({ model: "m", messages: user("weather and time?"), tools: TOOLS, temperature: 0 });
    const msg = r.choices[0].message;
    expect(r.choices[0].finish_reason).toBe("tool_calls");
    expect(msg.content).toBeNull();
    expect(msg.tool_calls!.map((c) => [c.type, (c as OpenAI.ChatCompletionMessageFunctionToolCall).function.name, JSON.parse((c as OpenAI.ChatCompletionMessageFunctionToolCall).function.arguments)])).toEqual([
      ["function", "get_weather", { city: "Paris" }],
      ["function", "get_time", { zone: "CET" }],
    ]);
    expect(new Set(msg.tool_calls!.map((c) => c.id)).size).toBe(2);
    const withoutTools = await qwenStyle.chat.completions.create({ model: "m", messages: user("weather and time?"), temperature: 0 });
    expect(r.usage!.prompt_tokens).toBeGreaterThan(withoutTools.usage!.prompt_tokens + 50); // the tools are in the prompt
    expect(withoutTools.choices[0].message.content).toContain("<tool_call>"); // no tools asked for: text as it is
    const s = await streamedCalls(await qwenStyle.chat.completions.create({ model: "m", messages: user("weather and time?"), tools: TOOLS, temperature: 0, stream: true }));
    expect(s.finish).toBe("tool_calls");
    expect(s.content).toBe("");
    expect(s.calls.map((c) => [c.name, JSON.parse(c.arguments)])).toEqual([
      ["get_weather", { city: "Paris" }],
      ["get_time", { zone: "CET" }],
    ]);
    expect(s.calls.every((c) => c.id?.startsWith("call_"))).toBe(true);
    const one = await qwenStyle.chat.completions.create({ model: "m", messages: user("weather and time?"), tools: TOOLS, temperature: 0, parallel_tool_calls: false });
    expect(one.choices[0].message.tool_calls!.map((c) => (c as OpenAI.ChatCompletionMessageFunctionToolCall).function.name)).toEqual(["get_weather"]);
    expect(one.choices[0].finish_reason).toBe("tool_calls");
    // tool_choice none: the template gets no tools and the text is the reply.
    const none = await qwenStyle.chat.completions.create({ model: "m", messages: user("weather and time?"), tools: TOOLS, tool_choice: "none", temperature: 0 });
    expect(none.choices[0].message.tool_calls ?? []).toEqual([]);
    expect(none.usage!.prompt_tokens).toBe(withoutTools.usage!.prompt_tokens);
    // The conversation goes on with the call and its result in the history.
    const history: OpenAI.ChatCompletionMessageParam[] = [...user("weather?"), { role: "assistant", content: null, tool_calls: msg.tool_calls }, { role: "tool", tool_call_id: msg.tool_calls![0].id, content: "sunny" }];
    const next = await qwenStyle.chat.completions.create({ model: "m", messages: history, tools: TOOLS, temperature: 0 });
    expect(next.usage!.prompt_tokens).toBeGreaterThan(r.usage!.prompt_tokens);
  });

  it("the library gives the same: model.chat(…, { tools }) streams the calls as toolCalls and ends with tool-calls", async () => {
    const g = qwenModel.chat(user("weather and time?"), { tools: TOOLS as never, temperature: 0 });
    const calls: string[] = [];
    let content = "";
    for await (const t of g) {
      content += t.text;
      for (const c of t.toolCalls ?? []) calls.push(`${c.name} ${c.arguments}`);
    }
    expect({ content, calls, finish: g.finishReason }).toEqual({ content: "", calls: ['get_weather {"city":"Paris"}', 'get_time {"zone":"CET"}'], finish: "tool-calls" });
    const one = await qwenModel.chat(user("weather?"), { tools: TOOLS as never, parallelToolCalls: false }).result();
    expect(one.toolCalls!.map((c) => c.name)).toEqual(["get_weather"]);
  });

  it("Llama 3.x template: a JSON reply is read as the call, streamed too", async () => {
    const r = await llamaStyle.chat.completions.create({ model: "m", messages: user("weather?"), tools: TOOLS, temperature: 0 });
    expect(r.choices[0].finish_reason).toBe("tool_calls");
    expect(r.choices[0].message.tool_calls!.map((c) => [(c as OpenAI.ChatCompletionMessageFunctionToolCall).function.name, JSON.parse((c as OpenAI.ChatCompletionMessageFunctionToolCall).function.arguments)])).toEqual([["get_weather", { city: "Paris" }]]);
    const s = await streamedCalls(await llamaStyle.chat.completions.create({ model: "m", messages: user("weather?"), tools: TOOLS, temperature: 0, stream: true }));
    expect(s.calls.map((c) => c.name)).toEqual(["get_weather"]);
    expect(s.finish).toBe("tool_calls");
  });

  it("tool_choice required / a named function constrain the reply to a call; auto leaves it free", async () => {
    const free = await forced.chat.completions.create({ model: "m", messages: user("weather?"), tools: TOOLS, temperature: 0 });
    expect(free.choices[0].message).toMatchObject({ content: "I am not sure." });
    expect(free.choices[0].finish_reason).toBe("stop");
    for (const tool_choice of ["required", { type: "function", function: { name: "get_weather" } }] as const) {
      const r = await forced.chat.completions.create({ model: "m", messages: user("weather?"), tools: TOOLS, tool_choice, temperature: 0 });
      expect(r.choices[0].finish_reason).toBe("tool_calls");
      expect((r.choices[0].message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall).function).toEqual({ name: "get_weather", arguments: '{"city":"Paris"}' });
    }
    await expect(forced.chat.completions.create({ model: "m", messages: user("x"), tools: TOOLS, tool_choice: { type: "function", function: { name: "nope" } } })).rejects.toMatchObject({ status: 400, param: "tool_choice" });
    await expect(forced.chat.completions.create({ model: "m", messages: user("x"), tool_choice: "required" })).rejects.toMatchObject({ status: 400, param: "tool_choice" });
    await expect(forced.chat.completions.create({ model: "m", messages: user("x"), tools: TOOLS, response_format: { type: "json_object" } })).rejects.toMatchObject({ status: 400, param: "response_format" });
  });

  it("a template without tool support: 400 naming tools", async () => {
    await expect(noTools.chat.completions.create({ model: "m", messages: user("weather?"), tools: TOOLS })).rejects.toMatchObject({ status: 400, param: "tools", message: expect.stringMatching(/does not take tools/) });
    expect((await noTools.chat.completions.create({ model: "m", messages: user("weather?"), tools: TOOLS, tool_choice: "none", temperature: 0 })).choices[0].message.content).toBe("afé 😀");
    await expect(noTools.chat.completions.create({ model: "m", messages: user("x"), tools: [{ type: "function", function: { name: "bad name!" } }] })).rejects.toMatchObject({ status: 400, param: "tools[0].function.name" });
  });
});

describe("template variables, refused and accepted-without-effect parameters", () => {
  let client: OpenAI;
  let strict: OpenAI;
  beforeAll(async () => {
    ({ client } = await served("params", { script: [...AFE, "<|im_end|>"] }));
    ({ client: strict } = await served("params-strict", { script: [...AFE, "<end_of_turn>"], config: { eos_token_id: 265 }, tokenizerConfig: { chat_template: STRICT_TEMPLATE, eos_token: "<end_of_turn>" } }));
  });
  const prompt = async (c: OpenAI, o: object) => (await c.chat.completions.create({ model: "m", messages: user("hi"), max_tokens: 1, ...o } as never)).usage!.prompt_tokens;

  it("reasoning_effort reaches a template that reads it (400 otherwise); chat_template_kwargs pass variables such as enable_thinking", async () => {
    const base = await prompt(client, {});
    expect(await prompt(client, { reasoning_effort: "low" })).toBeGreaterThan(base);
    expect(await prompt(client, { chat_template_kwargs: { enable_thinking: false } })).toBeGreaterThan(base);
    await expect(prompt(strict, { reasoning_effort: "low" })).rejects.toMatchObject({ status: 400, param: "reasoning_effort" });
  });

  it("each parameter the server cannot honour is a 400 naming it; unknown ones too", async () => {
    const chatRefused: Array<[string, object]> = [
      ["audio", { audio: { voice: "alloy", format: "wav" } }],
      ["modalities", { modalities: ["text", "audio"] }],
      ["prediction", { prediction: { type: "content", content: "x" } }],
      ["web_search_options", { web_search_options: {} }],
      ["verbosity", { verbosity: "low" }],
      ["functions", { functions: [{ name: "f" }] }],
      ["function_call", { function_call: "auto" }],
      ["store", { store: true }],
      ["service_tier", { service_tier: "flex" }],
      ["stream_options", { stream_options: { include_usage: true } }], // without stream
      ["n", { n: 0 }],
      ["seed", { seed: 1.5 }],
      ["stop", { stop: ["a", "b", "c", "d", "e"] }],
      ["temperature", { temperature: 3 }],
      ["top_p", { top_p: 0 }],
      ["frequency_penalty", { frequency_penalty: -3 }],
      ["logprobs", { logprobs: "yes" }],
      ["messages[0].content", { messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] }],
      ["bogus", { bogus: 1 }],
    ];
    for (const [param, body] of chatRefused) {
      await expect(client.chat.completions.create({ model: "m", messages: user("hi"), ...body } as never), param).rejects.toMatchObject({ status: 400, param });
    }
    const streamRefused = client.chat.completions.create({ model: "m", messages: user("hi"), stream: true, stream_options: { include_obfuscation: true } } as never);
    await expect(streamRefused).rejects.toMatchObject({ status: 400, param: "stream_options" });
    const completionRefused: Array<[string, object]> = [
      ["suffix", { suffix: "end" }],
      ["echo", { echo: "yes" }],
      ["logprobs", { logprobs: 21 }],
      ["max_tokens", { max_tokens: -1 }],
      ["tools", { tools: TOOLS }], // a chat parameter
      ["prompt", { prompt: [] }],
    ];
    for (const [param, body] of completionRefused) {
      await expect(client.completions.create({ model: "m", prompt: "hi", ...body } as never), param).rejects.toMatchObject({ status: 400, param });
    }
  });

  it("identifiers and storage settings that change nothing here are accepted as OpenAI accepts them (user, metadata, store: false, service_tier auto, …)", async () => {
    const r = await client.chat.completions.create({
      model: "m",
      messages: user("hi"),
      temperature: 0,
      user: "u-1",
      safety_identifier: "s-1",
      prompt_cache_key: "k",
      metadata: { run: "1" },
      store: false,
      service_tier: "auto",
      modalities: ["text"],
      stream: false,
    } as never);
    expect((r as OpenAI.ChatCompletion).choices[0].message.content).toBe("afé 😀");
    const c = await client.completions.create({ model: "m", prompt: "hi", temperature: 0, user: "u-1", suffix: null } as never);
    expect((c as OpenAI.Completion).choices[0].text).toBe("afé 😀");
    await expect(client.chat.completions.create({ model: "m", messages: user("hi"), metadata: { run: 1 } } as never)).rejects.toMatchObject({ status: 400, param: "metadata" });
  });
});

// Real chat templates (../shared/chat-templates, copied from public models), with scripted models.
const realTemplates = (name: string) => join(chatTemplatesRoot, `${name}.jinja`);
const haveReal = existsSync(chatTemplatesRoot);
if (!haveReal) console.warn(`[df11 tests] SKIPPING real chat-template tests: ${chatTemplatesRoot} not found (the public templates live beside the checkout, never committed)`);

describe.skipIf(!haveReal)(`real chat templates${haveReal ? "" : " (skipped: ../shared/chat-templates not found)"}`, () => {
  const real = (name: string) => readFileSync(realTemplates(name), "utf8");

  it("Qwen3 and Qwen2.5: tools rendered, <tool_call> replies read into tool_calls; a tool result continues the conversation", async () => {
    for (const name of ["Qwen-Qwen3-0.6B", "Qwen-Qwen2.5-7B-Instruct"]) {
      const { client } = await served(`real-${name}`, {
        script: ["<tool_call>", ...uniqueTokens('\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'), "</tool_call>", "<|im_end|>"],
        added: ["<tool_call>", "</tool_call>"],
        tokenizerConfig: { chat_template: real(name) },
      });
      const r = await client.chat.completions.create({ model: "m", messages: [{ role: "system", content: "Be brief." }, ...user("weather?")], tools: TOOLS, temperature: 0 });
      expect(r.choices[0].finish_reason, name).toBe("tool_calls");
      const call = r.choices[0].message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall;
      expect(call.function).toEqual({ name: "get_weather", arguments: '{"city":"Paris"}' });
      const next = await client.chat.completions.create({
        model: "m",
        messages: [...user("weather?"), { role: "assistant", content: null, tool_calls: [call] }, { role: "tool", tool_call_id: call.id, content: "sunny" }],
        tools: TOOLS,
        temperature: 0,
      });
      expect(next.choices[0].finish_reason).toBe("tool_calls");
    }
  });

  it("Llama 3.1 / 3.2 / 3.3: tools rendered (a raise for tools without a user message is a 400), JSON replies read into tool_calls", async () => {
    for (const name of ["meta-llama-Llama-3.1-8B-Instruct", "meta-llama-Llama-3.2-3B-Instruct", "meta-llama-Llama-3.3-70B-Instruct"]) {
      const { client } = await served(`real-${name}`, {
        script: [...uniqueTokens('{"name": "get_weather", "parameters": {"city": "Paris"}}'), "<|eot_id|>"],
        config: { eos_token_id: [IM_END, 263] },
        tokenizerConfig: { chat_template: real(name), eos_token: "<|eot_id|>" },
      });
      const r = await client.chat.completions.create({ model: "m", messages: user("weather?"), tools: TOOLS, temperature: 0 });
      expect(r.choices[0].finish_reason, name).toBe("tool_calls");
      expect((r.choices[0].message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall).function.name).toBe("get_weather");
      await expect(client.chat.completions.create({ model: "m", messages: [{ role: "system", content: "only a system message" }], tools: TOOLS })).rejects.toMatchObject({
        status: 400,
        type: "invalid_request_error",
        message: expect.stringMatching(/Cannot put tools in the first user message/),
      });
    }
  });

  it("Gemma-2-it raises on a system message, Mistral-Nemo on bad tool-call ids: 400s with the template's words; templates without tools or with an unread call format refuse tools", async () => {
    const { client: gemma } = await served("real-gemma", { script: [...AFE, "<end_of_turn>"], config: { eos_token_id: 265 }, tokenizerConfig: { chat_template: real("google-gemma-2-2b-it"), bos_token: "<|begin_of_text|>", eos_token: "<end_of_turn>" } });
    await expect(gemma.chat.completions.create({ model: "m", messages: [{ role: "system", content: "x" }, ...user("hi")] })).rejects.toMatchObject({ status: 400, type: "invalid_request_error", message: expect.stringMatching(/^400 chat template: System role not supported$/) });
    expect((await gemma.chat.completions.create({ model: "m", messages: user("hi"), temperature: 0 })).choices[0].message.content).toBe("afé 😀");
    await expect(gemma.chat.completions.create({ model: "m", messages: user("hi"), tools: TOOLS })).rejects.toMatchObject({ status: 400, param: "tools" });
    const { client: nemo } = await served("real-nemo", { script: [...AFE, "<|im_end|>"], tokenizerConfig: { chat_template: real("mistralai-Mistral-Nemo-Instruct-2407") } });
    const badIds: OpenAI.ChatCompletionMessageParam[] = [
      ...user("weather?"),
      { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function", function: { name: "get_weather", arguments: "{}" } }] },
      { role: "tool", tool_call_id: "call_1", content: "sunny" },
    ];
    await expect(nemo.chat.completions.create({ model: "m", messages: badIds })).rejects.toMatchObject({ status: 400, message: expect.stringMatching(/Tool call IDs should be alphanumeric strings with length 9/) });
    await expect(nemo.chat.completions.create({ model: "m", messages: user("x"), tools: TOOLS })).rejects.toMatchObject({ status: 400, param: "tools", message: expect.stringMatching(/form df11 does not read/) });
    const { client: phi } = await served("real-phi", { script: [...AFE, "<|im_end|>"], tokenizerConfig: { chat_template: real("microsoft-Phi-3.5-mini-instruct") } });
    await expect(phi.chat.completions.create({ model: "m", messages: user("x"), tools: TOOLS })).rejects.toMatchObject({ status: 400, param: "tools", message: expect.stringMatching(/does not take tools/) });
  });
});
