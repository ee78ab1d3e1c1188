import type { ChatMessage, ChatToolCall, ModelChatOptions, ToolChoice, ToolDefinition } from "@df11/models";

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

/** A validated /v1/chat/completions or /v1/completions request. */
export interface CompletionRequest {
  readonly model: string;
  /** Chat: the messages. Completions: one entry per prompt (text or token ids). */
  readonly prompts: ReadonlyArray<string | readonly number[]> | undefined;
  readonly messages: readonly ChatMessage[] | undefined;
  readonly stream: boolean;
  readonly includeUsage: boolean;
  /** Choices per prompt. */
  readonly n: number;
  /** Completions: candidates generated per prompt, the n with the highest log-probability returned. */
  readonly bestOf: number;
  /** Completions: the prompt is part of the returned text (and of the log-probabilities). */
  readonly echo: boolean;
  /** Log-probabilities: undefined = none; k = the chosen token's and k alternatives. */
  readonly logprobs: number | undefined;
  /**
   * vLLM's `return_token_ids`: the response carries the prompt's and each choice's token ids
   * (`prompt_token_ids`, `token_ids`). A model without a tokenizer always answers with them.
   */
  readonly returnTokenIds: boolean;
  /** The request's seed, an integer with seed + bestOf − 1 ≤ 2^53 − 1; undefined: each choice draws a random one (as OpenAI's API). */
  readonly seed: number | undefined;
  /** Generation options (sampling set only where the request sets it; the model's defaults fill the rest). */
  readonly options: ModelChatOptions;
}

type Json = Record<string, unknown>;
const bad = (param: string, message: string) => new ApiError(400, `${param}: ${message}`, param, "invalid_value");
const unsupported = (param: string, why: string) => new ApiError(400, `${param}: ${why}`, param, "unsupported_parameter");
const present = (v: unknown) => v !== undefined && v !== null;

function number(body: Json, key: string, check: (v: number) => boolean, rule: string): number | undefined {
  const v = body[key];
  if (!present(v)) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v) || !check(v)) throw bad(key, `${rule}, got ${JSON.stringify(v)}`);
  return v;
}

const integer = (body: Json, key: string, min: number, max = Infinity) =>
  number(body, key, (v) => Number.isInteger(v) && v >= min && v <= max, max === Infinity ? `expected an integer ≥ ${min}` : `expected an integer in ${min}…${max}`);

function boolean(body: Json, key: string): boolean | undefined {
  const v = body[key];
  if (!present(v)) return undefined;
  if (typeof v !== "boolean") throw bad(key, `expected true or false, got ${JSON.stringify(v)}`);
  return v;
}

function string(body: Json, key: string): string | undefined {
  const v = body[key];
  if (!present(v)) return undefined;
  if (typeof v !== "string") throw bad(key, `expected a string, got ${JSON.stringify(v)}`);
  return v;
}

function object(body: Json, key: string): Json | undefined {
  const v = body[key];
  if (!present(v)) return undefined;
  if (typeof v !== "object" || Array.isArray(v)) throw bad(key, `expected an object, got ${JSON.stringify(v)}`);
  return v as Json;
}

function stopStrings(body: Json): string[] {
  const v = body.stop;
  if (!present(v)) return [];
  const list = typeof v === "string" ? [v] : v;
  if (!Array.isArray(list) || list.length > 4 || list.some((s) => typeof s !== "string" || s.length === 0)) throw bad("stop", "expected a non-empty string or up to 4 of them");
  return list as string[];
}

function logitBias(body: Json, vocabSize: number): Record<number, number> | undefined {
  const v = object(body, "logit_bias");
  if (!v) return undefined;
  const out: Record<number, number> = {};
  for (const [key, bias] of Object.entries(v)) {
    const id = Number(key);
    if (!/^\d+$/.test(key) || id >= vocabSize) throw bad("logit_bias", `${JSON.stringify(key)} is not a token id of this model (0…${vocabSize - 1})`);
    if (typeof bias !== "number" || !(bias >= -100 && bias <= 100)) throw bad("logit_bias", `the bias of token ${key} must be a number in -100…100, got ${JSON.stringify(bias)}`);
    out[id] = bias;
  }
  return out;
}

function toolCallsOf(v: unknown, where: string): ChatToolCall[] {
  if (!Array.isArray(v)) throw bad(where, "expected an array of tool calls");
  return v.map((c, i) => {
    const call = c as Json | null;
    const fn = call?.function as Json | undefined;
    if (!call || call.type !== "function" || typeof call.id !== "string" || !fn || typeof fn.name !== "string" || typeof fn.arguments !== "string") {
      throw bad(`${where}[${i}]`, 'expected { id, type: "function", function: { name, arguments } }');
    }
    return { id: call.id, type: "function", function: { name: fn.name, arguments: fn.arguments } };
  });
}

