import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import { Tokenizer } from "@huggingface/tokenizers";
import { ModelsError } from "./errors.js";

/** A tool call in an assistant message, as OpenAI's API writes it. */
export interface ChatToolCall {
  readonly id: string;
  readonly type: "function";
  readonly function: { readonly name: string; readonly arguments: string };
}

/** One chat message: OpenAI's shape (text content; tool calls and tool results for function calling). */
export interface ChatMessage {
  readonly role: "system" | "user" | "assistant" | "tool" | string;
  readonly content: string;
  /** assistant: the tools it called. */
  readonly tool_calls?: readonly ChatToolCall[];
  /** tool: the call this message answers. */
  readonly tool_call_id?: string;
  readonly name?: string;
}

/** A function the model may call (OpenAI's `tools` entry). */
export interface ToolDefinition {
  readonly type: "function";
  readonly function: { readonly name: string; readonly description?: string; readonly parameters?: object; readonly strict?: boolean };
}

export interface ChatTemplateOptions {
  /** End with the assistant's turn opened (default true). */
  readonly addGenerationPrompt?: boolean;
  /** Functions the model may call, rendered by the template (it must take `tools`). */
  readonly tools?: readonly ToolDefinition[];
  /** More template variables, e.g. Qwen3's `enable_thinking` (vLLM's chat_template_kwargs). */
  readonly variables?: Readonly<Record<string, unknown>>;
}

/**
 * Rendering the chat template failed: the template raised (`raise_exception`, e.g. Gemma's "System role
 * not supported"), or it could not be rendered for these messages. The message is the template's.
 */
export class ChatTemplateError extends ModelsError {
  override name = "ChatTemplateError";
}

const tokenText = (t: unknown): string | undefined =>
  typeof t === "string" ? t : t && typeof t === "object" && "content" in t ? String((t as { content: unknown }).content) : undefined;

/** GPT-2's byte ↔ printable-character table (ByteLevel pre-tokenizer and decoder). */
const UNICODE_TO_BYTE: ReadonlyMap<string, number> = (() => {
  const bytes: number[] = [];
  for (let b = 33; b <= 126; b++) bytes.push(b);
  for (let b = 161; b <= 172; b++) bytes.push(b);
  for (let b = 174; b <= 255; b++) bytes.push(b);
  const chars = bytes.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bytes.includes(b)) {
      bytes.push(b);
      chars.push(256 + n++);
    }
  }
  return new Map(bytes.map((b, i) => [String.fromCharCode(chars[i]), b]));
})();

interface DecoderStep {
  readonly type: string;
  readonly pattern?: { String?: string };
  readonly content?: string;
  readonly prefix?: string;
}

const utf8 = new TextEncoder();

/**
 * A model's tokenizer (`tokenizer.json` + `tokenizer_config.json`, through @huggingface/tokenizers) and
 * its chat template (rendered with @huggingface/jinja).
 */
export class TextTokenizer {
  private readonly templates = new Map<string, Template>();
  private readonly specialIds: ReadonlySet<number>;
  private readonly addedIds: ReadonlySet<number>;
  private readonly decoderSteps: readonly DecoderStep[];
  private readonly decoderTypes: ReadonlySet<string>;
  private bytesCache: Uint8Array[] | undefined;
  private size: number | undefined;

  private constructor(
    private readonly tokenizer: Tokenizer,
    json: { decoder?: DecoderStep & { decoders?: DecoderStep[] }; added_tokens?: Array<{ id: number; content: string; special?: boolean }> },
    private readonly config: Record<string, unknown>,
    /** The chat template (`default`), and named ones such as `tool_use`. */
    private readonly chatTemplates: ReadonlyMap<string, string>,
  ) {
    this.specialIds = new Set((json.added_tokens ?? []).filter((t) => t.special).map((t) => t.id));
    this.addedIds = new Set((json.added_tokens ?? []).map((t) => t.id));
    const d = json.decoder;
    this.decoderSteps = !d ? [] : d.type === "Sequence" ? (d.decoders ?? []) : [d];
    this.decoderTypes = new Set(this.decoderSteps.map((s) => s.type));
  }

  /** Load from a model directory; undefined when it has no tokenizer.json. */
  static async load(directory: string): Promise<TextTokenizer | undefined> {
    const path = join(directory, "tokenizer.json");
    if (!existsSync(path)) return undefined;
    const readJson = async (file: string) => {
      try {
        return JSON.parse(await readFile(file, "utf8"));
      } catch (e) {
        throw new ModelsError(`${file}: ${(e as Error).message}`);
      }
    };
    const json = await readJson(path);
    const configPath = join(directory, "tokenizer_config.json");
    const config = existsSync(configPath) ? await readJson(configPath) : {};
    const templates = new Map<string, string>();
    const jinjaPath = join(directory, "chat_template.jinja");
    if (existsSync(jinjaPath)) templates.set("default", await readFile(jinjaPath, "utf8"));
    else if (typeof config.chat_template === "string") templates.set("default", config.chat_template);
    else if (Array.isArray(config.chat_template)) {
      for (const t of config.chat_template as Array<{ name: string; template: string }>) templates.set(t.name, t.template);
    }
    return new TextTokenizer(new Tokenizer(json, config), json, config, templates);
  }

