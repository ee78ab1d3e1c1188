import { randomInt } from "node:crypto";
import {
  ChatTemplateError,
  ConstraintError,
  ContextLengthError,
  IncrementalDetokenizer,
  ModelsError,
  QueueFullError,
  ToolsNotSupportedError,
  type Generation,
  type GenerationResult,
  type Model,
  type ModelChatOptions,
  type ModelToken,
  type TextTokenizer,
  type TokenLogprob,
  type ToolCall,
} from "@df11/models";
import { ApiError, finishReasonOf, type CompletionRequest } from "./openai-protocol.js";

/** One generation a request runs: n per prompt (best_of when more). */
export interface Candidate {
  readonly generation: Generation;
  /** Index of its prompt (completions take several). */
  readonly prompt: number;
  /** The first candidate of its prompt (usage counts a prompt once). */
  readonly first: boolean;
  /** The prompt's text and ids, with echo; `added[i]`: ids[i] is not in the text (a BOS the tokenizer added to a text prompt). */
  readonly echo?: { readonly text: string; readonly ids: readonly number[]; readonly added?: readonly boolean[] };
}

/**
 * A model without a tokenizer reads and writes token ids only: chat messages, text prompts and stop
 * strings (which match text) are refused with a 400 naming the missing tokenizer (code "no_tokenizer"),
 * rather than failing later or being ignored.
 */
export function checkTokenizer(model: Model, request: CompletionRequest, modelId: string): void {
  if (model.tokenizer) return;
  const none = `the model \`${modelId}\` has no tokenizer (no tokenizer.json)`;
  const ids = 'send the prompt as token ids to /v1/completions, e.g. "prompt": [1, 2, 3]';
  if (request.messages) throw new ApiError(400, `${none}, so it cannot read chat messages: ${ids}`, "messages", "no_tokenizer");
  if (request.prompts!.some((p) => typeof p === "string")) throw new ApiError(400, `${none}, so a text prompt cannot be encoded: ${ids}`, "prompt", "no_tokenizer");
  if (request.options.stop?.length) throw new ApiError(400, `stop: ${none}, so its output has no text for stop strings to match`, "stop", "no_tokenizer");
}

/** An error while starting a generation, as the client's or the server's. */
function apiErrorOf(e: unknown, chat: boolean): unknown {
  if (e instanceof QueueFullError) return new ApiError(503, `the server is busy: ${e.message}`, null, "queue_full", "server_error");
  if (e instanceof ChatTemplateError) return new ApiError(400, e.message, "messages", "chat_template_error");
  if (e instanceof ToolsNotSupportedError) return new ApiError(400, `tools: ${e.message}`, "tools", "tools_not_supported");
  if (e instanceof ConstraintError) return new ApiError(400, e.message, e.message.startsWith("tool_choice") ? "tool_choice" : "response_format", "unsatisfiable_constraint");
  // OpenAI's code for a prompt too long for the model; the message names the prompt's tokens and the context length.
  if (e instanceof ContextLengthError) return new ApiError(400, e.message, chat ? "messages" : "prompt", "context_length_exceeded");
  if (e instanceof RangeError || e instanceof ModelsError) return new ApiError(400, (e as Error).message, chat ? "messages" : "prompt", "invalid_prompt");
  return e;
}

/**
 * Start every generation a request asks for, in the model's scheduler (so they batch): each prompt
 * `bestOf` times, choice j seeded with seed + j (a random seed each without one, as OpenAI's API).
 * Sampling the request leaves unset comes from the model's generation_config.json, else OpenAI's
 * defaults (temperature 1). Aborting `abort` ends them all.
 *
 * Each candidate gets a signal of its own, aborted by one listener on `abort`'s: the scheduler adds a
 * listener to the signal of every generation it runs, and n ≥ 11 of them on the request's one signal
 * would print Node's MaxListenersExceededWarning ("possible EventTarget memory leak").
 */
