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
  /** Subtracted once from every token already generated (OpenAI's presence_penalty, -2…2; 0 = off). */
  readonly presencePenalty?: number;
  /** Subtracted per occurrence from every token already generated (OpenAI's frequency_penalty, -2…2; 0 = off). */
  readonly frequencyPenalty?: number;
  /** Added to the logits of these token ids before anything else (OpenAI's logit_bias, -100…100). */
  readonly logitBias?: Readonly<Record<number, number>>;
  /** Seed of the sampling RNG, an integer in 0 … 2^53 − 1: same seed, same tokens (see {@link seedState}). */
  readonly seed?: number;
}

/** The sampling RNG's seed when none is given (so unseeded runs repeat too). */
export const DEFAULT_SEED = 0x5eed;

/**
 * The sampling RNG's 32-bit state for a seed, an integer in 0 … 2^53 − 1 (Number.MAX_SAFE_INTEGER);
 * RangeError otherwise (a negative, fractional or unsafe seed would be rounded or wrapped into another one).
 * A seed below 2^32 is the state itself, as it always was, so those seeds keep their streams. A larger
 * seed's high word (its bits 32…52) goes through murmur3's fmix32 finaliser (the splitmix kind of mix: a
 * bijection with fmix32(0) = 0) and is xored into its low word, so seeds that differ only above bit 31
 * (0, 2^32, 2^33…) sample differently — they all shared seed 0's stream before. The state has 32 bits, so
 * a larger seed still shares its stream with one seed below 2^32 (never with one of its own low word).
 */
export function seedState(seed: number): number {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`seed must be an integer in 0…${Number.MAX_SAFE_INTEGER} (2^53 − 1), got ${seed}`);
  const low = seed >>> 0;
  let high = Math.floor(seed / 2 ** 32);
  if (high === 0) return low;
  high = Math.imul(high ^ (high >>> 16), 0x85ebca6b);
  high = Math.imul(high ^ (high >>> 13), 0xc2b2ae35);
  return (low ^ high ^ (high >>> 16)) >>> 0;
}

/** Index of the largest logit (first one on ties, as torch.argmax). */
export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/**
 * A stateful sampler. Order, as vLLM applies them: logit bias, then the penalties (repetition over prompt
 * and output, CTRL-style as in transformers; presence and frequency over the output, as OpenAI defines
 * them), then temperature, top-k, top-p and min-p, then the draw.
 */
export class Sampler {
  private readonly rand: () => number;
  constructor(private readonly options: SamplingOptions = {}) {
    const { temperature = 0, topK = 0, topP = 1, minP = 0, repetitionPenalty = 1, presencePenalty = 0, frequencyPenalty = 0 } = options;
    if (!(temperature >= 0)) throw new RangeError(`temperature must be ≥ 0, got ${temperature}`);
    if (!(topK >= 0) || !Number.isInteger(topK)) throw new RangeError(`top-k must be a whole number ≥ 0, got ${topK}`);
    if (!(topP > 0 && topP <= 1)) throw new RangeError(`top-p must be in (0, 1], got ${topP}`);
    if (!(minP >= 0 && minP < 1)) throw new RangeError(`min-p must be in [0, 1), got ${minP}`);
    if (!(repetitionPenalty > 0)) throw new RangeError(`repetition penalty must be > 0, got ${repetitionPenalty}`);
    if (!Number.isFinite(presencePenalty)) throw new RangeError(`presence penalty must be a number, got ${presencePenalty}`);
    if (!Number.isFinite(frequencyPenalty)) throw new RangeError(`frequency penalty must be a number, got ${frequencyPenalty}`);
    for (const [id, bias] of Object.entries(options.logitBias ?? {})) {
      if (!/^\d+$/.test(id) || !Number.isFinite(bias)) throw new RangeError(`logit bias: expected token id → number, got ${id} → ${bias}`);
    }
    this.rand = mulberry32(seedState(options.seed ?? DEFAULT_SEED));
  }

  /** Whether every choice is the argmax of the raw logits (temperature 0, no penalty, no bias). */
  get isGreedy(): boolean {
    const o = this.options;
    return (o.temperature ?? 0) === 0 && (o.repetitionPenalty ?? 1) === 1 && !o.presencePenalty && !o.frequencyPenalty && Object.keys(o.logitBias ?? {}).length === 0;
  }

  /**
   * Choose the next token from the last position's logits, given the tokens so far (`context`, prompt
   * included) and the generated ones among them (`generated`; default: none, so no presence/frequency
   * penalty). Logits of -Infinity (masked tokens) are never chosen while any other is finite.
   */
  next(logits: Float32Array, context: ArrayLike<number>, generated: ArrayLike<number> = []): number {
    const { temperature = 0, topK = 0, topP = 1, minP = 0, repetitionPenalty = 1, presencePenalty = 0, frequencyPenalty = 0, logitBias } = this.options;
    let scores = logits;
    const writable = () => (scores === logits ? (scores = Float32Array.from(logits)) : scores);
    if (logitBias) for (const [id, bias] of Object.entries(logitBias)) if (Number(id) < scores.length) writable()[Number(id)] += bias;
    if (repetitionPenalty !== 1) {
      const s = writable();
      const seen = new Set<number>();
      for (let i = 0; i < context.length; i++) seen.add(context[i]);
      for (const t of seen) s[t] = s[t] < 0 ? s[t] * repetitionPenalty : s[t] / repetitionPenalty;
    }
    if ((presencePenalty !== 0 || frequencyPenalty !== 0) && generated.length > 0) {
      const s = writable();
      const counts = new Map<number, number>();
      for (let i = 0; i < generated.length; i++) counts.set(generated[i], (counts.get(generated[i]) ?? 0) + 1);
      for (const [t, n] of counts) s[t] -= presencePenalty + frequencyPenalty * n;
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
