// transformers as a peer for what users see: on the same tiny scripted models, transformers' generate
// (with the model's generation_config.json) stops where df11 stops and decodes the same text; its
// log-softmax equals df11's prompt log-probabilities; its apply_chat_template renders what df11 renders
// (tools, tool-call history, template variables) or raises the same message. Needs $DF11_PYTHON with
// torch + transformers; skipped, saying why, without it.
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChatTemplateError, loadModel, TextTokenizer, type ChatMessage, type ToolDefinition } from "@df11/models";
import { repoRoot } from "../../../test-support/fixtures.js";
import { pythonSkipReason } from "../../../test-support/python.js";
import {
  chatTemplatesRoot,
  CHATML_TOOLS_TEMPLATE,
  LLAMA3_TOOLS_TEMPLATE,
  STRICT_TEMPLATE,
  TEMPLATE_SPECIALS,
  uniqueTokens,
  writeScriptedModel,
  AFE,
  bytesTok,
} from "../../../test-support/scripted-model.js";
import { compressModel } from "../src/index.js";
import { df11 } from "./helpers.js";

const skipReason = pythonSkipReason(["torch", "transformers"], "transformers generation peer tests");

/** Ask tools/peer_generation.py several things at once (one Python start). */
function peers<T>(requests: object[]): Promise<T[]> {
  return new Promise((resolve, reject) => {
    const p = execFile(process.env.DF11_PYTHON!, [join(repoRoot, "tools", "peer_generation.py")], { maxBuffer: 1 << 24 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${err.message}\n${stderr}`));
      else resolve(JSON.parse(stdout.trim().split("\n").pop()!));
    });
    p.stdin!.end(JSON.stringify(requests));
  });
}

const b = bytesTok;
const CHAR_SAMPLES = ["Привет, мир! 中文 👩‍💻🇫🇷", "e\u0301 𝔘𝔫𝔦 한국어 עברית"];

const TOOLS: ToolDefinition[] = [
  { type: "function", function: { name: "get_weather", description: "Weather in a city", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } } },
];
const CALL = { id: "abcdefghi", type: "function" as const, function: { name: "get_weather", arguments: '{"city": "Paris"}' } };
/** Conversations to render: [messages, tools, template variables]. */
const CONVERSATIONS: Array<[ChatMessage[], ToolDefinition[] | undefined, Record<string, unknown>]> = [
  [[{ role: "user", content: "hi" }], undefined, {}],
  [[{ role: "system", content: "Be brief." }, { role: "user", content: "hi" }, { role: "assistant", content: "hello" }, { role: "user", content: "é 😀?" }], undefined, {}],
  [[{ role: "user", content: "weather in Paris?" }], TOOLS, {}],
  [[{ role: "system", content: "Use tools." }, { role: "user", content: "weather?" }, { role: "assistant", content: "", tool_calls: [CALL] }, { role: "tool", tool_call_id: CALL.id, content: "sunny" }], TOOLS, {}],
  [[{ role: "user", content: "hi" }], undefined, { enable_thinking: false }],
  [[{ role: "user", content: "hi" }, { role: "user", content: "again" }], undefined, {}],
  [[{ role: "system", content: "only" }], TOOLS, {}],
];
/** Our templates, and the real ones of public models where ../shared/chat-templates has them. */
const TEMPLATES: Array<[string, string]> = [
  ["chatml-tools", CHATML_TOOLS_TEMPLATE],
  ["llama3-tools", LLAMA3_TOOLS_TEMPLATE],
  ["strict", STRICT_TEMPLATE],
];
if (existsSync(chatTemplatesRoot)) {
  for (const name of ["Qwen-Qwen3-0.6B", "Qwen-Qwen2.5-7B-Instruct", "meta-llama-Llama-3.1-8B-Instruct", "meta-llama-Llama-3.2-3B-Instruct", "google-gemma-2-2b-it", "mistralai-Mistral-Nemo-Instruct-2407", "microsoft-Phi-3.5-mini-instruct"]) {
    TEMPLATES.push([name, readFileSync(join(chatTemplatesRoot, `${name}.jinja`), "utf8")]);
  }
} else console.warn(`[df11 tests] real chat templates not found at ${chatTemplatesRoot}: comparing our own templates only`);

/** transformers takes tool-call arguments as objects (what vLLM and df11 hand the template). */
const pyMessages = (messages: ChatMessage[]) =>
  messages.map((m) => (m.tool_calls ? { ...m, tool_calls: m.tool_calls.map((c) => ({ ...c, function: { ...c.function, arguments: JSON.parse(c.function.arguments) } })) } : m));

let work: string;
/** transformers' answers, by name (all asked in one Python run). */
const ref = new Map<string, { ids?: number[]; text?: string; error?: string; logprobs?: number[]; top?: Array<[number, number]> }>();
let scoreIds: number[];
afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe.skipIf(!!skipReason)(`transformers as a generation peer${skipReason ? ` (skipped: ${skipReason})` : ""}`, () => {
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "df11-genpeers-"));
    const requests: Array<[string, object]> = [];
    // Stopping rules: config.json eos 0, generation_config.json [0, 260], tokenizer EOS 256.
    await writeScriptedModel(join(work, "eos"), {
      script: [...AFE, "<|eot|>", "Z", "Y"],
      special: TEMPLATE_SPECIALS,
      config: { eos_token_id: 0 },
      generationConfig: { eos_token_id: [0, 260] },
      tokenizerConfig: { eos_token: "<|endoftext|>" },
    });
    await compressModel(join(work, "eos"), join(work, "eos-df11"));
    requests.push(["eos", { op: "generate", dir: join(work, "eos"), prompt: "hi", max_new_tokens: 20 }]);
    for (const [i, text] of CHAR_SAMPLES.entries()) {
      await writeScriptedModel(join(work, `chars-${i}`), { script: [...uniqueTokens(text), "<|eot|>"], special: TEMPLATE_SPECIALS, config: { eos_token_id: 260 } });
      requests.push([`chars-${i}`, { op: "generate", dir: join(work, `chars-${i}`), prompt: "hi", max_new_tokens: 64 }]);
    }
    await writeScriptedModel(join(work, "penalty"), {
      script: ["A", "<|eot|>"],
      transitions: [{ from: "?", to: "A", logit: 3 }, { from: "?", to: "B", logit: 2.875 }, { from: "B", to: "<|eot|>", logit: 8 }],
      special: TEMPLATE_SPECIALS,
      generationConfig: { eos_token_id: 260, do_sample: false, repetition_penalty: 1.5 },
    });
    requests.push(["penalty", { op: "generate", dir: join(work, "penalty"), prompt: "A?", max_new_tokens: 4 }]);
    const s = await writeScriptedModel(join(work, "score"), {
      script: [...AFE, "<|eot|>"],
      transitions: [{ from: "a", to: "b", logit: 2.5 }, { from: "a", to: "c", logit: -1.25 }],
      special: TEMPLATE_SPECIALS,
      config: { eos_token_id: 260 },
    });
    scoreIds = ["x", "a", "f", b(0xc3), b(0xa9), "a", "b", "a", "Z"].map((t) => s.idOf(t));
    requests.push(["score", { op: "score", dir: join(work, "score"), ids: scoreIds }]);
    for (const [name, template] of TEMPLATES) {
      const dir = join(work, `template-${name}`);
      await writeScriptedModel(dir, { script: ["x"], special: TEMPLATE_SPECIALS, tokenizerConfig: { bos_token: "<|begin_of_text|>", eos_token: "<|eot_id|>", chat_template: template } });
      CONVERSATIONS.forEach(([messages, tools, kwargs], i) => requests.push([`${name}/${i}`, { op: "template", dir, messages: pyMessages(messages), tools: tools ?? null, kwargs }]));
    }
    const answers = await peers<NonNullable<ReturnType<typeof ref.get>>>(requests.map(([, r]) => r));
    requests.forEach(([key], i) => ref.set(key, answers[i]));
  });

  it("stopping rules: config.json eos 0 + generation_config.json [0, 260] — transformers and df11 (BF16 and DF11, CLI and library) stop at 260 with the same ids and text", async () => {
    const expected = ref.get("eos")!;
    expect(expected.ids!.at(-1)).toBe(260);
    expect(expected.text).toBe("afé 😀");
    for (const d of [join(work, "eos"), join(work, "eos-df11")]) {
      const ours = JSON.parse((await df11("generate", d, "--prompt", "hi", "-n", "20", "--json", "--device", "cpu")).stdout);
      expect({ ids: ours.tokenIds, text: ours.text }).toEqual(expected);
      using model = await loadModel(d, { device: "cpu" });
      const r = await model.generate("hi", { maxTokens: 20 }).result();
      expect({ ids: r.tokenIds, text: r.text }).toEqual(expected);
    }
  });

  it("characters split across tokens: transformers' decode of the same ids is df11's streamed text, in several scripts", async () => {
    for (const [i, text] of CHAR_SAMPLES.entries()) {
      const expected = ref.get(`chars-${i}`)!;
      expect(expected.text).toBe(text);
      using model = await loadModel(join(work, `chars-${i}`), { device: "cpu" });
      const pieces: string[] = [];
      const ids: number[] = [];
      for await (const t of model.generate("hi", { maxTokens: 64 })) {
        pieces.push(t.text);
        ids.push(t.id);
      }
      expect({ ids, text: pieces.join("") }).toEqual(expected);
    }
  });

  it("generation_config.json do_sample: false + repetition_penalty: transformers and df11 both answer B", async () => {
    expect(ref.get("penalty")!.text).toBe("B");
    expect(JSON.parse((await df11("generate", join(work, "penalty"), "--prompt", "A?", "-n", "4", "--json", "--device", "cpu")).stdout).text).toBe("B");
  });

  it("prompt log-probabilities (echo + logprobs + max_tokens 0) equal transformers' log-softmax", async () => {
    const expected = ref.get("score")!;
    using model = await loadModel(join(work, "score"), { device: "cpu" });
    const r = await model.generate(scoreIds, { maxTokens: 0, promptLogprobs: 1 }).result();
    const ours = r.promptLogprobs!.slice(1).map((lp) => lp!.logprob);
    const diff = Math.max(...ours.map((v, i) => Math.abs(v - expected.logprobs![i])));
    console.log(`[peer] max |prompt logprob − transformers|: ${diff.toExponential(2)}`);
    expect(diff).toBeLessThan(1e-5);
    expect(r.promptLogprobs!.slice(1).map((lp) => lp!.top[0].id)).toEqual(expected.top!.map((t) => t[0])); // the most likely token at each position
  });

  it(`chat templates (${TEMPLATES.map(([n]) => n).join(", ")}): every conversation renders as transformers renders it, or both raise the template's message`, async () => {
    let compared = 0;
    for (const [name] of TEMPLATES) {
      const tokenizer = (await TextTokenizer.load(join(work, `template-${name}`)))!;
      for (const [i, [messages, tools, kwargs]] of CONVERSATIONS.entries()) {
        let ours: { text?: string; error?: string };
        try {
          ours = { text: tokenizer.applyChatTemplate(messages, { tools, variables: kwargs }) };
        } catch (e) {
          expect(e).toBeInstanceOf(ChatTemplateError);
          ours = { error: (e as Error).message.replace(/^chat template: /, "") };
        }
        expect(ours, `${name}: ${JSON.stringify(messages)}`).toEqual(ref.get(`${name}/${i}`));
        compared++;
      }
    }
    expect(compared).toBe(TEMPLATES.length * CONVERSATIONS.length);
  });
});