export function startCandidates(model: Model, request: CompletionRequest, abort: AbortController): Candidate[] {
  const chat = request.messages !== undefined;
  const inputs = chat ? [request.messages!] : request.prompts!;
  const out: Candidate[] = [];
  const signals: AbortController[] = [];
  const abortAll = () => {
    for (const s of signals) s.abort();
  };
  abort.signal.addEventListener("abort", abortAll, { once: true });
  try {
    const sampling = model.samplingFor(request.options, { temperature: 1 }).options;
    inputs.forEach((input, p) => {
      const ids = chat ? undefined : model.promptIds(input as string | readonly number[]);
      for (let j = 0; j < request.bestOf; j++) {
        const signal = new AbortController();
        signals.push(signal);
        const options: ModelChatOptions = {
          ...request.options,
          ...sampling,
          seed: request.seed !== undefined ? request.seed + j : randomInt(2 ** 31),
          signal: signal.signal,
          // best_of ranks candidates by their log-probability, so it needs them even when the reply does not.
          logprobs: request.logprobs ?? (request.bestOf > request.n ? 0 : undefined),
          promptLogprobs: request.echo && request.logprobs !== undefined ? request.logprobs : undefined,
        };
        const generation = chat ? model.chat(request.messages!, options) : model.generate(ids!, options);
        const echo = request.echo ? echoOf(model, input as string | readonly number[], ids!) : undefined;
        out.push({ generation, prompt: p, first: j === 0, echo });
      }
    });
  } catch (e) {
    abort.abort(); // candidates already queued end
    abortAll(); // (also when `abort` was aborted before: its listener has fired already)
    throw apiErrorOf(e, chat);
  }
  if (abort.signal.aborted) abortAll(); // the client left while the candidates were being started
  return out;
}

/**
 * The echoed prompt: a text prompt as written, ids decoded with their special tokens. Of a text prompt's ids, those the
 * tokenizer added (a BOS: not in `encode(text, false)`) are not in that text, while special tokens written in it are.
 */
function echoOf(model: Model, input: string | readonly number[], ids: readonly number[]): Candidate["echo"] {
  if (typeof input !== "string") return { text: model.tokenizer?.decode(ids, false) ?? "", ids };
  const own = model.tokenizer!.encode(input, false);
  let at = ids.length - own.length;
  while (at >= 0 && own.some((id, i) => ids[at + i] !== id)) at--;
  return { text: input, ids, added: at < 0 ? undefined : ids.map((_, i) => i < at || i >= at + own.length) };
}

const sum = (lps: readonly TokenLogprob[] | undefined) => (lps ?? []).reduce((a, t) => a + t.logprob, 0);

/** The n choices of each prompt: with best_of, the n candidates of highest total log-probability. */
export function bestOf<T extends { c: Candidate; r: GenerationResult }>(results: T[], request: CompletionRequest): T[] {
  if (request.bestOf === request.n) return results;
  const byPrompt = new Map<number, T[]>();
  for (const x of results) byPrompt.set(x.c.prompt, [...(byPrompt.get(x.c.prompt) ?? []), x]);
  return [...byPrompt.values()].flatMap((list) => [...list].sort((a, b) => sum(b.r.logprobs) - sum(a.r.logprobs)).slice(0, request.n));
}

const lossy = new TextDecoder();

/** Characters (Unicode code points) in a string, as Python's len() counts them. */
const codePoints = (s: string): number => s.length - (s.match(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g)?.length ?? 0);

/**
 * Completions' `text_offset`: where each token's text starts in the choice's text, in characters (code points,
 * as OpenAI's and vLLM's Python count them; `[...text]` indexes them in JavaScript) — the length of the text the
 * tokens before it decode to, whole characters only. A token that continues or completes a character split over
 * tokens starts where that character starts (é as bytes C3|A9: both at é); one with no text of its own (a special
 * token) where the next text starts. Tokens are decoded as the text is (a prompt's, a generation's own), from `base`.
 */
class TextOffsets {
  private released = 0;
  private read = 0;
  private readonly detokenizer: IncrementalDetokenizer | undefined;

  constructor(
    tokenizer: TextTokenizer | undefined,
    private readonly base: number,
    /** Whether special tokens are left out of the text (a generation's) or in it (an echoed prompt's). */
    skipSpecialTokens = true,
    /** `added[i]`: the i-th token is not in the text at all (a BOS the tokenizer added to a text prompt). */
    private readonly added?: readonly boolean[],
  ) {
    this.detokenizer = tokenizer && new IncrementalDetokenizer(tokenizer, skipSpecialTokens);
  }

