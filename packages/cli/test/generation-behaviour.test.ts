// What users see when they generate, the same through the CLI (`df11 generate`, `df11 chat`), the library
// (`loadModel().generate/chat`, `generate()`) and `df11 serve` (official `openai` client), BF16 and DF11:
// every end-of-sequence id stops generation; generation_config.json's sampling defaults apply unless
// switched off; text comes in whole characters in every script; stop strings match that text; a chat
// template that raises is the client's error. Tiny scripted models (test-support/scripted-model.ts) make
// the output known in advance.
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChatTemplateError, generate, loadCausalLM, loadModel, TextTokenizer, type Model } from "@df11/models";
import { AFE, CHATML_TOOLS_TEMPLATE, STRICT_TEMPLATE, TEMPLATE_SPECIALS, uniqueTokens, wholeCharacters, writeScriptedModel, type Tok } from "../../../test-support/scripted-model.js";
import { compressModel, serveModel } from "../src/index.js";
import { runGenerate } from "../src/generate-command.js";
import { bin, df11 } from "./helpers.js";

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "df11-behaviour-"));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});


/** Run `df11 chat` with these lines on stdin; its stdout. */
function chat(dir: string, lines: string[], ...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [bin, "chat", dir, "--device", "cpu", ...args]);
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    p.on("close", (code) => resolve({ code, stdout, stderr }));
    p.stdin.end(lines.map((l) => `${l}\n`).join(""));
  });
}

/** A server on the model and an openai client for it; close() ends both. */
async function serving(model: Model) {
  const server = await serveModel(model, { port: 0, modelId: "m" });
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "none", maxRetries: 0 });
  return { client, close: () => server.close() };
}

const wellFormed = (s: string) => wholeCharacters(s);

