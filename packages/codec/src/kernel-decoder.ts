import { InvalidModuleError } from "./errors.js";
import { lookupExponent } from "./decode-table.js";
import { codeLengthsOf } from "./luts.js";
import {
  BITS_PER_THREAD,
  BYTES_PER_THREAD,
  THREADS_PER_BLOCK,
  blockCount,
  blockStart,
  readGap,
  validateModule,
  type DF11Module,
} from "./format.js";

/** 32 bits of the stream starting at `bit`, bytes past the end reading as zero. */
function windowAt(bytes: Uint8Array, bit: number): number {
  const b = Math.floor(bit / 8);
  const sh = bit - b * 8;
  const at = (i: number) => (i < bytes.length ? bytes[i] : 0);
  const hi = ((at(b) << 24) | (at(b + 1) << 16) | (at(b + 2) << 8) | at(b + 3)) >>> 0;
  return ((hi << sh) | (at(b + 4) >>> (8 - sh))) >>> 0;
}

/**
 * Decode a module exactly the way the GPU kernel's threads and blocks do it, and check that the
 * module's geometry is self-consistent:
 * - thread t starts at bit 64·t + gaps[t] and decodes every code whose first bit lies in its 64-bit
 *   window (it sees 12 bytes: enough for a 32-bit code starting at bit 63);
 * - block k writes its codes from output_positions[k], in thread order, each thread's in stream order.
 *
 * Throws {@link InvalidModuleError} when a block's threads decode a different number of codes than its
 * output_positions range holds — the proof that a file decodes correctly on the official kernel.
 */
export function decodeLikeKernel(m: DF11Module): Uint16Array {
  validateModule(m);
  const n = m.signMantissa.length;
  const bytes = m.encodedExponent;
  const lengths = codeLengthsOf(m.luts);
  const blocks = blockCount(bytes.length);
  const out = new Uint16Array(n);
  const written = new Uint8Array(n);
  const codes = new Uint8Array(THREADS_PER_BLOCK * BITS_PER_THREAD);
  const counts = new Uint32Array(THREADS_PER_BLOCK);

  for (let k = 0; k < blocks; k++) {
    let total = 0;
    for (let t = 0; t < THREADS_PER_BLOCK; t++) {
      const thread = k * THREADS_PER_BLOCK + t;
      const windowStart = thread * BYTES_PER_THREAD * 8;
      let bit = windowStart + readGap(m.gaps, thread);
      let c = 0;
      while (bit < windowStart + BITS_PER_THREAD) {
        const e = lookupExponent(m.luts, windowAt(bytes, bit));
        if (lengths[e] === 0) throw new InvalidModuleError("luts", `exponent ${e} has code length 0`);
        codes[t * BITS_PER_THREAD + c++] = e;
        bit += lengths[e];
      }
      counts[t] = c;
      total += c;
    }
    const first = blockStart(m, k);
    const limit = Math.min(blockStart(m, k + 1), n);
    const expected = limit - first;
    // Past the data, threads decode padding; only the last block may have more codes than elements.
    if (k < blocks - 1 ? total !== expected : total < expected) {
      throw new InvalidModuleError(
        "gaps",
        `block ${k}: threads decode ${total} codes but output_positions give it ${expected} elements`,
      );
    }
    let position = first;
    for (let t = 0; t < THREADS_PER_BLOCK; t++) {
      for (let r = 0; r < counts[t] && position < limit; r++, position++) {
        const e = codes[t * BITS_PER_THREAD + r];
        const s = m.signMantissa[position];
        out[position] = ((s & 0x80) << 8) | (e << 7) | (s & 0x7f);
        written[position] = 1;
      }
    }
  }
  const hole = written.indexOf(0);
  if (hole >= 0) throw new InvalidModuleError("output_positions", `element ${hole} is written by no thread`);
  return out;
}