const ROLES = ["system", "developer", "user", "assistant", "tool"];

function messagesOf(body: Json): ChatMessage[] {
  const v = body.messages;
  if (!Array.isArray(v) || v.length === 0) throw bad("messages", "expected a non-empty array of { role, content }");
  return v.map((m, i) => {
    if (!m || typeof m !== "object") throw bad(`messages[${i}]`, "expected { role, content }");
    const { role, content, tool_calls, tool_call_id, name } = m as Json;
    if (typeof role !== "string" || !ROLES.includes(role)) throw bad(`messages[${i}].role`, `unknown role ${JSON.stringify(role)}`);
    // Content: a string, or text parts (other part types have no meaning for a text model); an assistant message that calls tools may have none.
    let text: string;
    if (typeof content === "string") text = content;
    else if (Array.isArray(content) && content.every((p) => p && typeof p === "object" && (p as Json).type === "text" && typeof (p as Json).text === "string")) {
      text = content.map((p) => (p as Json).text as string).join("");
    } else if (!present(content) && role === "assistant" && present(tool_calls)) text = "";
    else throw bad(`messages[${i}].content`, "expected a string or an array of text parts");
    const message: { -readonly [K in keyof ChatMessage]: ChatMessage[K] } = { role: role === "developer" ? "system" : role, content: text };
    if (present(tool_calls)) {
      if (role !== "assistant") throw bad(`messages[${i}].tool_calls`, "only assistant messages call tools");
      message.tool_calls = toolCallsOf(tool_calls, `messages[${i}].tool_calls`);
    }
    if (role === "tool") {
      if (typeof tool_call_id !== "string") throw bad(`messages[${i}].tool_call_id`, "a tool message answers a call: give its id");
      message.tool_call_id = tool_call_id;
    }
    if (present(name)) {
      if (typeof name !== "string") throw bad(`messages[${i}].name`, "expected a string");
      message.name = name;
    }
    return message;
  });
}

function promptsOf(body: Json): Array<string | number[]> {
  const p = body.prompt;
  const isIds = (x: unknown): x is number[] => Array.isArray(x) && x.length > 0 && x.every((t) => Number.isInteger(t) && t >= 0);
  if (typeof p === "string" && p.length > 0) return [p];
  if (isIds(p)) return [p];
  if (Array.isArray(p) && p.length > 0 && p.every((x) => (typeof x === "string" && x.length > 0) || isIds(x))) return p as Array<string | number[]>;
  throw bad("prompt", "expected a non-empty string, an array of them, an array of token ids, or an array of such arrays");
}

const TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

function toolsOf(body: Json): ToolDefinition[] | undefined {
  const v = body.tools;
  if (!present(v)) return undefined;
  if (!Array.isArray(v)) throw bad("tools", "expected an array of { type: \"function\", function: { name, description, parameters } }");
  return v.map((t, i) => {
    const fn = (t as Json | null)?.function as Json | undefined;
    if ((t as Json | null)?.type !== "function" || !fn) throw bad(`tools[${i}]`, 'expected { type: "function", function: { name, … } } (other tool types are not supported)');
    if (typeof fn.name !== "string" || !TOOL_NAME.test(fn.name)) throw bad(`tools[${i}].function.name`, "expected 1–64 letters, digits, _ or -");
    if (present(fn.parameters) && (typeof fn.parameters !== "object" || Array.isArray(fn.parameters))) throw bad(`tools[${i}].function.parameters`, "expected a JSON Schema object");
    return t as ToolDefinition;
  });
}

function toolChoiceOf(body: Json, tools: readonly ToolDefinition[] | undefined): ToolChoice | undefined {
  const v = body.tool_choice;
  if (!present(v)) return undefined;
  let choice: ToolChoice;
  if (v === "none" || v === "auto" || v === "required") choice = v;
  else if (v && typeof v === "object" && (v as Json).type === "function" && typeof ((v as Json).function as Json | undefined)?.name === "string") {
    choice = { name: ((v as Json).function as Json).name as string };
  } else throw bad("tool_choice", 'expected "none", "auto", "required" or { type: "function", function: { name } }');
  if (choice !== "none" && choice !== "auto" && !tools?.length) throw bad("tool_choice", "needs tools");
  if (typeof choice === "object" && !tools!.some((t) => t.function.name === choice.name)) throw bad("tool_choice", `names "${choice.name}", which is not among the tools`);
  return choice;
}

/** Keys with no effect on a generation that OpenAI's API also takes without effect here (no storage, no billing tier). */
const IDENTIFIERS = ["user", "safety_identifier", "prompt_cache_key"];

