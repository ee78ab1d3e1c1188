// A tiny Llama-architecture model whose greedy output we choose, with a byte-level BPE tokenizer (GPT-2's
// byte alphabet): for tests of what users see — stopping rules, characters split across tokens, logprobs,
// tool calls, constrained decoding. transformers loads it as it is (the Python peer tests check that).
//
// How it is scripted: embeddings are one-hot (hidden ≥ vocabulary), the layer adds nothing to the
// residual stream (o_proj and down_proj are zero), and the final norm makes the last hidden state the
// one-hot row of the current token, so logits[next] = lm_head[next][current]: a table of transitions.
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** A token: text (its UTF-8 bytes as one token; an added token's content names it) or raw bytes. */
export type Tok = string | { readonly bytes: readonly number[] };

/** A token of these raw bytes (part of a character, say). */
export const bytesTok = (...bytes: number[]): Tok => ({ bytes });

/** "afé 😀" (issue 16's example) with é and the emoji split into single bytes, as byte-level BPE splits them. */
export const AFE: readonly Tok[] = ["a", "f", bytesTok(0xc3), bytesTok(0xa9), " ", bytesTok(0xf0), bytesTok(0x9f), bytesTok(0x98), bytesTok(0x80)];

/** Whether text is whole characters: no lone surrogate (and, with `noReplacement`, no U+FFFD). */
export const wholeCharacters = (s: string, noReplacement = true): boolean =>
  !(noReplacement && s.includes("\uFFFD")) && !/\p{Surrogate}/u.test(s.replace(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g, ""));

export interface ScriptedModelSpec {
  /**
   * The greedy continuation: each token follows the one before it (logit 8), and the first follows every
   * token that has no transition of its own (logit 4) — so any prompt starts it.
   */
  readonly script: readonly Tok[];
  /** More transitions: after `from`, `to` gets `logit` (an exact BF16 value). */
  readonly transitions?: ReadonlyArray<{ readonly from: Tok; readonly to: Tok; readonly logit: number }>;
  /** More vocabulary entries (multi-byte tokens) with no transitions of their own (they continue with the script). */
  readonly extraTokens?: readonly Tok[];
  /** Added tokens marked special (left out of decoded text), ids 256… in this order. */
  readonly special?: readonly string[];
  /** Added tokens not special (kept in text), e.g. `<tool_call>`. */
  readonly added?: readonly string[];
  /** Merged into config.json (e.g. `eos_token_id`). */
  readonly config?: Record<string, unknown>;
  /** generation_config.json; none written when absent. */
  readonly generationConfig?: Record<string, unknown>;
  /** Merged into tokenizer_config.json (e.g. `eos_token`, `chat_template`). */
  readonly tokenizerConfig?: Record<string, unknown>;
}

export interface ScriptedModel {
  readonly dir: string;
  readonly vocabSize: number;
  /** The id of a token as the spec names it. */
  idOf(tok: Tok): number;
}

const HIDDEN = 1024; // one-hot embeddings need hidden ≥ vocabulary; 1/√1024 = 1/32 is exact in BF16

/** GPT-2's byte → printable character table, in its vocabulary order (id i = BYTE_ORDER[i]). */
const BYTE_ORDER: number[] = [];
const BYTE_CHAR = new Map<number, string>();
{
  for (let b = 33; b <= 126; b++) BYTE_ORDER.push(b);
  for (let b = 161; b <= 172; b++) BYTE_ORDER.push(b);
  for (let b = 174; b <= 255; b++) BYTE_ORDER.push(b);
  for (const b of BYTE_ORDER) BYTE_CHAR.set(b, String.fromCharCode(b));
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!BYTE_CHAR.has(b)) {
      BYTE_ORDER.push(b);
      BYTE_CHAR.set(b, String.fromCharCode(256 + n++));
    }
  }
}

const bytesOf = (tok: Tok): number[] => (typeof tok === "string" ? [...new TextEncoder().encode(tok)] : [...tok.bytes]);
const byteLevel = (bytes: readonly number[]) => bytes.map((b) => BYTE_CHAR.get(b)!).join("");

/** BF16 bits of a float32 (round to nearest even). */
function bf16(x: number): number {
  const u = new Uint32Array(Float32Array.of(x).buffer)[0];
  return (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
}

/** A minimal safetensors writer (BF16 tensors only). */
async function writeSafetensors(path: string, tensors: Array<{ name: string; shape: number[]; data: Uint16Array }>): Promise<void> {
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: "BF16", shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(json.length));
  await writeFile(path, Buffer.concat([head, Buffer.from(json), ...tensors.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength))]));
}

/** Small deterministic weights (exact BF16 values). */
function noise(count: number, seed: number): Uint16Array {
  const out = new Uint16Array(count);
  let s = seed >>> 0;
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = bf16(((s >>> 24) - 128) / 4096);
  }
  return out;
}

