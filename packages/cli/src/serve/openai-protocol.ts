import type { ChatMessage, ModelGenerateOptions } from "@df11/models";

/** An error answered in OpenAI's shape: `{ error: { message, type, param, code } }`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly type = status === 401 ? "authentication_error" : status >= 500 ? "server_error" : "invalid_request_error",
  ) {
    super(message);
  }

  body(): object {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** A validated completion request, chat or plain. */
export interface CompletionRequest {
  readonly model: string;
  readonly prompt: string | readonly number[] | readonly ChatMessage[];
  readonly stream: boolean;
  readonly includeUsage: boolean;
  readonly options: ModelGenerateOptions;
}

type Json = Record<string, unknown>;
const bad = (param: string, message: string) => new ApiError(400, `${param}: ${message}`, param, "invalid_value");

function number(body: Json, key: string, check: (v: number) => boolean, rule: string): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v) || !check(v)) throw bad(key, `${rule}, got ${JSON.stringify(v)}`);
  return v;
}

const integer = (body: Json, key: string, min: number) => number(body, key, (v) => Number.isInteger(v) && v >= min, `expected an integer ≥ ${min}`);

function stopStrings(body: Json): string[] {
  const v = body.stop;
  if (v === undefined || v === null) return [];
  const list = typeof v === "string" ? [v] : v;
  if (!Array.isArray(list) || list.length > 4 || list.some((s) => typeof s !== "string" || s.length === 0)) throw bad("stop", "expected a non-empty string or up to 4 of them");
  return list as string[];
}

function messagesOf(body: Json): ChatMessage[] {
  const v = body.messages;
  if (!Array.isArray(v) || v.length === 0) throw bad("messages", "expected a non-empty array of { role, content }");
  return v.map((m, i) => {
    if (!m || typeof m !== "object") throw bad(`messages[${i}]`, "expected { role, content }");
    const { role, content } = m as Json;
    if (typeof role !== "string" || !["system", "user", "assistant", "developer", "tool"].includes(role)) throw bad(`messages[${i}].role`, `unknown role ${JSON.stringify(role)}`);
    // Content: a string, or text parts (other part types have no meaning for a text model).
    let text: string;
    if (typeof content === "string") text = content;
    else if (Array.isArray(content) && content.every((p) => p && typeof p === "object" && (p as Json).type === "text" && typeof (p as Json).text === "string")) {
      text = content.map((p) => (p as Json).text as string).join("");
    } else throw bad(`messages[${i}].content`, "expected a string or an array of text parts");
    return { role: role === "developer" ? "system" : role, content: text };
  });
}

function promptOf(body: Json): string | number[] {
  const p = body.prompt;
  if (typeof p === "string" && p.length > 0) return p;
  if (Array.isArray(p) && p.length === 1 && typeof p[0] === "string" && p[0].length > 0) return p[0];
  if (Array.isArray(p) && p.length > 0 && p.every((t) => Number.isInteger(t) && t >= 0)) return p as number[];
  throw bad("prompt", "expected a non-empty string (or one string in an array, or an array of token ids)");
}

/** Parse and validate a /v1/chat/completions or /v1/completions body. */
export function parseCompletionRequest(body: unknown, chat: boolean, maxTokensLimit: number): CompletionRequest {
  if (!body || typeof body !== "object" || Array.isArray(body)) throw new ApiError(400, "the request body must be a JSON object");
  const b = body as Json;
  if (typeof b.model !== "string" || b.model.length === 0) throw bad("model", "required");
  const n = integer(b, "n", 1);
  if (n !== undefined && n !== 1) throw bad("n", "only n = 1 is supported");
  for (const key of ["presence_penalty", "frequency_penalty"]) {
    const v = number(b, key, () => true, "expected a number");
    if (v !== undefined && v !== 0) throw bad(key, "is not supported (use repetition_penalty)");
  }
  if (b.logprobs !== undefined && b.logprobs !== null && b.logprobs !== false) throw bad("logprobs", "is not supported");
  const maxTokens = integer(b, chat ? "max_completion_tokens" : "max_tokens", 1) ?? integer(b, "max_tokens", 1) ?? 256;
  if (maxTokens > maxTokensLimit) throw bad("max_tokens", `at most ${maxTokensLimit} on this server`);
  const stream = b.stream === undefined || b.stream === null ? false : b.stream;
  if (typeof stream !== "boolean") throw bad("stream", "expected true or false");
  const streamOptions = b.stream_options as Json | undefined;
  const ignoreEos = b.ignore_eos === undefined ? false : b.ignore_eos;
  if (typeof ignoreEos !== "boolean") throw bad("ignore_eos", "expected true or false");
  return {
    model: b.model,
    prompt: chat ? messagesOf(b) : promptOf(b),
    stream,
    includeUsage: !!streamOptions?.include_usage,
    options: {
      maxTokens,
      temperature: number(b, "temperature", (v) => v >= 0 && v <= 2, "expected a number in [0, 2]") ?? 1,
      topP: number(b, "top_p", (v) => v > 0 && v <= 1, "expected a number in (0, 1]"),
      topK: integer(b, "top_k", 0),
      minP: number(b, "min_p", (v) => v >= 0 && v < 1, "expected a number in [0, 1)"),
      repetitionPenalty: number(b, "repetition_penalty", (v) => v > 0, "expected a number > 0"),
      seed: number(b, "seed", (v) => Number.isInteger(v), "expected an integer"),
      stop: stopStrings(b),
      ignoreEos,
    },
  };
}

/** OpenAI's finish_reason for how a sequence ended. */
export const finishReasonOf = (reason: string): "stop" | "length" => (reason === "max-tokens" || reason === "max-context" ? "length" : "stop");