  /** The next token's offset (then it is read). */
  next(id: number): number {
    const d = this.detokenizer;
    if (!d) return this.base; // no tokenizer: the text is ""
    const at = this.base + this.released + codePoints(d.held(id));
    if (!this.added?.[this.read++]) this.released += codePoints(d.push(id));
    return at;
  }
}

/**
 * Writes choices, deltas and log-probabilities in OpenAI's shapes (chat or completions). With `withTokenIds`
 * (vLLM's `return_token_ids`; always for a model without a tokenizer, whose text is empty) also the token
 * ids, as vLLM names them: each choice's `token_ids` (those it generated, after the prompt's with echo;
 * streamed: those of the chunk), and the prompt's `prompt_token_ids` — on each completions choice
 * (streamed: its first chunk); for chat, on the response (streamed: its first chunk).
 */
export class ResponseFormat {
  /** Streamed: each choice's generated tokens' text offsets (after its echoed prompt's text). */
  private readonly offsets = new Map<number, TextOffsets>();
  private readonly callCounts = new Map<number, number>();

  constructor(
    private readonly model: Model,
    private readonly chat: boolean,
    private readonly withLogprobs: boolean,
    readonly withTokenIds = false,
  ) {}

  /** `{ prompt_token_ids }` of a candidate's prompt with token ids, else nothing (to spread into an object). */
  promptTokenIds(c: Candidate): { prompt_token_ids?: number[] } {
    return this.withTokenIds ? { prompt_token_ids: [...c.generation.promptTokenIds] } : {};
  }

  /** A token's text as the API names it: its bytes (lossy where they are part of a character), a special token's name. */
  private token(id: number): { token: string; bytes: number[] } {
    const t = this.model.tokenizer;
    if (!t) return { token: `token_id:${id}`, bytes: [] };
    const bytes = t.tokenBytes(id);
    const token = bytes.length > 0 ? lossy.decode(bytes) : t.decode([id], false);
    return { token, bytes: [...(bytes.length > 0 ? bytes : new TextEncoder().encode(token))] };
  }

  private chatLogprobs(lps: readonly TokenLogprob[]): object {
    return {
      content: lps.map((lp) => ({
        ...this.token(lp.id),
        logprob: lp.logprob,
        top_logprobs: lp.top.map((t) => ({ ...this.token(t.id), logprob: t.logprob })),
      })),
      refusal: null,
    };
  }

  /**
   * The text offsets of a choice's tokens: its echoed prompt's (from 0; its special tokens are in its text: `<|im_end|>` there
   * is 10 characters), or its generated ones' (after the echoed text; special tokens are left out of a generation's text).
   */
  private textOffsets(c: Candidate | undefined, prompt: boolean): TextOffsets {
    return prompt ? new TextOffsets(this.model.tokenizer, 0, false, c?.echo?.added) : new TextOffsets(this.model.tokenizer, codePoints(c?.echo?.text ?? ""));
  }

  /**
   * Legacy completions log-probabilities; `ids[i]` is the token of `lps[i]` (null: no log-probability, the prompt's first),
   * its text offset `offsets.next(ids[i])` (see {@link TextOffsets}; vLLM adds up the returned token strings' lengths, which
   * drifts wherever a character is split over tokens — each piece is a whole U+FFFD there — and past the end of the empty
   * text of a model without a tokenizer, where every offset is 0 here).
   */
  private completionLogprobs(ids: readonly number[], lps: ReadonlyArray<TokenLogprob | null>, offsets: ReadonlyArray<TextOffsets>): object {
    return {
      tokens: ids.map((id) => this.token(id).token),
      token_logprobs: lps.map((lp) => lp?.logprob ?? null),
      // vLLM's rule: the chosen token is always among the alternatives.
      top_logprobs: lps.map((lp) => (lp ? Object.fromEntries([...lp.top, lp].map((t) => [this.token(t.id).token, t.logprob])) : null)),
      text_offset: ids.map((id, i) => offsets[i].next(id)),
    };
  }