/** Parameters the server refuses, with why (each named in a 400 rather than silently ignored). */
const REFUSED: Record<string, string> = {
  audio: "this server generates text only",
  prediction: "predicted outputs are not supported",
  web_search_options: "web search is not supported",
  verbosity: "is not supported (it is a setting of OpenAI's reasoning models)",
  functions: "is deprecated by OpenAI: use tools",
  function_call: "is deprecated by OpenAI: use tool_choice",
  suffix: "text insertion (a suffix) is not supported",
};

const CHAT_KEYS = new Set([
  "model", "messages", "frequency_penalty", "presence_penalty", "logit_bias", "logprobs", "top_logprobs", "max_tokens", "max_completion_tokens",
  "metadata", "modalities", "n", "parallel_tool_calls", "reasoning_effort", "response_format", "seed", "service_tier", "stop", "store",
  "stream", "stream_options", "temperature", "top_p", "tools", "tool_choice", ...IDENTIFIERS,
  // vLLM's extensions
  "top_k", "min_p", "repetition_penalty", "ignore_eos", "chat_template_kwargs", "return_token_ids",
]);
const COMPLETION_KEYS = new Set([
  "model", "prompt", "best_of", "echo", "frequency_penalty", "presence_penalty", "logit_bias", "logprobs", "max_tokens", "n", "seed", "stop",
  "stream", "stream_options", "temperature", "top_p", ...IDENTIFIERS,
  "top_k", "min_p", "repetition_penalty", "ignore_eos", "return_token_ids",
]);

/** What the server knows of its model when it validates a request. */
export interface RequestLimits {
  /** Largest max_tokens a request may ask. */
  readonly maxTokens: number;
  /** The model's vocabulary size (for logit_bias). */
  readonly vocabSize: number;
  /** Variables the chat template reads (reasoning_effort is passed only to a template that reads it). */
  readonly templateReads: (variable: string) => boolean;
}

/** Check every key against what the endpoint takes: unknown ones and refused ones are a 400 naming them. */
function checkKeys(b: Json, chat: boolean): void {
  const known = chat ? CHAT_KEYS : COMPLETION_KEYS;
  for (const key of Object.keys(b)) {
    if (b[key] === undefined || (b[key] === null && !REFUSED[key])) continue;
    if (key === "suffix" && !chat && (b.suffix === null || b.suffix === "")) continue; // no suffix asked for
    if (REFUSED[key]) throw unsupported(key, REFUSED[key]);
    if (!known.has(key)) throw new ApiError(400, `Unrecognized request argument supplied: ${key}`, key, "unrecognized_parameter");
  }
}

