import type { TextTokenizer } from "./tokenizer.js";

const REPLACEMENT = "\uFFFD";
const isLowSurrogate = (c: number) => c >= 0xdc00 && c <= 0xdfff;
const isHighSurrogate = (c: number) => c >= 0xd800 && c <= 0xdbff;

/**
 * Turns generated token ids into text one token at a time, releasing only whole characters: the bytes of
 * a character split across tokens (é, CJK, emoji in byte-level BPE; `<0xNN>` byte-fallback pieces) wait
 * until the token that completes it. Works on a short window of recent tokens (vLLM's and TGI's
 * prefix/read offsets), so each token costs O(window), and decoders that strip a leading space
 * (SentencePiece) or clean up spaces still give the text `decode(ids)` gives. The pieces joined are
 * the text; `flush()` releases what is still held (e.g. an incomplete character at the token limit,
 * as U+FFFD — the text transformers' `decode` gives for those bytes).
 *
 * @example
 * ```ts
 * const d = new IncrementalDetokenizer(tokenizer);
 * for (const id of ids) process.stdout.write(d.push(id)); // never half an é or half an emoji
 * process.stdout.write(d.flush());
 * ```
 */
export class IncrementalDetokenizer {
  private readonly ids: number[] = [];
  private prefixOffset = 0;
  private readOffset = 0;

  constructor(
    private readonly tokenizer: TextTokenizer,
    /** Leave special tokens out of the text (default true, as transformers' skip_special_tokens). */
    private readonly skipSpecialTokens = true,
  ) {}

  private window(from: number, to: number): string {
    return this.tokenizer.decode(this.ids.slice(from, to), this.skipSpecialTokens);
  }

  /** Add a token; returns the text it completes ("" while a character is unfinished). */
  push(id: number): string {
    this.ids.push(id);
    return this.release(false);
  }

  /** Release everything still held (at the end of generation). */
  flush(): string {
    return this.release(true);
  }

  /**
   * The text of the tokens pushed but not released yet, up to a character they leave unfinished: the text
   * that precedes the next token's own, after what `push` has released. (Invalid bytes count, as the U+FFFD
   * they decode to.) Where a token's text starts, e.g. an OpenAI completion's `text_offset`. With `next`, the
   * token to come: one whose first byte cannot continue the unfinished character ends it (as U+FFFD, in the text
   * before its own: C3 then "a" decode to "\uFFFDa").
   */
  held(next?: number): string {
    if (this.readOffset === this.ids.length) return "";
    const { text } = this.unreleased();
    const bytes = this.ids.slice(this.readOffset).flatMap((id) => [...this.tokenizer.tokenBytes(id)]);
    if (!text.endsWith(REPLACEMENT) || !endsInsideCharacter(bytes)) return text;
    const first = next === undefined ? undefined : this.tokenizer.tokenBytes(next)[0];
    return first === undefined || continuesCharacter(bytes, first) ? text.slice(0, -1) : text;
  }

  /** The text the tokens after the last release add, and whether they add any. */
  private unreleased(): { text: string; grew: boolean } {
    const prefix = this.window(this.prefixOffset, this.readOffset);
    const full = this.window(this.prefixOffset, this.ids.length);
    let start = Math.min(prefix.length, full.length);
    // A decoder that rewrote the prefix (space clean-up) must not make us split a surrogate pair.
    if (start > 0 && start < full.length && isLowSurrogate(full.charCodeAt(start))) start++;
    return { text: full.slice(start), grew: full.length > prefix.length };
  }

  private release(final: boolean): string {
    if (this.readOffset === this.ids.length) return "";
    const { text, grew } = this.unreleased();
    if (!final && (!grew || text.endsWith(REPLACEMENT))) return "";
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    return text;
  }
}

