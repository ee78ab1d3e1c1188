import type { TokenConstraint } from "./constraint.js";
import { tokenLogprob, type TokenLogprob, MAX_TOP_LOGPROBS } from "./logprobs.js";
import { Sampler, type SamplingOptions } from "./sampling.js";
import { GeneratedText } from "./text-stream.js";
import type { TextTokenizer } from "./tokenizer.js";

/** Why a sequence stopped. */
export type StopReason = "eos" | "stop-string" | "max-tokens" | "max-context";

/** One generated token, as generation streams it. */
export interface GeneratedToken {
  readonly id: number;
  /**
   * Text this token makes visible (with a tokenizer): whole characters only, never text at or after a
   * stop string, nor text that could still become one. The pieces joined are the generation's text.
   */
  readonly text: string;
  /** Why generation stopped, on the last token. */
  readonly stop?: StopReason;
  /** Its log-probability and the top alternatives, when asked for (`logprobs`); not on an end-of-sequence token that stops generation. */
  readonly logprob?: TokenLogprob;
}

/** How one sequence is generated: sampling, stopping rules, text, log-probabilities, constraint. */
export interface SequenceOptions extends SamplingOptions {
  /** Most new tokens (default 128). */
  readonly maxTokens?: number;
  /** Ids that end the sequence (the caller's default: the model's end-of-sequence ids). Not part of the text. */
  readonly stopTokenIds?: readonly number[];
  /** Text that ends the sequence; the text stops before it (needs a tokenizer). */
  readonly stopStrings?: readonly string[];
  readonly tokenizer?: TextTokenizer;
  /** Report each token's log-probability and this many alternatives (0…20); undefined: none. */
  readonly logprobs?: number;
  /** Constrained decoding (JSON, forced tool calls): only the tokens it allows are chosen. */
  readonly constraint?: TokenConstraint;
}

/**
 * The per-sequence half of generation, shared by {@link generate} and the {@link BatchScheduler} (and
 * anything else that runs the forward passes itself): choose each token from the logits, then record
 * it — text, stop rules, log-probabilities. The caller owns the model and its KV cache.
 *
 * @example
 * ```ts
 * const seq = new SequenceState(prompt, { maxTokens: 16, tokenizer, stopTokenIds: eos });
 * let logits = model.forward(prompt);
 * for (;;) {
 *   const t = seq.accept(seq.choose(logits), model.length() >= model.maxContext);
 *   process.stdout.write(t.text);
 *   if (t.stop) break;
 *   logits = model.forward([t.id]);
 * }
 * ```
 */
export class SequenceState {
  readonly context: number[];
  readonly generated: number[] = [];
  readonly maxTokens: number;
  private readonly sampler: Sampler;
  private readonly stopIds: ReadonlySet<number>;
  private readonly text: GeneratedText;

  constructor(
    prompt: readonly number[],
    private readonly options: SequenceOptions,
  ) {
    if (prompt.length === 0) throw new RangeError("the prompt has no tokens");
    this.maxTokens = options.maxTokens ?? 128;
    if (!(Number.isInteger(this.maxTokens) && this.maxTokens >= 0)) throw new RangeError(`maxTokens must be a whole number ≥ 0, got ${this.maxTokens}`);
    const top = options.logprobs;
    if (top !== undefined && !(Number.isInteger(top) && top >= 0 && top <= MAX_TOP_LOGPROBS)) throw new RangeError(`logprobs must be a whole number in 0…${MAX_TOP_LOGPROBS}, got ${top}`);
    this.context = [...prompt];
    this.sampler = new Sampler(options);
    this.stopIds = new Set(options.stopTokenIds ?? []);
    this.text = new GeneratedText(options.tokenizer, options.stopStrings);
  }

  /** Whether the next token needs the logits on the host; when not, the backend's argmax is the choice. */
  get needsLogits(): boolean {
    return !this.sampler.isGreedy || this.options.logprobs !== undefined || this.options.constraint !== undefined;
  }

  /** Choose the next token from the last position's logits (or take the backend's argmax when `needsLogits` is false). */
  choose(logits: Float32Array | undefined, argmaxId?: number): { id: number; logprob?: TokenLogprob } {
    if (!logits) {
      if (this.needsLogits || argmaxId === undefined) throw new RangeError("this sequence needs the logits to choose its next token");
      return { id: argmaxId };
    }
    let scores = logits;
    if (this.options.constraint) {
      scores = Float32Array.from(logits);
      this.options.constraint.mask(scores);
    }
    const id = this.sampler.next(scores, this.context, this.generated);
    return { id, logprob: this.options.logprobs === undefined ? undefined : tokenLogprob(logits, id, this.options.logprobs) };
  }

  /**
   * Record the chosen token: the text it shows and whether it ends the sequence. `contextFull`: the model
   * has no position left to read this token at.
   */
  accept(choice: { id: number; logprob?: TokenLogprob }, contextFull: boolean): GeneratedToken {
    const { id, logprob } = choice;
    this.context.push(id);
    this.generated.push(id);
    let stop: StopReason | undefined;
    let text: string;
    if (this.stopIds.has(id)) {
      stop = "eos";
      text = this.text.finish();
      return { id, text, stop }; // not part of the text, so no log-probability either (as OpenAI's API)
    } else {
      this.options.constraint?.accept(id);
      const r = this.text.push(id);
      text = r.text;
      stop = r.stopped ? "stop-string" : this.generated.length >= this.maxTokens ? "max-tokens" : contextFull ? "max-context" : undefined;
      if (stop && !r.stopped) text += this.text.finish();
    }
    return { id, text, stop, ...(logprob ? { logprob } : {}) };
  }
}
