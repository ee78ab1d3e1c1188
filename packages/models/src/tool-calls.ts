import { randomBytes } from "node:crypto";
import type { GrammarPart } from "./constraint.js";
import { ModelsError } from "./errors.js";

/**
 * How a chat template's model writes tool calls:
 * - `hermes`: `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>`, one block per call (Qwen2.5,
 *   Qwen3, QwQ, Hermes 2/3 — templates that show `<tool_call>`);
 * - `llama3-json`: the whole reply is `{"name": …, "parameters": {…}}` (Llama 3.1/3.2/3.3 templates;
 *   several calls separated by `;`).
 */
export type ToolCallFormat = "hermes" | "llama3-json";

/** A tool call read from a model's output. */
export interface ToolCall {
  /** `call_` and 24 random characters (the id tool results answer with `tool_call_id`). */
  readonly id: string;
  readonly name: string;
  /** The arguments, as JSON text (OpenAI's `function.arguments`). */
  readonly arguments: string;
}

/** The model's chat template does not take tools, or writes tool calls in a form df11 cannot read. */
export class ToolsNotSupportedError extends ModelsError {
  override name = "ToolsNotSupportedError";
}

/** Whether a chat template reads the `tools` variable (transformers passes it; a template that ignores it cannot show tools). */
export const templateTakesTools = (template: string): boolean => /\btools\b/.test(template);

/** The tool-call format a chat template teaches its model, or undefined when it is none df11 reads. */
export function toolCallFormatOf(template: string): ToolCallFormat | undefined {
  if (!templateTakesTools(template)) return undefined;
  if (template.includes("<tool_call>")) return "hermes";
  if (template.includes("<|start_header_id|>") && template.includes('"parameters"')) return "llama3-json";
  return undefined;
}

/**
 * The format for a template, or {@link ToolsNotSupportedError} saying why tools cannot be used with it.
 */
export function requireToolCallFormat(template: string | undefined): ToolCallFormat {
  if (!template) throw new ToolsNotSupportedError("this model has no chat template, so it cannot be given tools");
  if (!templateTakesTools(template)) throw new ToolsNotSupportedError("this model's chat template does not take tools");
  const format = toolCallFormatOf(template);
  if (!format) throw new ToolsNotSupportedError("this model's chat template takes tools, but writes tool calls in a form df11 does not read (it reads Hermes/Qwen <tool_call> blocks and Llama 3.x JSON calls)");
  return format;
}

const newCallId = () => `call_${randomBytes(18).toString("base64url").slice(0, 24)}`;

/** A call from its JSON text (`{"name", "arguments"|"parameters"}`), or undefined when it is not one. */
function callOf(json: string): ToolCall | undefined {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (!value || typeof value !== "object" || Array.isArray(value)) return undefined;
  const { name, arguments: args, parameters } = value as Record<string, unknown>;
  const body = args ?? parameters ?? {};
  if (typeof name !== "string" || name.length === 0) return undefined;
  return { id: newCallId(), name, arguments: typeof body === "string" ? body : JSON.stringify(body) };
}

/** What a piece of output turned into: text for the reader, and tool calls completed by it. */
export interface ToolCallDelta {
  readonly content: string;
  readonly calls: readonly ToolCall[];
}

const OPEN = "<tool_call>";
const CLOSE = "</tool_call>";

/**
 * Reads tool calls out of streamed output: text pieces in, content and completed calls out. Content that
 * could be the start of a call is held back until it cannot; a block that does not parse as a call is
 * given back as content (vLLM's rule). With `maxCalls` (parallel_tool_calls: false), output after the
 * last allowed call is dropped and `done` turns true so the caller can stop generating.
 */
export class ToolCallParser {
  private buffer = "";
  private inCall = false;
  private mode: "undecided" | "content" | "json" = "undecided"; // llama3-json: decided at the first non-space character
  private count = 0;
  private finished = false;

  constructor(
    readonly format: ToolCallFormat,
    private readonly maxCalls = Infinity,
  ) {}

  /** Whether `maxCalls` calls were read (nothing more is taken). */
  get done(): boolean {
    return this.count >= this.maxCalls;
  }

  /** Calls read so far. */
  get callCount(): number {
    return this.count;
  }

