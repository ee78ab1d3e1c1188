/** A token's log-probability (natural log), with the most likely alternatives at its position. */
export interface TokenLogprob {
  readonly id: number;
  readonly logprob: number;
  /** The `top` most likely tokens at this position, most likely first (ties: lower id first). */
  readonly top: ReadonlyArray<{ readonly id: number; readonly logprob: number }>;
}

/** Most alternatives a request may ask for (OpenAI's top_logprobs limit). */
export const MAX_TOP_LOGPROBS = 20;

/** log Σ exp(logits), in double precision. */
export function logSumExp(logits: ArrayLike<number>): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  if (max === -Infinity) return -Infinity;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  return max + Math.log(sum);
}

/**
 * Log-probability of `id` under softmax(logits), and the `top` most likely tokens. These are the model's
 * own probabilities (raw logits, before temperature, penalties or constraints), as vLLM reports them.
 */
export function tokenLogprob(logits: ArrayLike<number>, id: number, top = 0): TokenLogprob {
  const z = logSumExp(logits);
  const best: number[] = [];
  if (top > 0) {
    for (let i = 0; i < logits.length; i++) {
      if (best.length === top && logits[i] <= logits[best[top - 1]]) continue;
      let j = best.length;
      while (j > 0 && logits[best[j - 1]] < logits[i]) j--;
      best.splice(j, 0, i);
      if (best.length > top) best.pop();
    }
  }
  return { id, logprob: logits[id] - z, top: best.map((t) => ({ id: t, logprob: logits[t] - z })) };
}
