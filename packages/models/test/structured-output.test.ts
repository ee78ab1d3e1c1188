// The pieces behind OpenAI's response_format, tools and sampling parameters: the JSON automaton, token
// masks over a real byte-level vocabulary, the tool-call readers (Hermes/Qwen and Llama 3.x), the sampler's
// penalties, and generation_config.json defaults.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  forcedToolCall,
  grammarConstraint,
  jsonObjectConstraint,
  JsonObjectAutomaton,
  parseGenerationConfig,
  requireToolCallFormat,
  resolveSampling,
  Sampler,
  TextTokenizer,
  tokenLogprob,
  ToolCallParser,
  ToolsNotSupportedError,
  GenerationConfigError,
  ConstraintError,
} from "../src/index.js";
import { writeScriptedModel, type ScriptedModel } from "../../../test-support/scripted-model.js";

/** Bytes the automaton takes before it refuses one (the whole length when it takes all). */
function accepted(text: string): { taken: number; complete: boolean } {
  const a = new JsonObjectAutomaton();
  let s: ReturnType<typeof a.step> = a.start;
  const bytes = new TextEncoder().encode(text);
  let i = 0;
  for (; i < bytes.length; i++) {
    const next = a.step(s!, bytes[i]);
    if (next === undefined) break;
    s = next;
  }
  return { taken: i, complete: i === bytes.length && a.isComplete(s!) };
}

describe("JSON automaton (response_format json_object)", () => {
  it("takes every JSON object text JSON.parse takes, whole, and says when it is complete", () => {
    const values = [
      {},
      { a: 1 },
      { city: "Paris", temp: -3.5e2, ok: true, none: null, list: [1, [2, { x: [] }], "s"] },
      { "é😀中": "\u0000\n\"\\\u00e9", nested: { deep: { deeper: [0, -0.25, 1e-7, 12345678901234] } } },
    ];
    for (const v of values) {
      for (const text of [JSON.stringify(v), JSON.stringify(v, null, 2)]) {
        expect(accepted(text), text).toEqual({ taken: new TextEncoder().encode(text).length, complete: true });
        expect(accepted(text.slice(0, -1)).complete).toBe(false); // a prefix is not complete
      }
    }
  });

  it("refuses at the first byte that cannot continue a JSON object", () => {
    const cases: Array<[string, number]> = [
      ["[1]", 0], // the top level is an object
      ['"x"', 0],
      ["Sure! {}", 0],
      ['{"a" 1}', 5],
      ['{"a": 01}', 7],
      ['{"a": tru}', 9],
      ['{"a": 1,}', 8],
      ['{"a": "\u0001"}', 7], // control characters must be escaped
      ['{"a": "\\x"}', 8],
      ["{} {}", 2],
      ['{"a": 1.}', 8],
      ["{" + " ".repeat(21) + "}", 21], // whitespace runs are bounded
    ];
    for (const [text, at] of cases) expect(accepted(text).taken, text).toBe(at);
  });
});

let work: string;
let model: ScriptedModel;
let tokenizer: TextTokenizer;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "df11-structured-"));
  model = await writeScriptedModel(join(work, "m"), {
    script: ["x"],
    extraTokens: ['{"', "city", '": "', "Paris", '"}', "Sure", "<tool", "_call", "get_weather", "get_time"],
    special: ["<|end|>"],
    added: ["<tool_call>", "</tool_call>"],
  });
  tokenizer = (await TextTokenizer.load(model.dir))!;
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Ids a constraint allows now. */
function allowedIds(c: { mask(l: Float32Array): void }): number[] {
  const logits = new Float32Array(model.vocabSize);
  c.mask(logits);
  return [...logits.keys()].filter((i) => logits[i] === 0);
}