/** Whether `next` can be the next byte of the character UTF-8 `bytes` leave unfinished (E4 B8 then AD: yes; C3 then 61 or C3: no). */
function continuesCharacter(bytes: readonly number[], next: number): boolean {
  let lead = bytes.length - 1;
  while (lead > 0 && (bytes[lead] & 0xc0) === 0x80) lead--;
  return !new TextDecoder().decode(Uint8Array.from([...bytes.slice(lead), next]), { stream: true }).includes(REPLACEMENT);
}

/** Whether UTF-8 bytes end inside a character: a lead byte followed by fewer continuation bytes than it announces. */
function endsInsideCharacter(bytes: readonly number[]): boolean {
  for (let i = bytes.length - 1; i >= 0 && i >= bytes.length - 4; i--) {
    const b = bytes[i];
    if ((b & 0xc0) === 0x80) continue; // a continuation byte
    const length = b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 1;
    return bytes.length - i < length;
  }
  return false;
}

/**
 * Finds stop strings in streamed text: text that could still be the start of a stop string is held back
 * until it cannot, and text from the first stop string on is never released (OpenAI semantics).
 */
export class StopStringMatcher {
  private pending = "";
  private readonly stops: readonly string[];

  constructor(stops: readonly string[] = []) {
    this.stops = stops.filter((s) => s.length > 0);
  }

  /** Add text; returns what may be shown now and whether a stop string was found (the text ends before it). */
  push(text: string): { text: string; stopped: boolean } {
    this.pending += text;
    let cut = -1;
    for (const s of this.stops) {
      const i = this.pending.indexOf(s);
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      const out = this.pending.slice(0, cut);
      this.pending = "";
      return { text: out, stopped: true };
    }
    let keep = this.heldLength();
    if (keep < this.pending.length && isHighSurrogate(this.pending.charCodeAt(this.pending.length - keep - 1))) keep++;
    const out = this.pending.slice(0, this.pending.length - keep);
    this.pending = this.pending.slice(this.pending.length - keep);
    return { text: out, stopped: false };
  }

  /** The text held back (at the end of generation it is shown). */
  flush(): string {
    const out = this.pending;
    this.pending = "";
    return out;
  }

  /** Length of the longest end of the pending text that begins some stop string. */
  private heldLength(): number {
    let best = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, this.pending.length); n > best; n--) {
        if (this.pending.endsWith(s.slice(0, n))) {
          best = n;
          break;
        }
      }
    }
    return best;
  }
}

/**
 * The text of a generation as every surface shows it: whole characters only ({@link IncrementalDetokenizer}),
 * cut before the first stop string ({@link StopStringMatcher}). `push` each generated token (not the
 * end-of-sequence token that stops it), then `finish()` for the rest. The pieces joined equal `text`.
 */
export class GeneratedText {
  private readonly detokenizer: IncrementalDetokenizer | undefined;
  private readonly matcher: StopStringMatcher;
  private released = "";
  private stopped = false;

  constructor(tokenizer: TextTokenizer | undefined, stopStrings: readonly string[] = []) {
    this.detokenizer = tokenizer && new IncrementalDetokenizer(tokenizer);
    this.matcher = new StopStringMatcher(stopStrings);
  }

  /** All text released so far. */
  get text(): string {
    return this.released;
  }

  /** Add a generated token: the text to show now, and whether a stop string ended the text. */
  push(id: number): { text: string; stopped: boolean } {
    if (this.stopped || !this.detokenizer) return { text: "", stopped: this.stopped };
    const r = this.matcher.push(this.detokenizer.push(id));
    this.stopped = r.stopped;
    this.released += r.text;
    return r;
  }

  /** Generation ended (not by a stop string): the text still held. */
  finish(): string {
    if (this.stopped || !this.detokenizer) return "";
    const r = this.matcher.push(this.detokenizer.flush());
    this.stopped = r.stopped;
    const out = r.text + (r.stopped ? "" : this.matcher.flush());
    this.released += out;
    return out;
  }
}