describe("stopping rules: every end-of-sequence id stops generation", () => {
  // config.json says eos 0, generation_config.json [0, 260] (as Llama-3-Instruct and Gemma-2-it ship them);
  // the model's greedy answer is "afé 😀", then <|eot|> (260), then more text that must not come.
  let bf16: string;
  let df11Dir: string;
  beforeAll(async () => {
    bf16 = join(work, "eos-bf16");
    await writeScriptedModel(bf16, {
      script: [...AFE, "<|eot|>", "Z", "Y"],
      special: TEMPLATE_SPECIALS,
      config: { eos_token_id: 0, bos_token_id: 256 },
      generationConfig: { eos_token_id: [0, 260], bos_token_id: 256 },
      tokenizerConfig: { eos_token: "<|endoftext|>", chat_template: CHATML_TOOLS_TEMPLATE },
    });
    df11Dir = join(work, "eos-df11");
    await compressModel(bf16, df11Dir);
  });

  for (const kind of ["bf16", "df11"] as const) {
    it(`${kind}: df11 generate (stdout and --json), df11 chat, loadModel().generate/chat, generate() and df11 serve all stop at 260 with "afé 😀"`, async () => {
      const dir = kind === "bf16" ? bf16 : df11Dir;
      const json = JSON.parse((await df11("generate", dir, "--prompt", "hi", "-n", "20", "--json", "--device", "cpu")).stdout);
      expect(json.weights).toBe(kind);
      expect(json.tokenIds.at(-1)).toBe(260);
      expect(json.tokenIds).toHaveLength(AFE.length + 1);
      expect(json.stopReason).toBe("eos");
      expect(json.text).toBe("afé 😀");
      expect(json.settings.stopTokenIds.sort((x: number, y: number) => x - y)).toEqual([0, 256, 260]);
      const plain = await df11("generate", dir, "--prompt", "hi", "-n", "20", "--device", "cpu");
      expect(plain.stdout).toBe("afé 😀\n");
      expect(plain.stderr).toMatch(/10 tokens, eos/);
      const talk = await chat(dir, ["hi", "/exit"]);
      expect(talk.stdout).toContain("> afé 😀\n");
      expect(talk.stdout).not.toContain("😀Z"); // nothing after the end-of-sequence token
      // Piped lines that arrive while a reply is generated wait their turn: one reply per line.
      const piped = await chat(dir, ["hi", "hi again", "and again"]);
      expect(piped.stdout.match(/> afé 😀\n/g)?.length, piped.stdout).toBe(3);

      using model = await loadModel(dir, { device: "cpu" });
      const r = await model.generate("hi", { maxTokens: 20 }).result();
      expect({ text: r.text, finish: r.finishReason, last: r.tokenIds.at(-1) }).toEqual({ text: "afé 😀", finish: "eos", last: 260 });
      const c = await model.chat([{ role: "user", content: "hi" }], { maxTokens: 20 }).result();
      expect(c.text).toBe("afé 😀");
      const tokenizer = await TextTokenizer.load(dir);
      using lm = await loadCausalLM(dir);
      const ids: number[] = [];
      for await (const t of generate(lm, tokenizer!.encode("hi"), { maxTokens: 20, tokenizer })) ids.push(t.id);
      expect(ids.at(-1)).toBe(260);

      const { client, close } = await serving(model);
      try {
        const whole = await client.chat.completions.create({ model: "m", messages: [{ role: "user", content: "hi" }], max_tokens: 20, temperature: 0 });
        expect(whole.choices[0]).toMatchObject({ message: { content: "afé 😀" }, finish_reason: "stop" });
        expect(whole.usage?.completion_tokens).toBe(AFE.length + 1);
        const completion = await client.completions.create({ model: "m", prompt: "hi", max_tokens: 20, temperature: 0 });
        expect(completion.choices[0]).toMatchObject({ text: "afé 😀", finish_reason: "stop" });
        let streamed = "";
        let finish: string | null = null;
        for await (const chunk of await client.chat.completions.create({ model: "m", messages: [{ role: "user", content: "hi" }], max_tokens: 20, stream: true, temperature: 0 })) {
          streamed += chunk.choices[0]?.delta.content ?? "";
          finish = chunk.choices[0]?.finish_reason ?? finish;
        }
        expect({ streamed, finish }).toEqual({ streamed: "afé 😀", finish: "stop" });
      } finally {
        await close();
      }
    });
  }

  it("df11 generate --batch-size: every sequence stops at 260 with the whole-character text; --json reports the settings", async () => {
    const r = JSON.parse((await df11("generate", bf16, "-p", "hi", "-b", "3", "-n", "20", "--json", "--device", "cpu")).stdout);
    expect(r.sequences.map((s: { text: string; stopReason: string; tokenIds: number[] }) => [s.text, s.stopReason, s.tokenIds.at(-1)])).toEqual([
      ["afé 😀", "eos", 260],
      ["afé 😀", "eos", 260],
      ["afé 😀", "eos", 260],
    ]);
    expect(r.settings.stopTokenIds.sort((x: number, y: number) => x - y)).toEqual([0, 256, 260]);
    const plain = await df11("generate", bf16, "-p", "hi", "-p", "hi", "-n", "20", "--device", "cpu");
    expect(plain.stdout).toBe("[1/2] afé 😀\n[2/2] afé 😀\n");
  });

  it("df11 generate interrupted (its signal aborted after 3 tokens): --json's stopReason is \"aborted\", as generate --batch-size says it, not max-tokens", async () => {
    const interrupt = new AbortController();
    let pieces = 0;
    const r = await runGenerate(bf16, { prompt: "hi" }, { maxTokens: 20, device: "cpu" }, () => ++pieces === 3 && interrupt.abort(), interrupt.signal);
    expect({ stop: r.stopReason, interrupted: r.interrupted, tokens: r.tokenIds.length }).toEqual({ stop: "aborted", interrupted: true, tokens: 3 });
    expect((await runGenerate(bf16, { prompt: "hi" }, { maxTokens: 3, device: "cpu" })).stopReason).toBe("max-tokens");
  });

  it("df11 chat: a conversation that outgrows --max-context is refused turn by turn (the chat goes on, /reset starts over); a reply cut by it says so", async () => {
    const tokenizer = (await TextTokenizer.load(bf16))!;
    const hi = tokenizer.encode(tokenizer.applyChatTemplate([{ role: "user", content: "hi" }]), false).length;
    // Room for "hi" and its whole reply (its end token needs no position), not for a second turn: the chat ended with a RangeError.
    const talk = await chat(bf16, ["hi", "hi again", "/reset", "hi"], "--max-context", String(hi + AFE.length));
    expect(talk.code, talk.stderr).toBe(0);
    expect(talk.stdout.match(/> afé 😀\n/g)?.length, talk.stdout).toBe(2);
    expect(talk.stdout).toMatch(new RegExp(`df11: error: the conversation with this turn has \\d+ tokens and the context length is ${hi + AFE.length}: to generate, a prompt may have at most ${hi + AFE.length - 1} tokens \\(--max-context; this model's maximum is \\d+\\): /reset starts over`));
    const cut = await chat(bf16, ["hi"], "--max-context", String(hi + 1));
    expect(cut.stdout).toContain("> af [the context is full: /reset starts over]\n");
    // A turn of exactly the context length is refused too, as df11 generate and serve refuse such a prompt (it got one token).
    const full = await chat(bf16, ["hi"], "--max-context", String(hi));
    expect(full.stdout).toContain(`df11: error: the conversation with this turn has ${hi} tokens and the context length is ${hi}: to generate, a prompt may have at most ${hi - 1} tokens`);
  });

  it("the tokenizer's EOS alone stops it too (config.json names none — LlamaConfig's default 2 counts, as in transformers — no generation_config.json); ignore_eos runs on", async () => {
    const dir = join(work, "eos-tokenizer");
    await writeScriptedModel(dir, { script: [...AFE, "<|eot|>", "Z"], special: TEMPLATE_SPECIALS, tokenizerConfig: { eos_token: "<|eot|>" } });
    const json = JSON.parse((await df11("generate", dir, "--prompt", "hi", "-n", "20", "--json", "--device", "cpu")).stdout);
    expect({ stop: json.stopReason, text: json.text, stopIds: json.settings.stopTokenIds }).toEqual({ stop: "eos", text: "afé 😀", stopIds: [2, 260] });
    // df11 generate --ignore-eos (without --batch-size too): exactly -n tokens, and the settings say no id stops it.
    const on = JSON.parse((await df11("generate", dir, "--prompt", "hi", "-n", "12", "--ignore-eos", "--json", "--device", "cpu")).stdout);
    expect({ stop: on.stopReason, tokens: on.tokenIds.length, stopIds: on.settings.stopTokenIds }).toEqual({ stop: "max-tokens", tokens: 12, stopIds: [] });
    expect(on.text.startsWith("afé 😀")).toBe(true);
    using model = await loadModel(dir, { device: "cpu" });
    const r = await model.generate("hi", { maxTokens: 12, ignoreEos: true }).result();
    expect(r.finishReason).toBe("max-tokens");
    expect(r.text.startsWith("afé 😀Z")).toBe(true);
  });
});

