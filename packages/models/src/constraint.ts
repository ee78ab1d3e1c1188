import { ModelsError } from "./errors.js";
import { ChoiceAutomaton, JsonObjectAutomaton, LiteralAutomaton, SequenceAutomaton, type ByteAutomaton } from "./json-grammar.js";
import type { TextTokenizer } from "./tokenizer.js";

/** Decides which tokens may come next (constrained decoding); stateful, one per sequence. */
export interface TokenConstraint {
  /** Set the logits of tokens that may not come next to -Infinity (in place). */
  mask(logits: Float32Array): void;
  /** Move past the chosen token. */
  accept(id: number): void;
  /** Whether the constrained text is complete (only an end-of-sequence token may follow). */
  readonly complete: boolean;
}

/** No token can continue the constrained text (a vocabulary that cannot write it). */
export class ConstraintError extends ModelsError {
  override name = "ConstraintError";
}

interface SortedVocabulary {
  /** Token ids sorted by their bytes, tokens without bytes (special ones) left out. */
  readonly ids: Int32Array;
  readonly bytes: readonly Uint8Array[];
}

const vocabularies = new WeakMap<TextTokenizer, SortedVocabulary>();

function sortedVocabulary(tokenizer: TextTokenizer): SortedVocabulary {
  let v = vocabularies.get(tokenizer);
  if (!v) {
    const bytes = tokenizer.allTokenBytes();
    const ids = [...bytes.keys()].filter((id) => bytes[id].length > 0);
    ids.sort((a, b) => Buffer.compare(bytes[a], bytes[b]));
    v = { ids: Int32Array.from(ids), bytes };
    vocabularies.set(tokenizer, v);
  }
  return v;
}

/**
 * Constrained decoding over a byte automaton: a token may come next when the automaton accepts all its
 * bytes; once the text is complete only end-of-sequence tokens may. Tokens are walked in byte order so
 * a shared prefix is stepped once and a dead prefix skips every token that starts with it; masks are
 * cached per automaton state.
 */
export class AutomatonConstraint<S> implements TokenConstraint {
  private state: S;
  private readonly vocabulary: SortedVocabulary;
  private readonly cache = new Map<string, Uint8Array>();

  constructor(
    private readonly automaton: ByteAutomaton<S>,
    private readonly tokenizer: TextTokenizer,
    private readonly eosIds: readonly number[],
    private readonly what: string,
  ) {
    this.state = automaton.start;
    this.vocabulary = sortedVocabulary(tokenizer);
    if (eosIds.length === 0) throw new ConstraintError(`${what}: the model has no end-of-sequence token to end the text with`);
    this.allowed(); // fails now, not mid-generation, for a vocabulary that cannot start the text
  }

  get complete(): boolean {
    return this.automaton.isComplete(this.state);
  }

  mask(logits: Float32Array): void {
    const allowed = this.allowed();
    for (let i = 0; i < logits.length; i++) if (!allowed[i]) logits[i] = -Infinity; // ids past the tokenizer's (padding) never come
  }

  accept(id: number): void {
    if (this.eosIds.includes(id)) return;
    let s: S | undefined = this.state;
    for (const b of this.tokenizer.tokenBytes(id)) s = s === undefined ? undefined : this.automaton.step(s, b);
    if (s === undefined) throw new ConstraintError(`${this.what}: token ${id} does not continue the text`);
    this.state = s;
  }

  /** allowed[id] = 1 for each token that may come next. */
  private allowed(): Uint8Array {
    const size = this.vocabulary.bytes.length;
    const key = this.automaton.key(this.state);
    const cached = this.cache.get(key);
    if (cached) return cached;
    const allowed = new Uint8Array(size);
    if (this.complete) {
      for (const id of this.eosIds) if (id < size) allowed[id] = 1;
    } else this.walk(allowed);
    if (!allowed.includes(1)) throw new ConstraintError(`${this.what}: no token of this model's vocabulary can continue the text`);
    if (this.cache.size >= 512) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(key, allowed);
    return allowed;
  }

  /** Mark every token whose bytes the automaton accepts from the current state. */
  private walk(allowed: Uint8Array): void {
    const { ids, bytes } = this.vocabulary;
    const states: Array<S | undefined> = [this.state];
    let computed: Uint8Array = new Uint8Array(0); // the bytes `states` was stepped along
    let depth = 0; // states[0..depth] are valid for computed[0..depth)
    let dead = Infinity; // first k with states[k] undefined
    for (let n = 0; n < ids.length; n++) {
      const id = ids[n];
      if (id >= allowed.length) continue;
      const t = bytes[id];
      let lcp = 0;
      const limit = Math.min(t.length, depth);
      while (lcp < limit && t[lcp] === computed[lcp]) lcp++;
      if (dead <= lcp) continue; // a prefix already failed
      let k = lcp;
      for (; k < t.length; k++) {
        const next: S | undefined = this.automaton.step(states[k]!, t[k]);
        states[k + 1] = next;
        if (next === undefined) break;
      }
      computed = t;
      if (k < t.length) {
        depth = k + 1;
        dead = k + 1;
      } else {
        depth = t.length;
        dead = Infinity;
        allowed[id] = 1;
      }
    }
  }
}

/** `response_format: {type: "json_object"}`: the reply is one JSON object. */
export function jsonObjectConstraint(tokenizer: TextTokenizer, eosIds: readonly number[]): TokenConstraint {
  return new AutomatonConstraint(new JsonObjectAutomaton(), tokenizer, eosIds, "response_format json_object");
}

/** A part of a constrained text: exact text, one of several strings, or a JSON object. */
export type GrammarPart = { readonly literal: string } | { readonly oneOf: readonly string[] } | { readonly jsonObject: true };

/** Text made of these parts in order (e.g. a forced tool call: `<tool_call>\n{"name": "` + name + …). */
export function grammarConstraint(parts: readonly GrammarPart[], tokenizer: TextTokenizer, eosIds: readonly number[], what: string): TokenConstraint {
  const automata = parts.map((p): ByteAutomaton<unknown> =>
    "literal" in p ? new LiteralAutomaton(p.literal) : "oneOf" in p ? new ChoiceAutomaton(p.oneOf) : (new JsonObjectAutomaton() as ByteAutomaton<unknown>),
  );
  return new AutomatonConstraint(new SequenceAutomaton(automata), tokenizer, eosIds, what);
}
