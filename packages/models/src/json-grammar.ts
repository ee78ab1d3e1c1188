/**
 * Byte-level automata for constrained decoding: JSON (RFC 8259, objects at the top), literal text, and a
 * choice among strings, chained in sequence. A state is an immutable value; `step` returns the state after
 * one byte, or undefined when the byte cannot come next.
 */
export interface ByteAutomaton<S> {
  readonly start: S;
  step(state: S, byte: number): S | undefined;
  /** Whether the text so far is complete (nothing more may follow). */
  isComplete(state: S): boolean;
  /** A key equal for states that accept exactly the same continuations (for caching masks). */
  key(state: S): string;
}

/** Where a JSON text is. */
const enum Mode {
  Value, // a value must come (after ':' or ',' in an array, or at the top)
  ObjectFirst, // after '{': a key or '}'
  ObjectKey, // after ',' in an object: a key
  Colon, // after a key
  After, // after a value: ',' or the closer
  ArrayFirst, // after '[': a value or ']'
  String,
  Escape, // after '\' in a string
  Unicode, // in \uXXXX; `count` hex digits left
  Literal, // in true/false/null; `literal` is what is left
  Minus, // after '-'
  Zero, // number "0" (or "-0")
  Integer, // digits after 1-9
  Dot, // after '.'
  Fraction,
  Exponent, // after 'e'
  ExponentSign,
  ExponentDigits,
  Done,
}

interface JsonState {
  readonly mode: Mode;
  /** Open containers, innermost last: '{' or '['. */
  readonly stack: string;
  /** String: whether it is an object key. Unicode: hex digits left. UTF-8: continuation bytes expected. */
  readonly count: number;
  readonly isKey: boolean;
  readonly literal: string;
  /** Whitespace bytes in a row (bounded, as llama.cpp's JSON grammar bounds it, so a model cannot loop on it). */
  readonly spaces: number;
}

const MAX_SPACES = 20;
const isDigit = (b: number) => b >= 0x30 && b <= 0x39;
const isSpace = (b: number) => b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
const isHex = (b: number) => isDigit(b) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);
const state = (mode: Mode, stack: string, extra: Partial<JsonState> = {}): JsonState => ({ mode, stack, count: 0, isKey: false, literal: "", spaces: 0, ...extra });

/** JSON text whose top level is an object (OpenAI's `response_format: json_object`). */
export class JsonObjectAutomaton implements ByteAutomaton<JsonState> {
  readonly start = state(Mode.Value, "");

  isComplete(s: JsonState): boolean {
    return s.mode === Mode.Done;
  }

  key(s: JsonState): string {
    return `${s.mode}|${s.stack}|${s.count}|${s.isKey ? 1 : 0}|${s.literal}|${s.spaces}`;
  }

  step(s: JsonState, b: number): JsonState | undefined {
    switch (s.mode) {
      case Mode.Done:
        return undefined;
      case Mode.String:
        return this.inString(s, b);
      case Mode.Escape:
        if (b === 0x75) return { ...s, mode: Mode.Unicode, count: 4 };
        return '"\\/bfnrt'.includes(String.fromCharCode(b)) ? { ...s, mode: Mode.String, count: 0 } : undefined;
      case Mode.Unicode:
        if (!isHex(b)) return undefined;
        return s.count > 1 ? { ...s, count: s.count - 1 } : { ...s, mode: Mode.String, count: 0 };
      case Mode.Literal:
        if (b !== s.literal.charCodeAt(0)) return undefined;
        return s.literal.length > 1 ? { ...s, literal: s.literal.slice(1) } : this.valueEnded(s.stack);
      case Mode.Minus:
        return b === 0x30 ? { ...s, mode: Mode.Zero } : isDigit(b) ? { ...s, mode: Mode.Integer } : undefined;
      case Mode.Zero:
      case Mode.Integer:
        if (isDigit(b) && s.mode === Mode.Integer) return s;
        if (b === 0x2e) return { ...s, mode: Mode.Dot };
        if (b === 0x65 || b === 0x45) return { ...s, mode: Mode.Exponent };
        return this.afterNumber(s, b);
      case Mode.Dot:
        return isDigit(b) ? { ...s, mode: Mode.Fraction } : undefined;
      case Mode.Fraction:
        if (isDigit(b)) return s;
        if (b === 0x65 || b === 0x45) return { ...s, mode: Mode.Exponent };
        return this.afterNumber(s, b);
      case Mode.Exponent:
        return b === 0x2b || b === 0x2d ? { ...s, mode: Mode.ExponentSign } : isDigit(b) ? { ...s, mode: Mode.ExponentDigits } : undefined;
      case Mode.ExponentSign:
        return isDigit(b) ? { ...s, mode: Mode.ExponentDigits } : undefined;
      case Mode.ExponentDigits:
        return isDigit(b) ? s : this.afterNumber(s, b);
    }
    // Structural modes: whitespace may come between tokens.
    if (isSpace(b)) return s.spaces < MAX_SPACES ? { ...s, spaces: s.spaces + 1 } : undefined;
    const top = s.stack.at(-1);
    switch (s.mode) {
      case Mode.Value:
        return this.value(s.stack, b);
      case Mode.ArrayFirst:
        return b === 0x5d ? this.valueEnded(s.stack.slice(0, -1)) : this.value(s.stack, b);
      case Mode.ObjectFirst:
        if (b === 0x7d) return this.valueEnded(s.stack.slice(0, -1));
        return b === 0x22 ? state(Mode.String, s.stack, { isKey: true }) : undefined;
      case Mode.ObjectKey:
        return b === 0x22 ? state(Mode.String, s.stack, { isKey: true }) : undefined;
      case Mode.Colon:
        return b === 0x3a ? state(Mode.Value, s.stack) : undefined;
      case Mode.After:
        if (b === 0x2c) return state(top === "{" ? Mode.ObjectKey : Mode.Value, s.stack);
        if ((b === 0x7d && top === "{") || (b === 0x5d && top === "[")) return this.valueEnded(s.stack.slice(0, -1));
        return undefined;
    }
    return undefined;
  }

