// A prompt of exactly the context length (--max-context, maxContext): `df11 generate`, `df11 chat`, `df11 serve`
// (completions and chat) and the library agree — it is refused, naming the prompt's tokens and the context
// length (serve: 400 `context_length_exceeded`), as vLLM refuses a prompt that reaches the model's context; a
// prompt one token shorter generates until the context's end (finish_reason "length"); a prompt only read
// (max_tokens 0, scored with echo) may fill the context. `df11 generate` gave one token here while serve said 400.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, TextTokenizer } from "@df11/models";
import { AFE, CHATML_TOOLS_TEMPLATE, TEMPLATE_SPECIALS, writeScriptedModel, type ScriptedModel } from "../../../test-support/scripted-model.js";
import { df11, servedModel } from "./helpers.js";

let work: string;
let scripted: ScriptedModel;
/** The chat prompt of "hi" in tokens: the context length the model is served with. */
let context: number;
let served: Awaited<ReturnType<typeof servedModel>>;
let client: OpenAI;
const user = (content: string) => [{ role: "user" as const, content }];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "df11-context-"));
  // Its greedy reply to anything is "afé 😀" then <|im_end|>.
  scripted = await writeScriptedModel(join(work, "m"), {
    script: [...AFE, "<|im_end|>"],
    special: TEMPLATE_SPECIALS,
    config: { eos_token_id: 258, max_position_embeddings: 4096 },
    tokenizerConfig: { eos_token: "<|im_end|>", chat_template: CHATML_TOOLS_TEMPLATE },
  });
  const tokenizer = (await TextTokenizer.load(scripted.dir))!;
  context = tokenizer.encode(tokenizer.applyChatTemplate(user("hi")), false).length;
  served = await servedModel(await loadModel(scripted.dir, { device: "cpu", slots: 2, maxContext: context }));
  client = served.client;
});
afterAll(async () => {
  await served?.close();
  await rm(work, { recursive: true, force: true });
});

/** `n` prompt token ids none of which the script continues (each is followed by the reply's first token). */
const promptOf = (n: number) => Array.from({ length: n }, (_, i) => scripted.idOf(String.fromCharCode(0x41 + (i % 20))));

describe("a prompt of exactly the context length", () => {
  it("df11 generate refuses it, naming both numbers (exit 1); one token shorter it generates to the context's end", async () => {
    const ids = promptOf(context).join(",");
    const full = df11("generate", scripted.dir, "--input-ids", ids, "--max-context", String(context), "-n", "8", "--device", "cpu");
    await expect(full).rejects.toMatchObject({
      code: 1,
      stderr: `df11: error: the prompt has ${context} tokens and the context length is ${context}: to generate, a prompt may have at most ${context - 1} tokens (--max-context; this model's maximum is 4096)\n`,
    });
    const shorter = promptOf(context - 1).join(",");
    const r = JSON.parse((await df11("generate", scripted.dir, "--input-ids", shorter, "--max-context", String(context), "-n", "8", "--device", "cpu", "--json")).stdout);
    expect({ text: r.text, stopReason: r.stopReason }).toEqual({ text: "af", stopReason: "max-context" }); // the last token needs no position
    // --batch-size says the same.
    await expect(df11("generate", scripted.dir, "--input-ids", ids, "--input-ids", shorter, "--max-context", String(context), "--device", "cpu")).rejects.toMatchObject({
      stderr: expect.stringContaining(`a prompt has ${context} tokens and the context length is ${context}: to generate, a prompt may have at most ${context - 1} tokens`),
    });
  });

  it("df11 serve answers 400 context_length_exceeded naming both numbers, on /v1/completions and /v1/chat/completions, streamed or not; one token shorter gets finish_reason length; max_tokens 0 scores a full one", async () => {
    const message = `the prompt has ${context} tokens and the context length is ${context}: to generate, a prompt may have at most ${context - 1} tokens`;
    const refused = { status: 400, code: "context_length_exceeded", message: expect.stringContaining(message) };
    await expect(client.completions.create({ model: "m", prompt: promptOf(context), max_tokens: 8 })).rejects.toMatchObject({ ...refused, param: "prompt" });
    await expect(client.completions.create({ model: "m", prompt: promptOf(context), max_tokens: 8, stream: true })).rejects.toMatchObject({ ...refused, param: "prompt" });
    await expect(client.chat.completions.create({ model: "m", messages: user("hi"), max_tokens: 8 })).rejects.toMatchObject({ ...refused, param: "messages" });
    const shorter = await client.completions.create({ model: "m", prompt: promptOf(context - 1), max_tokens: 8, temperature: 0 });
    expect(shorter.choices[0]).toMatchObject({ text: "af", finish_reason: "length" });
    const scored = await client.completions.create({ model: "m", prompt: promptOf(context), max_tokens: 0, echo: true, logprobs: 0 });
    expect(scored.choices[0].logprobs?.token_logprobs).toHaveLength(context);
    expect(scored.usage).toMatchObject({ prompt_tokens: context, completion_tokens: 0 });
  });
});