  encode(text: string, addSpecialTokens = true): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  /** Text of token ids; special tokens left out unless `skipSpecialTokens` is false. An empty list gives "". */
  decode(ids: readonly number[], skipSpecialTokens = true): string {
    if (ids.length === 0) return "";
    return this.tokenizer.decode([...ids], { skip_special_tokens: skipSpecialTokens });
  }

  tokenId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }

  /** Ids the tokenizer knows: its vocabulary and added tokens (one past the largest id). */
  get vocabularySize(): number {
    if (this.size === undefined) {
      let max = -1;
      for (const id of this.tokenizer.get_vocab(true).values()) max = Math.max(max, id);
      this.size = max + 1;
    }
    return this.size;
  }

  /** Whether the id is an added token marked special (left out of decoded text). */
  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  /**
   * The bytes a token adds to decoded text (special tokens: none), independent of its neighbours:
   * exact for byte-level BPE (GPT-2, Llama 3, Qwen) and SentencePiece-style vocabularies (▁ and byte
   * fallback `<0xNN>`); for other decoders, the UTF-8 of the token decoded alone.
   */
  tokenBytes(id: number): Uint8Array {
    this.bytesCache ??= [];
    return (this.bytesCache[id] ??= this.computeTokenBytes(id));
  }

  private computeTokenBytes(id: number): Uint8Array {
    if (this.specialIds.has(id)) return new Uint8Array(0);
    const token = this.tokenizer.id_to_token(id);
    if (token === undefined) return new Uint8Array(0);
    if (this.addedIds.has(id)) return utf8.encode(token);
    const types = this.decoderTypes;
    if (types.has("ByteLevel")) {
      const bytes = [...token].map((c) => UNICODE_TO_BYTE.get(c));
      if (bytes.every((b) => b !== undefined)) return Uint8Array.from(bytes as number[]);
    }
    if (types.has("ByteFallback")) {
      const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(token);
      if (m) return Uint8Array.of(parseInt(m[1], 16));
    }
    if (types.has("Replace") || types.has("Metaspace") || types.has("WordPiece")) {
      let text = token;
      for (const s of this.decoderSteps) {
        if (s.type === "Replace" && s.pattern?.String !== undefined) text = text.split(s.pattern.String).join(s.content ?? "");
        if (s.type === "Metaspace") text = text.split("▁").join(" ");
        if (s.type === "WordPiece") text = text.startsWith(s.prefix ?? "##") ? text.slice((s.prefix ?? "##").length) : ` ${text}`;
      }
      return utf8.encode(text);
    }
    return utf8.encode(this.decode([id]));
  }

  /** Every token's bytes (see {@link tokenBytes}), by id. */
  allTokenBytes(): readonly Uint8Array[] {
    const n = this.vocabularySize;
    for (let id = 0; id < n; id++) this.tokenBytes(id);
    return this.bytesCache!;
  }

  get hasChatTemplate(): boolean {
    return this.chatTemplates.has("default");
  }

  /** The chat template's source that renders with (or without) tools: `tool_use` when tools are given and it exists. */
  chatTemplate(withTools = false): string | undefined {
    return (withTools ? this.chatTemplates.get("tool_use") : undefined) ?? this.chatTemplates.get("default");
  }

  /** The EOS token's id from tokenizer_config.json, if any. */
  get eosTokenId(): number | undefined {
    const t = tokenText(this.config.eos_token);
    return t === undefined ? undefined : this.tokenId(t);
  }

  /**
   * Render the chat template for `messages` (ending with the assistant's turn opened unless
   * `addGenerationPrompt` is false), with `tools` and extra variables as transformers passes them.
   * Throws {@link ChatTemplateError} with the template's message when it raises or cannot render.
   */
  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions | boolean = {}): string {
    const o: ChatTemplateOptions = typeof options === "boolean" ? { addGenerationPrompt: options } : options;
    const source = this.chatTemplate(!!o.tools);
    if (!source) throw new ModelsError("this model has no chat template (tokenizer_config.json chat_template or chat_template.jinja)");
    const special: Record<string, string | undefined> = {};
    for (const k of ["bos_token", "eos_token", "unk_token", "pad_token"]) special[k] = tokenText(this.config[k]);
    try {
      let template = this.templates.get(source);
      if (!template) this.templates.set(source, (template = new Template(source)));
      return template.render({
        ...special,
        ...o.variables,
        messages: messages.map(templateMessage),
        add_generation_prompt: o.addGenerationPrompt ?? true,
        ...(o.tools ? { tools: o.tools } : {}),
      });
    } catch (e) {
      throw new ChatTemplateError(`chat template: ${(e as Error).message}`);
    }
  }
}

/** A message as templates read it: tool-call arguments as objects (Llama's `arguments | tojson`), as vLLM passes them. */
function templateMessage(m: ChatMessage): Record<string, unknown> {
  if (!m.tool_calls) return { ...m };
  return {
    ...m,
    tool_calls: m.tool_calls.map((c) => {
      let args: unknown = c.function.arguments;
      try {
        args = JSON.parse(c.function.arguments);
      } catch {
        // not JSON: the template gets the string as it is
      }
      return { ...c, function: { ...c.function, arguments: args } };
    }),
  };
}

/** End-of-sequence ids: the config's (config.json + generation_config.json), plus the tokenizer's EOS token when it names another. */
export function endOfSequenceIds(configEosIds: readonly number[], tokenizer: TextTokenizer | undefined): number[] {
  const t = tokenizer?.eosTokenId;
  return [...new Set([...configEosIds, ...(t !== undefined ? [t] : [])])];
}