  push(text: string): ToolCallDelta {
    if (this.done || this.finished) return { content: "", calls: [] };
    this.buffer += text;
    return this.format === "hermes" ? this.hermes(false) : this.llama(false);
  }

  /** The output ended: what is still held (once; later calls give nothing). */
  finish(): ToolCallDelta {
    if (this.done || this.finished) return { content: "", calls: [] };
    this.finished = true;
    return this.format === "hermes" ? this.hermes(true) : this.llama(true);
  }

  private take(json: string): ToolCall | undefined {
    const call = callOf(json.trim());
    if (call) this.count++;
    return call;
  }

  private hermes(final: boolean): ToolCallDelta {
    let content = "";
    const calls: ToolCall[] = [];
    for (;;) {
      if (this.done) {
        this.buffer = "";
        break;
      }
      if (this.inCall) {
        const end = this.buffer.indexOf(CLOSE);
        if (end < 0 && !final) break;
        const body = end < 0 ? this.buffer : this.buffer.slice(0, end);
        const call = this.take(body);
        if (call) calls.push(call);
        else content += OPEN + this.buffer.slice(0, end < 0 ? this.buffer.length : end + CLOSE.length);
        this.buffer = end < 0 ? "" : this.buffer.slice(end + CLOSE.length);
        this.inCall = false;
        continue;
      }
      const start = this.buffer.indexOf(OPEN);
      if (start >= 0) {
        content += this.visible(this.buffer.slice(0, start));
        this.buffer = this.buffer.slice(start + OPEN.length);
        this.inCall = true;
        continue;
      }
      const held = final ? 0 : heldPrefix(this.buffer, OPEN);
      // After a call, whitespace between calls is not content.
      const ready = this.buffer.slice(0, this.buffer.length - held);
      if (this.count > 0 && ready.trim() === "" && !final) break;
      content += this.visible(ready);
      this.buffer = this.buffer.slice(ready.length);
      break;
    }
    return { content, calls };
  }

  /** Content outside calls; whitespace alone after a call is dropped. */
  private visible(text: string): string {
    return this.count > 0 && text.trim() === "" ? "" : text;
  }

  private llama(final: boolean): ToolCallDelta {
    if (this.mode === "undecided") {
      const first = this.buffer.trimStart();
      if (first.length === 0 && !final) return { content: "", calls: [] };
      this.mode = first.startsWith("{") ? "json" : "content";
    }
    if (this.mode === "content") {
      const content = this.buffer;
      this.buffer = "";
      return { content, calls: [] };
    }
    if (!final) return { content: "", calls: [] };
    const parts = splitJsonObjects(this.buffer);
    const calls: ToolCall[] = [];
    for (const part of parts ?? []) {
      if (this.done) break;
      const call = this.take(part);
      if (!call) {
        calls.length = 0;
        break;
      }
      calls.push(call);
    }
    const content = calls.length === 0 ? this.buffer : "";
    if (calls.length === 0) this.count = 0;
    this.buffer = "";
    return { content, calls };
  }
}

/** Length of the longest end of `text` that begins `marker`. */
function heldPrefix(text: string, marker: string): number {
  for (let n = Math.min(marker.length - 1, text.length); n > 0; n--) if (text.endsWith(marker.slice(0, n))) return n;
  return 0;
}

/** `{…}; {…}` → the objects' texts, or undefined when the text is not only JSON objects separated by `;`. */
function splitJsonObjects(text: string): string[] | undefined {
  const parts: string[] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === "{") {
      if (depth++ === 0) start = i;
    } else if (c === "}") {
      if (--depth === 0) parts.push(text.slice(start, i + 1));
      if (depth < 0) return undefined;
    } else if (depth === 0 && !/[\s;]/.test(c)) return undefined;
  }
  return depth === 0 && parts.length > 0 ? parts : undefined;
}

/** The text a call is forced into (tool_choice "required" or a named function): the tool's name among `names`, then JSON arguments. */
export function forcedToolCall(format: ToolCallFormat, names: readonly string[]): GrammarPart[] {
  return format === "hermes"
    ? [{ literal: `${OPEN}\n{"name": "` }, { oneOf: names }, { literal: '", "arguments": ' }, { jsonObject: true }, { literal: `}\n${CLOSE}` }]
    : [{ literal: '{"name": "' }, { oneOf: names }, { literal: '", "parameters": ' }, { jsonObject: true }, { literal: "}" }];
}