describe("generation_config.json sampling defaults", () => {
  // After "?", the model prefers A > B > C > D (logits 3, 2.875, 2.75, 2.625); each ends the answer.
  const branch = (generationConfig: Record<string, unknown>) => ({
    script: ["A", "<|eot|>"] as Tok[],
    transitions: [
      { from: "?", to: "A", logit: 3 },
      { from: "?", to: "B", logit: 2.875 },
      { from: "?", to: "C", logit: 2.75 },
      { from: "?", to: "D", logit: 2.625 },
      ...["B", "C", "D"].map((t) => ({ from: t, to: "<|eot|>", logit: 8 })),
    ],
    special: TEMPLATE_SPECIALS,
    generationConfig: { eos_token_id: 260, ...generationConfig },
    tokenizerConfig: { eos_token: "<|eot|>" },
  });
  let sampled: string;
  let penalised: string;
  beforeAll(async () => {
    sampled = join(work, "defaults-sample");
    await writeScriptedModel(sampled, branch({ do_sample: true, temperature: 1.0, top_k: 2 }));
    penalised = join(work, "defaults-greedy");
    await writeScriptedModel(penalised, branch({ do_sample: false, repetition_penalty: 1.5 }));
  });

  /** The answers over seeds 1…n (seeded, so the same every run). */
  const answers = async (n: number, args: (seed: number) => string[]) => {
    const runs = await Promise.all(Array.from({ length: n }, (_, i) => df11(...args(i + 1))));
    return new Set(runs.map((r) => JSON.parse(r.stdout).text as string));
  };

  it("df11 generate: do_sample + top_k apply when no flag says otherwise; --json says what was used and where it came from", async () => {
    const json = JSON.parse((await df11("generate", sampled, "--prompt", "?", "--json", "--seed", "1", "--device", "cpu")).stdout);
    expect(json.settings.sampling).toMatchObject({ temperature: 1, topK: 2, topP: 1, seed: 1 });
    expect(json.settings.sources).toMatchObject({ temperature: "generation_config.json", topK: "generation_config.json", topP: "default" });
    expect(await answers(8, (s) => ["generate", sampled, "--prompt", "?", "--json", "--seed", String(s), "--device", "cpu"])).toEqual(new Set(["A", "B"]));
    // A flag wins over the model's default; the switch ignores the defaults (greedy, df11's own default).
    expect([...(await answers(12, (s) => ["generate", sampled, "--prompt", "?", "--json", "--seed", String(s), "--top-k", "3", "--device", "cpu"]))].sort()).toEqual(["A", "B", "C"]);
    const off = JSON.parse((await df11("generate", sampled, "--prompt", "?", "--json", "--no-sampling-defaults", "--device", "cpu")).stdout);
    expect({ text: off.text, temperature: off.settings.sampling.temperature, source: off.settings.sources.temperature }).toEqual({ text: "A", temperature: 0, source: "default" });
    const greedy = JSON.parse((await df11("generate", sampled, "--prompt", "?", "--json", "--temperature", "0", "--device", "cpu")).stdout);
    expect({ text: greedy.text, source: greedy.settings.sources.temperature }).toEqual({ text: "A", source: "request" });
  });

  it("df11 generate --batch-size: sequence i samples with seed + i under the same defaults", async () => {
    const r = JSON.parse((await df11("generate", sampled, "-p", "?", "-b", "8", "--seed", "1", "--json", "--device", "cpu")).stdout);
    expect(r.settings.sources.topK).toBe("generation_config.json");
    const texts = r.sequences.map((s: { text: string }) => s.text);
    expect(new Set(texts)).toEqual(new Set(["A", "B"])); // top_k 2 from generation_config.json
    const alone = await Promise.all([1, 2, 3].map(async (seed) => JSON.parse((await df11("generate", sampled, "-p", "?", "--seed", String(seed), "--json", "--device", "cpu")).stdout).text));
    expect(texts.slice(0, 3)).toEqual(alone);
  });

  it("do_sample: false with repetition_penalty: greedy, penalised (A is in the prompt, so B); switched off, A", async () => {
    const on = JSON.parse((await df11("generate", penalised, "--prompt", "A?", "--json", "--device", "cpu")).stdout);
    expect({ text: on.text, penalty: on.settings.sampling.repetitionPenalty, temperature: on.settings.sampling.temperature }).toEqual({ text: "B", penalty: 1.5, temperature: 0 });
    const off = JSON.parse((await df11("generate", penalised, "--prompt", "A?", "--json", "--no-sampling-defaults", "--device", "cpu")).stdout);
    expect(off.text).toBe("A");
  });

  it("the library and df11 serve apply the same defaults; samplingDefaults: false gives the caller's (library: greedy; server: OpenAI's temperature 1)", async () => {
    using model = await loadModel(sampled, { device: "cpu" });
    const texts = new Set<string>();
    for (let seed = 1; seed <= 16; seed++) texts.add((await model.generate("?", { seed }).result()).text);
    expect(texts).toEqual(new Set(["A", "B"]));
    const g = model.generate("?", { seed: 1 });
    expect(g.settings.sources.topK).toBe("generation_config.json");
    await g.result();
    expect((await model.generate("?", { samplingDefaults: false }).result()).text).toBe("A");
    const { client, close } = await serving(model);
    try {
      const served = new Set<string>();
      for (let seed = 1; seed <= 16; seed++) served.add((await client.completions.create({ model: "m", prompt: "?", seed, max_tokens: 4 })).choices[0].text);
      expect(served).toEqual(new Set(["A", "B"]));
      expect((await client.completions.create({ model: "m", prompt: "?", temperature: 0, max_tokens: 4 })).choices[0].text).toBe("A");
    } finally {
      await close();
    }
    using plain = await loadModel(sampled, { device: "cpu", samplingDefaults: false });
    const other = await serving(plain);
    try {
      const served = new Set<string>();
      for (let seed = 1; seed <= 16; seed++) served.add((await other.client.completions.create({ model: "m", prompt: "?", seed, max_tokens: 4, stop: ["Z"] })).choices[0].text.slice(0, 1));
      // temperature 1 over the whole vocabulary: mostly other tokens than the four
      expect([...served].some((t) => !"AB".includes(t))).toBe(true);
    } finally {
      await other.close();
    }
  });
});