describe("token masks", () => {
  it("json_object: a mask allows exactly the tokens whose bytes continue the JSON, then only end-of-sequence", () => {
    const eos = model.idOf("<|end|>");
    const c = jsonObjectConstraint(tokenizer, [eos]);
    const first = allowedIds(c);
    expect(first).toContain(model.idOf("{"));
    expect(first).toContain(model.idOf('{"'));
    expect(first).toContain(model.idOf(" "));
    expect(first).not.toContain(model.idOf("Sure"));
    expect(first).not.toContain(eos);
    expect(first).not.toContain(model.idOf("<tool_call>"));
    // Brute force: a token is allowed iff the automaton takes all its bytes.
    for (let id = 0; id < model.vocabSize; id++) {
      const bytes = tokenizer.tokenBytes(id);
      const text = new TextDecoder().decode(bytes);
      const ok = bytes.length > 0 && accepted(text).taken === bytes.length && text === new TextDecoder().decode(bytes);
      if (bytes.every((b) => b < 0x80)) expect(first.includes(id), `token ${id} ${JSON.stringify(text)}`).toBe(ok);
    }
    for (const t of ['{"', "city", '": "', "Paris", '"}']) {
      expect(allowedIds(c)).toContain(model.idOf(t));
      c.accept(model.idOf(t));
    }
    expect(c.complete).toBe(true);
    expect(allowedIds(c)).toEqual([eos]);
  });

  it("forced tool calls: only the given names, then JSON arguments, then the closing text", () => {
    const eos = model.idOf("<|end|>");
    const c = grammarConstraint(forcedToolCall("hermes", ["get_weather", "get_time"]), tokenizer, [eos], "tool_choice");
    expect(allowedIds(c)).toEqual([model.idOf("<"), model.idOf("<tool"), model.idOf("<tool_call>")].sort((a, b) => a - b));
    c.accept(model.idOf("<tool_call>"));
    for (const ch of '\n{"name": "') c.accept(model.idOf(ch));
    const names = allowedIds(c);
    expect(names).toContain(model.idOf("get_weather"));
    expect(names).toContain(model.idOf("get_time"));
    expect(names).toContain(model.idOf("g"));
    expect(names).not.toContain(model.idOf("x"));
    expect(() => jsonObjectConstraint(tokenizer, [])).toThrow(ConstraintError);
  });
});

describe("tool-call readers", () => {
  const hermes = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>';
  it("Hermes/Qwen blocks: the same calls and content however the text is split; bad blocks stay content", () => {
    for (const size of [1, 2, 3, 7, 1000]) {
      const p = new ToolCallParser("hermes");
      const text = `Let me check. ${hermes}`;
      let content = "";
      const calls: Array<{ name: string; arguments: string }> = [];
      for (let i = 0; i < text.length; i += size) {
        const d = p.push(text.slice(i, i + size));
        content += d.content;
        calls.push(...d.calls);
      }
      const end = p.finish();
      content += end.content;
      calls.push(...end.calls);
      expect(content, `split ${size}`).toBe("Let me check. ");
      expect(calls.map((c) => [c.name, JSON.parse(c.arguments)])).toEqual([
        ["get_weather", { city: "Paris" }],
        ["get_time", {}],
      ]);
    }
    const bad = new ToolCallParser("hermes");
    const d = bad.push("<tool_call>not json</tool_call> ok");
    expect(d.calls).toEqual([]);
    expect(d.content + bad.finish().content).toBe("<tool_call>not json</tool_call> ok");
    const one = new ToolCallParser("hermes", 1);
    expect(one.push(hermes).calls.map((c) => c.name)).toEqual(["get_weather"]);
    expect(one.done).toBe(true);
    expect(new ToolCallParser("hermes").push("a < b and <tool").content).toBe("a < b and "); // "<tool" may still open a call
  });

  it("Llama 3.x JSON calls: a reply that is JSON calls is read at the end; other replies stream as content", () => {
    const p = new ToolCallParser("llama3-json");
    expect(p.push(' {"name": "get_weather", "parameters": {"city": ').content).toBe("");
    const d = p.push('"Paris"}}; {"name": "get_time", "parameters": {}}');
    expect(d.calls).toEqual([]);
    const end = p.finish();
    expect(end.calls.map((c) => [c.name, c.arguments])).toEqual([
      ["get_weather", '{"city":"Paris"}'],
      ["get_time", "{}"],
    ]);
    expect(end.calls[0].id).toMatch(/^call_[A-Za-z0-9_-]{24}$/);
    const text = new ToolCallParser("llama3-json");
    expect(text.push("Paris is sunny").content).toBe("Paris is sunny");
    const notCall = new ToolCallParser("llama3-json");
    notCall.push('{"answer": 42}');
    expect(notCall.finish()).toEqual({ content: '{"answer": 42}', calls: [] });
  });

  it("which templates take tools: Hermes and Llama 3.x formats; others are refused with the reason", () => {
    expect(requireToolCallFormat("{% if tools %}<tool_call>{% endif %}")).toBe("hermes");
    expect(requireToolCallFormat('{{ tools }}<|start_header_id|>{"name": function name, "parameters": …}')).toBe("llama3-json");
    expect(() => requireToolCallFormat("{% for m in messages %}{{ m.content }}{% endfor %}")).toThrow(/does not take tools/);
    expect(() => requireToolCallFormat("{{ tools }}[TOOL_CALLS]")).toThrow(ToolsNotSupportedError);
    expect(() => requireToolCallFormat(undefined)).toThrow(/no chat template/);
  });
});

