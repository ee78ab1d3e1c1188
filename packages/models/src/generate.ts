import type { CausalLM, PendingGreedy } from "./causal-lm.js";
import { checkPromptFits } from "./errors.js";
import { tokenLogprob, type TokenLogprob } from "./logprobs.js";
import { SequenceState, type GeneratedToken, type SequenceOptions } from "./sequence.js";
import { endOfSequenceIds } from "./tokenizer.js";

export type { GeneratedToken, StopReason } from "./sequence.js";

export interface GenerateOptions extends SequenceOptions {
  /**
   * Token ids that end generation. Default: every end-of-sequence id of the model (config.json's and
   * generation_config.json's, as `loadCausalLM` reads them) and the tokenizer's EOS token. Pass [] to
   * never stop early.
   */
  readonly stopTokenIds?: readonly number[];
  /** Keep the KV cache from earlier calls and continue the sequence (chat). */
  readonly continueSequence?: boolean;
  /** Stops generation before the next token when aborted (the tokens so far stay yielded). */
  readonly signal?: AbortSignal;
}

/** Statistics of a finished generation. */
export interface GenerationStats {
  readonly promptTokens: number;
  readonly generatedTokens: number;
  readonly prefillSeconds: number;
  readonly decodeSeconds: number;
}

/**
 * Prefill a prompt into a sequence's KV cache and score it: the log-probability of each prompt token
 * given those before it (the first has none: null), with `top` alternatives. Returns the last
 * position's logits too, to choose the first generated token from.
 */
export function scorePrompt(model: CausalLM, prompt: readonly number[], top: number, slot = 0): { logits: Float32Array; promptLogprobs: Array<TokenLogprob | null> } {
  const vocab = model.config.vocabSize;
  const promptLogprobs: Array<TokenLogprob | null> = [null];
  const logits = model.forwardRows(
    prompt,
    (rows, firstRow) => {
      for (let r = 0; r * vocab < rows.length; r++) {
        const position = firstRow + r;
        if (position + 1 < prompt.length) promptLogprobs.push(tokenLogprob(rows.subarray(r * vocab, (r + 1) * vocab), prompt[position + 1], top));
      }
    },
    slot,
  );
  return { logits, promptLogprobs };
}

/**
 * Generate tokens after a prompt, streaming them. Greedy when temperature is 0 (the default). Text comes
 * in whole characters and stops before a stop string (see {@link GeneratedToken}). A prompt that leaves no
 * room in the context (`model.maxContext`) throws {@link ContextLengthError} on the first read.
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
  const seq = new SequenceState(prompt, { ...options, stopTokenIds: options.stopTokenIds ?? endOfSequenceIds(model.config.eosTokenIds, options.tokenizer) });
  // A prompt that fills the context is refused (ContextLengthError), as the scheduler behind df11 serve refuses it.
  checkPromptFits(prompt.length, model.maxContext, seq.maxTokens, options.continueSequence ? model.length() : 0);
  if (!options.continueSequence) model.reset();
  let t0 = performance.now();
  // Greedy choice needs no logits on the host: the backend picks the token (no 0.5 MB copy per token on a GPU).
  const next = (ids: readonly number[]) => (seq.needsLogits ? seq.choose(model.forward(ids)) : seq.choose(undefined, model.forwardGreedy(ids)));
  let choice = seq.maxTokens > 0 ? next(prompt) : undefined;
  const prefillSeconds = (performance.now() - t0) / 1000;
  t0 = performance.now();
  // Greedy (the backend picks each token): pipelined — the step that feeds token N is queued before N is
  // read back, accepted and handed out, its input taken on the device from the step before, so the host's
  // work per token (and the consumer's) overlaps the GPU's next step. `restore`: the sequence's length
  // before that step, while N has been fed ahead of the consumer asking for more; were the generation to
  // end there, the step is dropped (truncate) and the KV cache holds what it would have without it.
  let pending: PendingGreedy | undefined; // token N, still on the device
  let restore: number | undefined;
  try {
    while (choice) {
      await new Promise<void>((resolve) => setImmediate(resolve)); // let consumers and signals (Ctrl-C) run between tokens
      if (options.signal?.aborted) return;
      const length = model.length();
      let queued: PendingGreedy | undefined;
      if (!seq.needsLogits && seq.generated.length + 1 < seq.maxTokens && length < model.maxContext) {
        restore = length;
        queued = model.greedyAsync(pending ? model.stepGreedy(pending) : model.step([{ slot: 0, tokens: [choice.id] }]));
      }
      if (pending) choice = { id: pending.read()[0] };
      const token = seq.accept(choice, length >= model.maxContext);
      yield token;
      if (token.stop) return;
      restore = undefined;
      pending = queued;
      // Not queued (sampling, logprobs, constraints): the token is fed now; queued ones were fed above.
      choice = queued ? choice : next([token.id]);
    }
  } finally {
    if (restore !== undefined) model.truncate(0, restore);
    if (stats) {
      stats.value = { promptTokens: prompt.length, generatedTokens: seq.generated.length, prefillSeconds, decodeSeconds: (performance.now() - t0) / 1000 };
    }
  }
}