describe("characters split across tokens: whole characters everywhere, stop strings on that text", () => {
  const SAMPLES = ["afé 😀", "Привет, мир! 中文 👩‍💻🇫🇷", "e\u0301 𝔘𝔫𝔦 한국어"];
  const dirs: string[] = [];
  beforeAll(async () => {
    for (const [i, text] of SAMPLES.entries()) {
      const dir = join(work, `chars-${i}`);
      const script = i === 0 ? AFE : uniqueTokens(text);
      await writeScriptedModel(dir, {
        script: [...script, "<|im_end|>"],
        special: TEMPLATE_SPECIALS,
        config: { eos_token_id: 258 },
        tokenizerConfig: { eos_token: "<|im_end|>", chat_template: CHATML_TOOLS_TEMPLATE },
      });
      dirs.push(dir);
    }
    dirs.push(join(work, "chars-0-df11"));
    await compressModel(dirs[0], dirs.at(-1)!);
  });

  it("the same text in stdout, --json, df11 chat, the library's generate/chat stream, and serve streamed and not — no U+FFFD, no lone surrogate", async () => {
    for (const [i, dir] of dirs.entries()) {
      const text = SAMPLES[i] ?? SAMPLES[0];
      expect((await df11("generate", dir, "--prompt", "hi", "--device", "cpu")).stdout).toBe(`${text}\n`);
      expect(JSON.parse((await df11("generate", dir, "--prompt", "hi", "--json", "--device", "cpu")).stdout).text).toBe(text);
      expect((await df11("generate", dir, "--prompt", "hi", "--chat", "--device", "cpu")).stdout).toBe(`${text}\n`);
      expect((await chat(dir, ["hi", "/exit"])).stdout).toContain(`> ${text}\n`);
      using model = await loadModel(dir, { device: "cpu" });
      for (const gen of [model.generate("hi"), model.chat([{ role: "user", content: "hi" }])]) {
        const pieces: string[] = [];
        for await (const t of gen) pieces.push(t.text);
        expect(pieces.join("")).toBe(text);
        expect(pieces.every(wellFormed), JSON.stringify(pieces)).toBe(true);
      }
      const { client, close } = await serving(model);
      try {
        for (const chatApi of [true, false]) {
          const whole = chatApi
            ? (await client.chat.completions.create({ model: "m", messages: [{ role: "user", content: "hi" }], temperature: 0 })).choices[0].message.content
            : (await client.completions.create({ model: "m", prompt: "hi", temperature: 0 })).choices[0].text;
          expect(whole).toBe(text);
          const deltas: string[] = [];
          if (chatApi) for await (const c of await client.chat.completions.create({ model: "m", messages: [{ role: "user", content: "hi" }], stream: true, temperature: 0 })) deltas.push(c.choices[0]?.delta.content ?? "");
          else for await (const c of await client.completions.create({ model: "m", prompt: "hi", stream: true, temperature: 0 })) deltas.push(c.choices[0]?.text ?? "");
          expect(deltas.join("")).toBe(text);
          expect(deltas.every(wellFormed), JSON.stringify(deltas)).toBe(true);
        }
      } finally {
        await close();
      }
    }
  });

  it("stop strings are matched on that text, even across split characters: CLI, library and serve cut at the same place", async () => {
    const dir = dirs[0];
    for (const [stop, expected] of [
      ["é 😀", "af"],
      ["😀", "afé "],
      ["f", "a"],
    ]) {
      expect(JSON.parse((await df11("generate", dir, "--prompt", "hi", "--json", "--stop", stop, "--device", "cpu")).stdout)).toMatchObject({ text: expected, stopReason: "stop-string" });
      using model = await loadModel(dir, { device: "cpu" });
      const pieces: string[] = [];
      for await (const t of model.generate("hi", { stop: [stop] })) pieces.push(t.text);
      expect(pieces.join("")).toBe(expected);
      const { client, close } = await serving(model);
      try {
        expect((await client.completions.create({ model: "m", prompt: "hi", stop, temperature: 0 })).choices[0]).toMatchObject({ text: expected, finish_reason: "stop" });
        let streamed = "";
        for await (const c of await client.chat.completions.create({ model: "m", messages: [{ role: "user", content: "hi" }], stop, stream: true, temperature: 0 })) streamed += c.choices[0]?.delta.content ?? "";
        expect(streamed).toBe(expected);
      } finally {
        await close();
      }
    }
  });
});