/** Parse and validate a /v1/chat/completions or /v1/completions body. */
export function parseCompletionRequest(body: unknown, chat: boolean, limits: RequestLimits): CompletionRequest {
  if (!body || typeof body !== "object" || Array.isArray(body)) throw new ApiError(400, "the request body must be a JSON object");
  const b = body as Json;
  checkKeys(b, chat);
  if (typeof b.model !== "string" || b.model.length === 0) throw bad("model", "required");
  for (const key of IDENTIFIERS) string(b, key);
  const n = integer(b, "n", 1, 128) ?? 1;

  // Storage and billing settings: only what this server does is accepted.
  if (chat) {
    if (boolean(b, "store")) throw unsupported("store", "this server stores no completions");
    const metadata = object(b, "metadata");
    if (metadata && Object.values(metadata).some((v) => typeof v !== "string")) throw bad("metadata", "expected string values");
    const tier = string(b, "service_tier");
    if (tier !== undefined && tier !== "auto" && tier !== "default") throw unsupported("service_tier", `only "auto" and "default" (this server has one tier)`);
    const modalities = b.modalities;
    if (present(modalities) && (!Array.isArray(modalities) || modalities.some((m) => m !== "text"))) throw unsupported("modalities", 'only ["text"]');
  }

  const maxKey = chat && present(b.max_completion_tokens) ? "max_completion_tokens" : "max_tokens";
  const maxTokens = integer(b, maxKey, chat ? 1 : 0) ?? 256;
  if (maxTokens > limits.maxTokens) throw bad(maxKey, `at most ${limits.maxTokens} on this server`);
  const stream = boolean(b, "stream") ?? false;
  const streamOptions = object(b, "stream_options");
  if (streamOptions) {
    if (!stream) throw bad("stream_options", "only with stream: true");
    for (const key of Object.keys(streamOptions)) {
      if (key !== "include_usage" && key !== "include_obfuscation") throw new ApiError(400, `Unrecognized request argument supplied: stream_options.${key}`, "stream_options", "unrecognized_parameter");
    }
    if (boolean(streamOptions, "include_obfuscation")) throw unsupported("stream_options", "include_obfuscation: this server adds no obfuscation padding");
  }

  // Log-probabilities: chat says `logprobs: true` + `top_logprobs`; completions say `logprobs: k`.
  let logprobs: number | undefined;
  if (chat) {
    const top = integer(b, "top_logprobs", 0, 20);
    if (boolean(b, "logprobs")) logprobs = top ?? 0;
    else if (top !== undefined) throw bad("top_logprobs", "needs logprobs: true");
  } else logprobs = integer(b, "logprobs", 0, 20);

  const echo = chat ? false : (boolean(b, "echo") ?? false);
  const bestOf = chat ? n : (integer(b, "best_of", 1, 20) ?? n);
  if (bestOf < n) throw bad("best_of", `must be at least n (${n})`);
  if (bestOf > n && stream) throw bad("best_of", "cannot be used with stream (the best candidates are known only at the end)");

  let responseFormat: "text" | "json_object" | undefined;
  const format = object(b, "response_format");
  if (format) {
    if (format.type === "text" || format.type === "json_object") responseFormat = format.type;
    else if (format.type === "json_schema") throw unsupported("response_format", "json_schema is not supported; json_object and text are");
    else throw bad("response_format", 'expected { type: "text" | "json_object" }');
  }

  const tools = chat ? toolsOf(b) : undefined;
  const toolChoice = chat ? toolChoiceOf(b, tools) : undefined;
  const parallelToolCalls = chat ? boolean(b, "parallel_tool_calls") : undefined;
  if (responseFormat === "json_object" && tools?.length && toolChoice !== "none") throw bad("response_format", "json_object cannot be combined with tools");

  const templateVariables: Record<string, unknown> = { ...(chat ? object(b, "chat_template_kwargs") : undefined) };
  if (chat) {
    const effort = string(b, "reasoning_effort");
    if (effort !== undefined) {
      if (!limits.templateReads("reasoning_effort")) throw unsupported("reasoning_effort", "this model's chat template takes no reasoning_effort");
      templateVariables.reasoning_effort = effort;
    }
  }

  const penalty = (key: string) => number(b, key, (v) => v >= -2 && v <= 2, "expected a number in -2…2");
  // Choice j samples with seed + j: every one must be a seed the sampler takes (an integer in 0…2^53 − 1),
  // not one rounded or wrapped into another choice's (or another seed's) stream.
  const maxSeed = Number.MAX_SAFE_INTEGER - (bestOf - 1);
  const seedRange = bestOf > 1 ? `expected an integer in 0…${maxSeed} (choice j samples with seed + j, at most 2^53 − 1)` : `expected an integer in 0…${maxSeed} (2^53 − 1)`;
  const seed = number(b, "seed", (v) => Number.isSafeInteger(v) && v >= 0 && v <= maxSeed, seedRange);
  return {
    model: b.model,
    prompts: chat ? undefined : promptsOf(b),
    messages: chat ? messagesOf(b) : undefined,
    stream,
    includeUsage: !!streamOptions?.include_usage,
    n,
    bestOf,
    echo,
    logprobs,
    returnTokenIds: boolean(b, "return_token_ids") ?? false,
    seed,
    options: {
      maxTokens,
      temperature: number(b, "temperature", (v) => v >= 0 && v <= 2, "expected a number in [0, 2]"),
      topP: number(b, "top_p", (v) => v > 0 && v <= 1, "expected a number in (0, 1]"),
      topK: integer(b, "top_k", 0),
      minP: number(b, "min_p", (v) => v >= 0 && v < 1, "expected a number in [0, 1)"),
      repetitionPenalty: number(b, "repetition_penalty", (v) => v > 0, "expected a number > 0"),
      presencePenalty: penalty("presence_penalty"),
      frequencyPenalty: penalty("frequency_penalty"),
      logitBias: logitBias(b, limits.vocabSize),
      stop: stopStrings(b),
      ignoreEos: boolean(b, "ignore_eos") ?? false,
      ...(responseFormat ? { responseFormat } : {}),
      ...(tools ? { tools } : {}),
      ...(toolChoice ? { toolChoice } : {}),
      ...(parallelToolCalls !== undefined ? { parallelToolCalls } : {}),
      ...(Object.keys(templateVariables).length > 0 ? { templateVariables } : {}),
    },
  };
}

/** OpenAI's finish_reason for how a generation ended; one the server ended (a graceful shutdown's deadline) is vLLM's "abort". */
export const finishReasonOf = (reason: string): "stop" | "length" | "tool_calls" | "abort" =>
  reason === "max-tokens" || reason === "max-context" ? "length" : reason === "tool-calls" ? "tool_calls" : reason === "aborted" ? "abort" : "stop";
