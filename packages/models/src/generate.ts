import type { CausalLM } from "./causal-lm.js";
import { Sampler, type SamplingOptions } from "./sampling.js";
import type { TextTokenizer } from "./tokenizer.js";

export interface GenerateOptions extends SamplingOptions {
  /** Most new tokens to produce (default 128). */
  readonly maxTokens?: number;
  /** Token ids that end generation (default: the model's EOS ids). Pass [] to never stop early. */
  readonly stopTokenIds?: readonly number[];
  /** Strings that end generation when the decoded text contains them (needs a tokenizer). */
  readonly stopStrings?: readonly string[];
  readonly tokenizer?: TextTokenizer;
  /** Keep the KV cache from earlier calls and continue the sequence (chat). */
  readonly continueSequence?: boolean;
  /** Stops generation before the next token when aborted (the tokens so far stay yielded). */
  readonly signal?: AbortSignal;
}

/** One generated token, as the iterator yields it. */
export interface GeneratedToken {
  readonly id: number;
  /** Text this token adds (with a tokenizer). */
  readonly text: string;
  /** Why generation stopped, on the last token. */
  readonly stop?: "eos" | "stop-string" | "max-tokens" | "max-context";
}

/** Statistics of a finished generation. */
export interface GenerationStats {
  readonly promptTokens: number;
  readonly generatedTokens: number;
  readonly prefillSeconds: number;
  readonly decodeSeconds: number;
}

/**
 * Generate tokens after a prompt, streaming them. Greedy when temperature is 0 (the default).
 *
 * @example
 * ```ts
 * for await (const t of generate(model, promptIds, { maxTokens: 32, tokenizer })) process.stdout.write(t.text);
 * ```
 */
export async function* generate(
  model: CausalLM,
  prompt: readonly number[],
  options: GenerateOptions = {},
  stats?: { value?: GenerationStats },
): AsyncGenerator<GeneratedToken> {
  const maxTokens = options.maxTokens ?? 128;
  const stopIds = new Set(options.stopTokenIds ?? model.config.eosTokenIds);
  const sampler = new Sampler(options);
  if (!options.continueSequence) model.reset();
  if (prompt.length === 0) throw new RangeError("the prompt has no tokens");
  const context: number[] = [...prompt];
  const generated: number[] = [];
  let text = "";
  let t0 = performance.now();
  // Greedy choice needs no logits on the host: the backend picks the token (no 0.5 MB copy per token on a GPU).
  const onDevice = sampler.isGreedy;
  const next = (ids: readonly number[]): (() => number) => {
    if (onDevice) {
      const id = model.forwardGreedy(ids);
      return () => id;
    }
    const logits = model.forward(ids);
    return () => sampler.next(logits, context);
  };
  let choose = next(prompt);
  const prefillSeconds = (performance.now() - t0) / 1000;
  t0 = performance.now();
  try {
    for (let i = 0; i < maxTokens; i++) {
      await new Promise<void>((resolve) => setImmediate(resolve)); // let consumers and signals (Ctrl-C) run between tokens
      if (options.signal?.aborted) return;
      const id = choose();
      context.push(id);
      generated.push(id);
      let piece = "";
      if (options.tokenizer) {
        const full = options.tokenizer.decode(generated);
        piece = full.slice(text.length);
        text = full;
      }
      const hitStopString = options.stopStrings?.some((s) => text.includes(s)) ?? false;
      const stop = stopIds.has(id)
        ? "eos"
        : hitStopString
          ? "stop-string"
          : i === maxTokens - 1
            ? "max-tokens"
            : model.length() >= model.maxContext
              ? "max-context"
              : undefined;
      yield { id, text: piece, stop };
      if (stop) return;
      choose = next([id]);
    }
  } finally {
    if (stats) {
      stats.value = { promptTokens: prompt.length, generatedTokens: generated.length, prefillSeconds, decodeSeconds: (performance.now() - t0) / 1000 };
    }
  }
}
