import { CodeConstructionError } from "./errors.js";
import { countContinuationRows } from "./luts.js";

/** Longest codeword the DF11 decoder can read (its window is 32 bits). */
export const MAX_CODE_LENGTH = 32;
/** LUT pointer bytes 240…255 address rows 16…1, so at most 16 continuation rows exist. */
export const MAX_CONTINUATION_ROWS = 16;

/**
 * A prefix code over exponent bytes, as the official encoder builds it (dahuffman's Huffman tree,
 * which also holds an end-of-stream symbol used only to pad the last byte).
 */
export interface HuffmanCode {
  /** Code length of each exponent value; 0 where the value does not occur. */
  readonly lengths: Uint8Array;
  /** Codeword of each exponent value, right-aligned in `lengths[e]` bits. */
  readonly codes: Uint32Array;
  /** Length and codeword of the end-of-stream symbol. */
  readonly eofLength: number;
  readonly eofCode: number;
  /** Exponent values in the tree's table order (the order the official LUT builder walks). */
  readonly order: readonly number[];
}

const EOF = -1;

interface Node {
  freq: number;
  /** Symbols under this node in table order; EOF is -1. */
  symbols: number[];
}

/** dahuffman's ordering: by frequency, then by the node's first symbol, EOF below every exponent. */
const nodeLess = (a: Node, b: Node): boolean =>
  a.freq !== b.freq ? a.freq < b.freq : a.symbols[0] < b.symbols[0];

function popMin(heap: Node[]): Node {
  let best = 0;
  for (let i = 1; i < heap.length; i++) if (nodeLess(heap[i], heap[best])) best = i;
  const [node] = heap.splice(best, 1);
  return node;
}

interface RawCode {
  lengths: Map<number, number>;
  codes: Map<number, number>;
  order: number[];
}

/** Huffman tree exactly as dahuffman.HuffmanCodec.from_frequencies builds it (codes may exceed 32 bits). */
function buildTree(freqs: ReadonlyMap<number, number>): RawCode {
  const heap: Node[] = [...freqs].map(([s, f]) => ({ freq: f, symbols: [s] }));
  heap.push({ freq: 1, symbols: [EOF] });
  const lengths = new Map<number, number>();
  const codes = new Map<number, number>();
  for (const n of heap) {
    lengths.set(n.symbols[0], 0);
    codes.set(n.symbols[0], 0);
  }
  while (heap.length > 1) {
    const a = popMin(heap);
    const b = popMin(heap);
    // a's symbols gain a leading 0, b's a leading 1.
    for (const s of a.symbols) lengths.set(s, lengths.get(s)! + 1);
    for (const s of b.symbols) {
      const n = lengths.get(s)!;
      codes.set(s, codes.get(s)! + 2 ** n);
      lengths.set(s, n + 1);
    }
    heap.push({ freq: a.freq + b.freq, symbols: a.symbols.concat(b.symbols) });
  }
  return { lengths, codes, order: heap[0].symbols };
}

function finish(raw: RawCode): HuffmanCode {
  const lengths = new Uint8Array(256);
  const codes = new Uint32Array(256);
  for (const s of raw.order) {
    if (s === EOF) continue;
    lengths[s] = raw.lengths.get(s)!;
    codes[s] = raw.codes.get(s)!;
  }
  return {
    lengths,
    codes,
    eofLength: raw.lengths.get(EOF)!,
    eofCode: raw.codes.get(EOF)!,
    order: raw.order.filter((s) => s !== EOF),
  };
}

const maxLength = (raw: RawCode): number => Math.max(...raw.lengths.values());

/**
 * Build the DF11 code for an exponent histogram (index = exponent byte).
 *
 * Matches the official encoder's Huffman code symbol for symbol. When the plain Huffman code is too deep
 * (> 32 bits) or needs more than 16 continuation LUT rows, the k rarest exponents are given frequency 1
 * for k = 2, 3, … until it fits — the official length-limiting rule, with ties broken by exponent value
 * and the row limit (which the official code does not check) enforced too.
 */
export function buildHuffmanCode(histogram: ArrayLike<number>): HuffmanCode {
  const freqs = new Map<number, number>();
  for (let e = 0; e < histogram.length; e++) if (histogram[e] > 0) freqs.set(e, histogram[e]);
  if (freqs.size === 0) throw new CodeConstructionError("cannot build a code for an empty histogram");

  let raw = buildTree(freqs);
  const fits = (r: RawCode) =>
    maxLength(r) <= MAX_CODE_LENGTH && countContinuationRows(finish(r)) <= MAX_CONTINUATION_ROWS;
  if (fits(raw)) return finish(raw);

  const rarestFirst = [...freqs.keys()].sort((a, b) => freqs.get(a)! - freqs.get(b)! || a - b);
  for (let k = 2; k <= rarestFirst.length; k++) {
    const flattened = new Map(freqs);
    for (const e of rarestFirst.slice(0, k)) flattened.set(e, 1);
    raw = buildTree(flattened);
    if (fits(raw)) return finish(raw);
  }
  throw new CodeConstructionError(
    `no code within ${MAX_CODE_LENGTH} bits and ${MAX_CONTINUATION_ROWS} continuation LUT rows exists for this histogram`,
  );
}

/** Total coded bits of a histogram under a code (the padding to a whole byte not included). */
export function codedBits(code: HuffmanCode, histogram: ArrayLike<number>): number {
  let bits = 0;
  for (let e = 0; e < 256; e++) if (histogram[e] > 0) bits += histogram[e] * code.lengths[e];
  return bits;
}