describe("sampling parameters", () => {
  const logits = Float32Array.from([3, 2.5, 1, 0]);
  it("presence and frequency penalties count generated tokens only, as OpenAI defines them", () => {
    const presence = new Sampler({ presencePenalty: 1 });
    expect(presence.next(logits, [0, 0], [])).toBe(0); // the prompt's tokens are not penalised
    expect(presence.next(logits, [0], [0])).toBe(1); // 3 - 1 < 2.5
    const frequency = new Sampler({ frequencyPenalty: 0.2 });
    expect(frequency.next(logits, [], [0, 0])).toBe(0); // 3 - 0.4 > 2.5
    expect(frequency.next(logits, [], [0, 0, 0])).toBe(1); // 3 - 0.6 < 2.5
    expect(new Sampler({ frequencyPenalty: -1 }).next(logits, [], [2, 2])).toBe(0); // 1 + 2 = 3, ties go to the lower id
  });
  it("logit bias shifts tokens before everything else; -100 bans a token", () => {
    expect(new Sampler({ logitBias: { 3: 5 } }).next(logits, [])).toBe(3);
    expect(new Sampler({ logitBias: { 0: -100 } }).next(logits, [])).toBe(1);
    expect(new Sampler({ logitBias: { 0: -100 } }).isGreedy).toBe(false);
    expect(() => new Sampler({ logitBias: { 1: Number.NaN } })).toThrow(/logit bias/);
  });
  it("log-probabilities are the model's (log-softmax of the raw logits), with the top alternatives in order", () => {
    const lp = tokenLogprob(logits, 2, 3);
    const z = Math.log(Math.exp(3) + Math.exp(2.5) + Math.exp(1) + 1);
    expect(lp.logprob).toBeCloseTo(1 - z, 12);
    expect(lp.top.map((t) => t.id)).toEqual([0, 1, 2]);
    expect(lp.top[0].logprob).toBeCloseTo(3 - z, 12);
  });
});

describe("generation_config.json defaults", () => {
  it("reads every end-of-sequence id and transformers' sampling rules (do_sample decides)", () => {
    expect(parseGenerationConfig({ eos_token_id: [0, 260], do_sample: true, temperature: 0.6, top_p: 0.9, top_k: 20 })).toEqual({
      eosTokenIds: [0, 260],
      sampling: { temperature: 0.6, topP: 0.9, topK: 20 },
    });
    expect(parseGenerationConfig({ eos_token_id: 7, do_sample: true }).sampling).toEqual({ temperature: 1 });
    expect(parseGenerationConfig({ do_sample: false, temperature: 0.6, repetition_penalty: 1.1 }).sampling).toEqual({ temperature: 0, repetitionPenalty: 1.1 });
    expect(parseGenerationConfig({ temperature: 0.6, top_p: 0.9 }).sampling).toEqual({}); // without do_sample, transformers samples not
    expect(() => parseGenerationConfig({ eos_token_id: "2" })).toThrow(GenerationConfigError);
    expect(() => parseGenerationConfig({ top_p: 2, do_sample: true })).toThrow(/generation_config.json: top_p/);
  });
  it("a request's settings win, the model's fill the rest, the surface's default comes last; each says where it came from", () => {
    const r = resolveSampling({ topP: 0.5, seed: 3 }, { temperature: 0.6, topP: 0.9, topK: 20 }, { temperature: 1 });
    expect(r.options).toMatchObject({ temperature: 0.6, topP: 0.5, topK: 20, seed: 3 });
    expect(r.sources).toEqual({ temperature: "generation_config.json", topK: "generation_config.json", topP: "request", minP: "default", repetitionPenalty: "default" });
    expect(resolveSampling({}, undefined, { temperature: 1 }).options.temperature).toBe(1);
  });
});