describe("a chat template that raises is the client's error", () => {
  let strict: string;
  beforeAll(async () => {
    strict = join(work, "strict");
    await writeScriptedModel(strict, { script: [...AFE, "<end_of_turn>"], special: TEMPLATE_SPECIALS, config: { eos_token_id: 265 }, tokenizerConfig: { bos_token: "<|begin_of_text|>", eos_token: "<end_of_turn>", chat_template: STRICT_TEMPLATE } });
  });

  it("df11 serve: 400 invalid_request_error with the template's message (system role, turns out of order), streamed or not; the server stays healthy", async () => {
    using model = await loadModel(strict, { device: "cpu" });
    const { client, close } = await serving(model);
    try {
      const cases: Array<[OpenAI.ChatCompletionMessageParam[], RegExp]> = [
        [[{ role: "system", content: "Be brief." }, { role: "user", content: "hi" }], /System role not supported/],
        [[{ role: "developer", content: "Be brief." }, { role: "user", content: "hi" }], /System role not supported/],
        [[{ role: "user", content: "hi" }, { role: "user", content: "again" }], /Conversation roles must alternate/],
        [[{ role: "assistant", content: "hello" }], /Conversation roles must alternate/],
      ];
      for (const [messages, message] of cases) {
        for (const stream of [false, true]) {
          const call = client.chat.completions.create({ model: "m", messages, stream } as never);
          await expect(call).rejects.toMatchObject({ status: 400, type: "invalid_request_error", param: "messages", message: expect.stringMatching(message) });
        }
      }
      const ok = await client.chat.completions.create({ model: "m", messages: [{ role: "user", content: "hi" }], temperature: 0 });
      expect(ok.choices[0].message.content).toBe("afé 😀");
    } finally {
      await close();
    }
  });

  it("the library throws ChatTemplateError; df11 chat --system and df11 generate --chat say the template's message", async () => {
    using model = await loadModel(strict, { device: "cpu" });
    expect(() => model.chat([{ role: "system", content: "x" }, { role: "user", content: "hi" }])).toThrow(ChatTemplateError);
    expect(() => model.chat([{ role: "system", content: "x" }, { role: "user", content: "hi" }])).toThrow(/chat template: System role not supported/);
    const refused = await chat(strict, ["hi", "/exit"], "--system", "Be brief.");
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/--system: chat template: System role not supported/);
    // In a conversation, a turn the template refuses is reported and the conversation goes on.
    const ok = await chat(strict, ["hi", "/exit"]);
    expect(ok.stdout).toContain("> afé 😀\n");
  });
});