  private toolCalls(index: number, calls: readonly ToolCall[]) {
    const first = this.callCounts.get(index) ?? 0;
    this.callCounts.set(index, first + calls.length);
    return calls.map((c, i) => ({ index: first + i, id: c.id, type: "function", function: { name: c.name, arguments: c.arguments } }));
  }

  /** A whole choice (not streamed). */
  choice(index: number, c: Candidate, r: GenerationResult): object {
    const finish_reason = finishReasonOf(r.finishReason);
    if (this.chat) {
      const calls = r.toolCalls?.length ? this.toolCalls(index, r.toolCalls) : undefined;
      const message = { role: "assistant", content: calls && r.text === "" ? null : r.text, ...(calls ? { tool_calls: calls } : {}) };
      return { index, message, logprobs: this.withLogprobs ? this.chatLogprobs(r.logprobs ?? []) : null, finish_reason, ...(this.withTokenIds ? { token_ids: r.tokenIds } : {}) };
    }
    const generated = r.logprobs ?? [];
    const echoed = c.echo ? [...c.echo.ids] : [];
    const [fromPrompt, fromGenerated] = [this.textOffsets(c, true), this.textOffsets(c, false)];
    const offsets = [...echoed.map(() => fromPrompt), ...generated.map(() => fromGenerated)];
    const logprobs = this.withLogprobs
      ? this.completionLogprobs([...echoed, ...generated.map((t) => t.id)], [...(c.echo ? (r.promptLogprobs ?? []) : []), ...generated], offsets)
      : null;
    // token_ids, like text and logprobs, start with the echoed prompt (as vLLM's do).
    return { index, text: (c.echo?.text ?? "") + r.text, logprobs, finish_reason, ...(this.withTokenIds ? { ...this.promptTokenIds(c), token_ids: [...echoed, ...r.tokenIds] } : {}) };
  }

  /** Streamed: the first deltas of a choice (chat: the role; completions with echo: the prompt; with token ids: the prompt's). */
  opening(index: number, c: Candidate): object[] {
    if (this.chat) return [{ index, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }];
    this.offsets.set(index, this.textOffsets(c, false));
    if (!c.echo) return this.withTokenIds ? [{ index, text: "", logprobs: null, finish_reason: null, ...this.promptTokenIds(c) }] : [];
    const lps = c.generation.promptLogprobs ?? [];
    const ids = this.withTokenIds ? { ...this.promptTokenIds(c), token_ids: [...c.echo.ids] } : {};
    const prompt = this.textOffsets(c, true);
    const logprobs = this.withLogprobs ? this.completionLogprobs(c.echo.ids, lps, c.echo.ids.map(() => prompt)) : null;
    return [{ index, text: c.echo.text, logprobs, finish_reason: null, ...ids }];
  }

  /** Streamed: what a token adds (undefined when nothing: no text yet, no log-probability, no token ids asked for). */
  delta(index: number, t: ModelToken): object | undefined {
    const lps = t.logprob ? [t.logprob] : [];
    const logprobs = this.withLogprobs && lps.length > 0 ? (this.chat ? this.chatLogprobs(lps) : this.completionLogprobs([t.id], lps, [this.offsets.get(index)!])) : null;
    const ids = this.withTokenIds && t.id >= 0 ? { token_ids: [t.id] } : undefined;
    if (!t.text && !logprobs && !t.toolCalls && !ids) return undefined;
    if (!this.chat) return { index, text: t.text, logprobs, finish_reason: null, ...ids };
    const delta = { ...(t.text || !t.toolCalls ? { content: t.text } : {}), ...(t.toolCalls ? { tool_calls: this.toolCalls(index, t.toolCalls) } : {}) };
    return { index, delta, logprobs, finish_reason: null, ...ids };
  }

  /** Streamed: the last delta of a choice. */
  closing(index: number, reason: string): object {
    return this.chat ? { index, delta: {}, logprobs: null, finish_reason: finishReasonOf(reason) } : { index, text: "", logprobs: null, finish_reason: finishReasonOf(reason) };
  }
}
