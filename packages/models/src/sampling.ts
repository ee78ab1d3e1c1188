import { mulberry32 } from "@df11/codec";

/** How the next token is chosen. temperature 0 (the default) is greedy. */
export interface SamplingOptions {
  readonly temperature?: number;
  /** Keep the k most likely tokens (0 = off). */
  readonly topK?: number;
  /** Keep the smallest set of tokens whose probability reaches p (1 = off). */
  readonly topP?: number;
  /** Drop tokens less likely than minP × the most likely one (0 = off). */
  readonly minP?: number;
  /** > 1 discourages tokens already in the context (CTRL-style, as transformers applies it). */
  readonly repetitionPenalty?: number;
  /** Seed of the sampling RNG: same seed, same tokens. */
  readonly seed?: number;
}

/** Index of the largest logit (first one on ties, as torch.argmax). */
export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/** A stateful sampler: applies the penalties and filters in transformers' order, then draws. */
export class Sampler {
  private readonly rand: () => number;
  constructor(private readonly options: SamplingOptions = {}) {
    const { temperature = 0, topK = 0, topP = 1, minP = 0, repetitionPenalty = 1 } = options;
    if (!(temperature >= 0)) throw new RangeError(`temperature must be ≥ 0, got ${temperature}`);
    if (!(topK >= 0) || !Number.isInteger(topK)) throw new RangeError(`top-k must be a whole number ≥ 0, got ${topK}`);
    if (!(topP > 0 && topP <= 1)) throw new RangeError(`top-p must be in (0, 1], got ${topP}`);
    if (!(minP >= 0 && minP < 1)) throw new RangeError(`min-p must be in [0, 1), got ${minP}`);
    if (!(repetitionPenalty > 0)) throw new RangeError(`repetition penalty must be > 0, got ${repetitionPenalty}`);
    this.rand = mulberry32(options.seed ?? 0x5eed);
  }

  /** Whether every choice is the argmax of the logits (temperature 0, no repetition penalty). */
  get isGreedy(): boolean {
    return (this.options.temperature ?? 0) === 0 && (this.options.repetitionPenalty ?? 1) === 1;
  }

  /** Choose the next token from the last position's logits, given the tokens so far. */
  next(logits: Float32Array, context: ArrayLike<number>): number {
    const { temperature = 0, topK = 0, topP = 1, minP = 0, repetitionPenalty = 1 } = this.options;
    let scores = logits;
    if (repetitionPenalty !== 1) {
      scores = Float32Array.from(logits);
      const seen = new Set<number>();
      for (let i = 0; i < context.length; i++) seen.add(context[i]);
      for (const t of seen) scores[t] = scores[t] < 0 ? scores[t] * repetitionPenalty : scores[t] / repetitionPenalty;
    }
    if (temperature === 0) return argmax(scores);

    // Candidates sorted by score, then filtered: top-k, softmax at temperature, top-p, min-p.
    let order = Array.from(scores.keys()).sort((a, b) => scores[b] - scores[a] || a - b);
    if (topK > 0) order = order.slice(0, topK);
    const max = scores[order[0]];
    let probs = order.map((t) => Math.exp((scores[t] - max) / temperature));
    let total = probs.reduce((a, b) => a + b, 0);
    probs = probs.map((p) => p / total);
    if (topP < 1) {
      let acc = 0;
      let keep = 0;
      while (keep < probs.length && acc < topP) acc += probs[keep++];
      order = order.slice(0, keep);
      probs = probs.slice(0, keep);
    }
    if (minP > 0) {
      const threshold = minP * probs[0];
      const keep = probs.findIndex((p) => p < threshold);
      if (keep > 0) {
        order = order.slice(0, keep);
        probs = probs.slice(0, keep);
      }
    }
    total = probs.reduce((a, b) => a + b, 0);
    let u = this.rand() * total;
    for (let i = 0; i < order.length; i++) {
      u -= probs[i];
      if (u <= 0) return order[i];
    }
    return order[order.length - 1];
  }
}