/** Write the model, tokenizer and configs to `dir`. */
export async function writeScriptedModel(dir: string, spec: ScriptedModelSpec): Promise<ScriptedModel> {
  await mkdir(dir, { recursive: true });
  const special = spec.special ?? [];
  const added = spec.added ?? [];
  const vocab = new Map<string, number>(BYTE_ORDER.map((b, i) => [BYTE_CHAR.get(b)!, i]));
  const addedIds = new Map<string, number>();
  for (const content of [...special, ...added]) addedIds.set(content, vocab.size + addedIds.size);
  let next = vocab.size + addedIds.size;
  const idOf = (tok: Tok): number => {
    if (typeof tok === "string" && addedIds.has(tok)) return addedIds.get(tok)!;
    const key = byteLevel(bytesOf(tok));
    if (!vocab.has(key)) vocab.set(key, next++);
    return vocab.get(key)!;
  };

  // The transition table: logits[to][from].
  const edges = new Map<number, Map<number, number>>();
  const edge = (from: number, to: number, logit: number) => {
    if (!edges.has(from)) edges.set(from, new Map());
    edges.get(from)!.set(to, logit);
  };
  const script = spec.script.map(idOf);
  if (new Set(script).size !== script.length) throw new Error("a scripted token repeats: give it as a different token (bytes split otherwise)");
  for (let i = 1; i < script.length; i++) edge(script[i - 1], script[i], 8);
  for (const t of spec.transitions ?? []) edge(idOf(t.from), idOf(t.to), t.logit);
  for (const t of spec.extraTokens ?? []) idOf(t);
  const size = next;
  if (size > HIDDEN) throw new Error(`${size} tokens: at most ${HIDDEN}`);
  const lmHead = new Uint16Array(size * HIDDEN);
  for (let from = 0; from < size; from++) {
    const out = edges.get(from) ?? new Map([[script[0], 4]]);
    for (const [to, logit] of out) lmHead[to * HIDDEN + from] = bf16(logit);
  }
  const embed = new Uint16Array(size * HIDDEN);
  for (let t = 0; t < size; t++) embed[t * HIDDEN + t] = bf16(1);

  const heads = 2;
  const headDim = 64;
  const intermediate = 64;
  const ones = (n: number) => new Uint16Array(n).fill(bf16(1));
  await writeSafetensors(join(dir, "model.safetensors"), [
    { name: "model.embed_tokens.weight", shape: [size, HIDDEN], data: embed },
    { name: "lm_head.weight", shape: [size, HIDDEN], data: lmHead },
    { name: "model.norm.weight", shape: [HIDDEN], data: new Uint16Array(HIDDEN).fill(bf16(1 / 32)) },
    { name: "model.layers.0.input_layernorm.weight", shape: [HIDDEN], data: ones(HIDDEN) },
    { name: "model.layers.0.post_attention_layernorm.weight", shape: [HIDDEN], data: ones(HIDDEN) },
    { name: "model.layers.0.self_attn.q_proj.weight", shape: [heads * headDim, HIDDEN], data: noise(heads * headDim * HIDDEN, 1) },
    { name: "model.layers.0.self_attn.k_proj.weight", shape: [headDim, HIDDEN], data: noise(headDim * HIDDEN, 2) },
    { name: "model.layers.0.self_attn.v_proj.weight", shape: [headDim, HIDDEN], data: noise(headDim * HIDDEN, 3) },
    { name: "model.layers.0.self_attn.o_proj.weight", shape: [HIDDEN, heads * headDim], data: new Uint16Array(HIDDEN * heads * headDim) },
    { name: "model.layers.0.mlp.gate_proj.weight", shape: [intermediate, HIDDEN], data: noise(intermediate * HIDDEN, 4) },
    { name: "model.layers.0.mlp.up_proj.weight", shape: [intermediate, HIDDEN], data: noise(intermediate * HIDDEN, 5) },
    { name: "model.layers.0.mlp.down_proj.weight", shape: [HIDDEN, intermediate], data: new Uint16Array(HIDDEN * intermediate) },
  ]);
  const config = {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    vocab_size: size,
    hidden_size: HIDDEN,
    intermediate_size: intermediate,
    num_hidden_layers: 1,
    num_attention_heads: heads,
    num_key_value_heads: 1,
    head_dim: headDim,
    hidden_act: "silu",
    max_position_embeddings: 512,
    rms_norm_eps: 1e-10,
    rope_theta: 10000,
    tie_word_embeddings: false,
    torch_dtype: "bfloat16",
    ...spec.config,
  };
  await writeFile(join(dir, "config.json"), JSON.stringify(config, null, 2));
  if (spec.generationConfig) await writeFile(join(dir, "generation_config.json"), JSON.stringify(spec.generationConfig, null, 2));
  const addedTokens = [...addedIds].map(([content, id]) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: special.includes(content) }));
  // Added tokens are in the model's vocabulary too, at their ids (else the Rust tokenizers library gives them new ids after it).
  const modelVocab = Object.fromEntries([...vocab, ...addedIds]);
  const tokenizer = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab: modelVocab, merges: [] },
  };
  await writeFile(join(dir, "tokenizer.json"), JSON.stringify(tokenizer));
  await writeFile(
    join(dir, "tokenizer_config.json"),
    JSON.stringify({ tokenizer_class: "PreTrainedTokenizerFast", clean_up_tokenization_spaces: false, model_max_length: 512, ...spec.tokenizerConfig }, null, 2),
  );
  return { dir, vocabSize: size, idOf };
}