  private value(stack: string, b: number): JsonState | undefined {
    if (stack === "") return b === 0x7b ? state(Mode.ObjectFirst, "{") : undefined; // the top level is an object
    if (b === 0x7b) return state(Mode.ObjectFirst, `${stack}{`);
    if (b === 0x5b) return state(Mode.ArrayFirst, `${stack}[`);
    if (b === 0x22) return state(Mode.String, stack);
    if (b === 0x2d) return state(Mode.Minus, stack);
    if (b === 0x30) return state(Mode.Zero, stack);
    if (isDigit(b)) return state(Mode.Integer, stack);
    const literal = b === 0x74 ? "rue" : b === 0x66 ? "alse" : b === 0x6e ? "ull" : undefined;
    return literal ? state(Mode.Literal, stack, { literal }) : undefined;
  }

  private valueEnded(stack: string): JsonState {
    return state(stack === "" ? Mode.Done : Mode.After, stack);
  }

  /** A number ended at this byte: it is read again as what follows the number. */
  private afterNumber(s: JsonState, b: number): JsonState | undefined {
    return this.step(this.valueEnded(s.stack), b);
  }

  private inString(s: JsonState, b: number): JsonState | undefined {
    if (s.count > 0) return b >= 0x80 && b <= 0xbf ? { ...s, count: s.count - 1 } : undefined; // UTF-8 continuation
    if (b === 0x22) return s.isKey ? state(Mode.Colon, s.stack) : this.valueEnded(s.stack);
    if (b === 0x5c) return { ...s, mode: Mode.Escape };
    if (b < 0x20) return undefined;
    if (b < 0x80) return s;
    const continuation = b >= 0xc2 && b <= 0xdf ? 1 : b >= 0xe0 && b <= 0xef ? 2 : b >= 0xf0 && b <= 0xf4 ? 3 : -1;
    return continuation < 0 ? undefined : { ...s, count: continuation };
  }
}

/** Exactly this text. */
export class LiteralAutomaton implements ByteAutomaton<number> {
  readonly start = 0;
  private readonly bytes: Uint8Array;
  constructor(text: string) {
    this.bytes = new TextEncoder().encode(text);
  }
  step(at: number, b: number): number | undefined {
    return at < this.bytes.length && this.bytes[at] === b ? at + 1 : undefined;
  }
  isComplete(at: number): boolean {
    return at === this.bytes.length;
  }
  key(at: number): string {
    return String(at);
  }
}

/** One of these strings (a tool's name among the tools). */
export class ChoiceAutomaton implements ByteAutomaton<{ readonly at: number; readonly live: readonly number[] }> {
  private readonly options: Uint8Array[];
  readonly start: { readonly at: number; readonly live: readonly number[] };
  constructor(choices: readonly string[]) {
    const encoder = new TextEncoder();
    this.options = choices.map((c) => encoder.encode(c));
    this.start = { at: 0, live: choices.map((_, i) => i) };
  }
  step(s: { at: number; live: readonly number[] }, b: number) {
    const live = s.live.filter((i) => this.options[i][s.at] === b);
    return live.length > 0 ? { at: s.at + 1, live } : undefined;
  }
  isComplete(s: { at: number; live: readonly number[] }): boolean {
    return s.live.some((i) => this.options[i].length === s.at);
  }
  key(s: { at: number; live: readonly number[] }): string {
    return `${s.at}:${s.live.join(",")}`;
  }
}

type Part = ByteAutomaton<unknown>;
interface SequenceState {
  readonly part: number;
  readonly inner: unknown;
}

/**
 * Parts one after another: a byte goes to the current part; when that part is complete and cannot take
 * the byte, the next part starts with it. Complete when every part is.
 */
export class SequenceAutomaton implements ByteAutomaton<SequenceState> {
  readonly start: SequenceState;
  constructor(private readonly parts: readonly Part[]) {
    this.start = { part: 0, inner: parts[0].start };
  }
  step(s: SequenceState, b: number): SequenceState | undefined {
    for (let part = s.part, inner = s.inner; part < this.parts.length; ) {
      const next = this.parts[part].step(inner, b);
      if (next !== undefined) return { part, inner: next };
      if (!this.parts[part].isComplete(inner)) return undefined;
      part++;
      if (part < this.parts.length) inner = this.parts[part].start;
    }
    return undefined;
  }
  isComplete(s: SequenceState): boolean {
    for (let part = s.part, inner = s.inner; part < this.parts.length; part++, inner = this.parts[part]?.start) {
      if (!this.parts[part].isComplete(inner)) return false;
    }
    return true;
  }
  key(s: SequenceState): string {
    return `${s.part}/${this.parts[s.part].key(s.inner)}`;
  }
}
