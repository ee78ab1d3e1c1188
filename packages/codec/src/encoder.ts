import { CodecError } from "./errors.js";
import {
  THREADS_PER_BLOCK,
  blockCount,
  packGaps,
  type DF11Module,
} from "./format.js";
import { exponentHistogram } from "./histogram.js";
import { buildHuffmanCode, codedBits, type HuffmanCode } from "./huffman.js";
import { buildLuts } from "./luts.js";

export interface EncodeOptions {
  /** Tensor names, parallel to `parts`, used in error messages. */
  readonly names?: readonly string[];
  /** Use this code instead of building one from the data's histogram (must cover every exponent). */
  readonly code?: HuffmanCode;
}

export interface EncodeResult {
  readonly module: DF11Module;
  /** Exponent histogram of the whole module. */
  readonly histogram: Float64Array;
  readonly code: HuffmanCode;
}

const IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Writer state after the codewords: the pending word and where the last window gap was recorded. */
interface WriterState {
  buf: number;
  free: number;
  wordIndex: number;
  lastGapWindow: number;
  lastGapElement: number;
}

/**
 * The hot loop: append every element's codeword to `words` (MSB-first 32-bit words), recording each
 * thread window's gap and each block's first element. Kept small and separate so V8 optimises it well.
 */
function writeCodewords(
  parts: readonly Uint16Array[],
  code: HuffmanCode,
  words: Uint32Array,
  gapValues: Uint8Array,
  outputPositions: Uint32Array,
): WriterState {
  const lengths = code.lengths;
  // Int32 view of the codewords: V8 keeps int32 loads in registers, uint32 ones may become doubles.
  const codes = new Int32Array(code.codes.buffer, code.codes.byteOffset, 256);
  const blockWords = 2 * THREADS_PER_BLOCK;
  let buf = 0; // pending bits, MSB-aligned
  let free = 32; // unused low bits of buf
  let wordIndex = 0;
  let element = 0;
  let lastGapWindow = -1;
  let lastGapElement = -1;
  for (const bits of parts) {
    const count = bits.length;
    for (let j = 0; j < count; j++, element++) {
      const e = (bits[j] >>> 7) & 0xff;
      const len = lengths[e];
      const c = codes[e];
      if (len < free) {
        free -= len;
        buf |= c << free;
      } else {
        const over = len - free;
        words[wordIndex++] = buf | (c >>> over);
        // over ≤ 31 here; `c << 32` would be a no-op in JS, hence the explicit zero.
        buf = over === 0 ? 0 : c << (32 - over);
        free = 32 - over;
        // The next code starts `over` bits into the new word. Codes are ≤ 32 bits, so when that word
        // opens a 64-bit thread window, it is the window's first code: record its gap (and, every 512
        // windows, the first element of the block). Checked once per word, not once per element.
        if ((wordIndex & 1) === 0) {
          gapValues[(lastGapWindow = wordIndex >>> 1)] = over;
          lastGapElement = element + 1;
          if (wordIndex % blockWords === 0) outputPositions[wordIndex / blockWords] = element + 1;
        }
      }
    }
  }
  return { buf, free, wordIndex, lastGapWindow, lastGapElement };
}

/** sign+mantissa bytes of all parts, two elements per 32-bit read where alignment allows. */
function splitSignMantissa(parts: readonly Uint16Array[], out: Uint8Array): void {
  let o = 0;
  for (const bits of parts) {
    let j = 0;
    const n = bits.length;
    if ((bits.byteOffset & 3) === 0 && (o & 1) === 0 && IS_LITTLE_ENDIAN) {
      const pairs = n >>> 1;
      const in32 = new Uint32Array(bits.buffer, bits.byteOffset, pairs);
      const out16 = new Uint16Array(out.buffer, out.byteOffset + o, pairs);
      for (let p = 0; p < pairs; p++) {
        const x = in32[p];
        // low element → low byte, high element → high byte
        out16[p] = ((x >>> 8) & 0x80) | (x & 0x7f) | ((x >>> 16) & 0x8000) | ((x >>> 8) & 0x7f00);
      }
      j = pairs * 2;
    }
    for (let i = o + j; j < n; j++, i++) {
      const x = bits[j];
      out[i] = ((x >>> 8) & 0x80) | (x & 0x7f);
    }
    o += n;
  }
}

/**
 * Compress BF16 weights (raw bit patterns) into one DF11 module. Several parts are concatenated in
 * order into one stream with one code, and `split_positions` records where they meet.
 *
 * The result is byte-identical to what the official `dfloat11` encoder writes for the same weights.
 */
export function encodeModule(parts: readonly Uint16Array[], options: EncodeOptions = {}): EncodeResult {
  const histogram = exponentHistogram(parts, options.names);
  const code = options.code ?? buildHuffmanCode(histogram);
  for (let e = 0; e < 256; e++) {
    if (histogram[e] > 0 && code.lengths[e] === 0) throw new CodecError(`the given code has no codeword for exponent ${e}`);
  }
  const n = parts.reduce((s, p) => s + p.length, 0);
  if (n === 0) throw new CodecError("cannot encode a module with no elements");
  if (n > 0xffffffff) throw new CodecError(`a module holds at most 2^32 − 1 elements, got ${n}`);

  const totalBits = codedBits(code, histogram);
  const nBytes = Math.ceil(totalBits / 8);
  const blocks = blockCount(nBytes);
  const words = new Uint32Array(Math.ceil(nBytes / 4) + 1);
  const signMantissa = new Uint8Array(n);
  const gapValues = new Uint8Array(blocks * THREADS_PER_BLOCK);
  // A block no code starts in (only possible at the very end) begins at n_elements.
  const outputPositions = new Uint32Array(blocks + 1).fill(n);
  outputPositions[0] = 0;

  splitSignMantissa(parts, signMantissa);
  const writer = writeCodewords(parts, code, words, gapValues, outputPositions);
  let { buf, free } = writer;
  const { wordIndex, lastGapWindow, lastGapElement } = writer;

  // A window opened only by the end of the data: the official encoder records it only when the
  // end-of-stream padding starts there (stream not byte-aligned); match it.
  if (lastGapElement === n && totalBits % 8 === 0 && lastGapWindow < gapValues.length) gapValues[lastGapWindow] = 0;

  const tail = totalBits % 8;
  if (tail !== 0) {
    // Pad the last byte with the leading bits of the end-of-stream codeword, as the official encoder does.
    const padBits = 8 - tail;
    const pad =
      code.eofLength >= padBits
        ? Math.floor(code.eofCode / 2 ** (code.eofLength - padBits))
        : code.eofCode * 2 ** (padBits - code.eofLength);
    free -= padBits; // a byte boundary is never further than `free` bits away
    buf |= pad << free;
  }
  words[wordIndex] = buf;
  if (IS_LITTLE_ENDIAN) {
    for (let i = 0; i <= wordIndex; i++) {
      const w = words[i];
      words[i] = ((w & 0xff) << 24) | ((w & 0xff00) << 8) | ((w >>> 8) & 0xff00) | (w >>> 24);
    }
  }
  const encodedExponent = new Uint8Array(words.buffer, 0, nBytes);
  outputPositions[blocks] = n;

  const splitPositions: number[] = [];
  let acc = 0;
  for (let p = 0; p < parts.length - 1; p++) splitPositions.push((acc += parts[p].length));

  return {
    module: {
      luts: buildLuts(code),
      encodedExponent,
      signMantissa,
      outputPositions,
      gaps: packGaps(gapValues),
      splitPositions,
    },
    histogram,
    code,
  };
}