/**
 * `text` as tokens no one of which repeats an earlier one (a scripted token has one successor): single
 * bytes where free, else longer runs — so characters split across tokens, as byte-level BPE splits them.
 * `used` carries the tokens already taken across calls; a lone newline is never one of them, since chat
 * templates end their prompt with it (and the script must start after the prompt, not inside itself).
 */
export function uniqueTokens(text: string, used: Set<string> = new Set()): Tok[] {
  used.add("10");
  const bytes = [...new TextEncoder().encode(text)];
  const out: number[][] = [];
  const key = (b: readonly number[]) => b.join(",");
  for (let i = 0; i < bytes.length; ) {
    let n = 1;
    while (i + n <= bytes.length && used.has(key(bytes.slice(i, i + n)))) n++;
    if (i + n > bytes.length) {
      // No free run left at the end: lengthen the token before.
      const last = out.pop();
      if (!last) throw new Error(`cannot split ${JSON.stringify(text)} into unused tokens`);
      used.delete(key(last));
      const joined = [...last, ...bytes.slice(i)];
      if (used.has(key(joined))) throw new Error(`cannot split ${JSON.stringify(text)} into unused tokens`);
      out.push(joined);
      used.add(key(joined));
      break;
    }
    const run = bytes.slice(i, i + n);
    used.add(key(run));
    out.push(run);
    i += n;
  }
  return out.map((b) => ({ bytes: b }));
}

/** ChatML with tools in the Hermes/Qwen way (our own template, written for the tests). */
export const CHATML_TOOLS_TEMPLATE = `{%- if tools %}<|im_start|>system
{% if messages[0].role == 'system' %}{{ messages[0].content }}

{% endif %}# Tools
<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}</tools>
Call a tool as <tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
{% elif messages[0].role == 'system' %}<|im_start|>system
{{ messages[0].content }}<|im_end|>
{% endif %}
{%- for message in messages %}{% if message.role == 'assistant' %}<|im_start|>assistant
{{ message.content }}{% if message.tool_calls %}{% for call in message.tool_calls %}<tool_call>
{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}
</tool_call>{% endfor %}{% endif %}<|im_end|>
{% elif message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% elif message.role != 'system' %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}{% endfor %}
{%- if reasoning_effort is defined %}<|im_start|>system
Reasoning: {{ reasoning_effort }}<|im_end|>
{% endif %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% if enable_thinking is defined and enable_thinking is false %}<think>

</think>

{% endif %}{% endif %}`;

/** Llama 3.x headers with tools as JSON calls (our own template, written for the tests). */
export const LLAMA3_TOOLS_TEMPLATE = `{{- bos_token }}<|start_header_id|>system<|end_header_id|>

{% if tools %}Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.
{% for t in tools %}{{ t | tojson }}
{% endfor %}{% endif %}{% if messages[0].role == 'system' %}{{ messages[0].content }}{% endif %}<|eot_id|>
{%- for message in messages %}{% if message.role != 'system' %}<|start_header_id|>{{ 'ipython' if message.role == 'tool' else message.role }}<|end_header_id|>

{% if message.tool_calls %}{"name": "{{ message.tool_calls[0].function.name }}", "parameters": {{ message.tool_calls[0].function.arguments | tojson }}}{% else %}{{ message.content }}{% endif %}<|eot_id|>{% endif %}{% endfor %}
{%- if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>

{% endif %}`;

/** A template that refuses what Gemma's refuses: a system message, and turns that do not alternate (our own). */
export const STRICT_TEMPLATE = `{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}
{%- for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}
{{- '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}
{%- if add_generation_prompt %}<start_of_turn>model
{% endif %}`;

/** Special tokens the templates above use. */
export const TEMPLATE_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|eot|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<start_of_turn>", "<end_of_turn>"];

/** Real chat templates of public models, beside the checkout in ../shared/chat-templates (never committed here). */
export const chatTemplatesRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "shared", "chat-templates");
