/**
 * BF16 bit layout: s eeeeeeee mmmmmmm. DFloat11 stores the exponent byte Huffman-coded and the
 * sign+mantissa as one raw byte: (sign << 7) | mantissa.
 */

/** Exponent byte of a BF16 bit pattern. */
export const exponentOf = (bits: number): number => (bits >>> 7) & 0xff;

/** Sign+mantissa byte of a BF16 bit pattern. */
export const signMantissaOf = (bits: number): number => ((bits >>> 8) & 0x80) | (bits & 0x7f);

/** Rebuild the BF16 bit pattern from its exponent and sign+mantissa bytes. */
export const mergeBF16 = (exponent: number, signMantissa: number): number =>
  ((signMantissa & 0x80) << 8) | (exponent << 7) | (signMantissa & 0x7f);

/** Split BF16 bit patterns into exponent bytes and sign+mantissa bytes. */
export function splitBF16(bits: Uint16Array): { exponents: Uint8Array; signMantissa: Uint8Array } {
  const n = bits.length;
  const exponents = new Uint8Array(n);
  const signMantissa = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const b = bits[i];
    exponents[i] = (b >>> 7) & 0xff;
    signMantissa[i] = ((b >>> 8) & 0x80) | (b & 0x7f);
  }
  return { exponents, signMantissa };
}

/** Inverse of {@link splitBF16}; writes into `out` when given. */
export function joinBF16(
  exponents: Uint8Array,
  signMantissa: Uint8Array,
  out: Uint16Array = new Uint16Array(exponents.length),
): Uint16Array {
  for (let i = 0; i < exponents.length; i++) {
    const s = signMantissa[i];
    out[i] = ((s & 0x80) << 8) | (exponents[i] << 7) | (s & 0x7f);
  }
  return out;
}

/** BF16 bits → float32 value (exact). */
export function bf16ToFloat32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const u32 = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) u32[i] = bits[i] << 16;
  return out;
}

/** float32 → BF16 bits, rounding to nearest even (as torch does); NaN stays NaN. Writes into `out` when given. */
export function float32ToBF16(values: Float32Array, out: Uint16Array = new Uint16Array(values.length)): Uint16Array {
  const u32 = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < values.length; i++) {
    const x = u32[i];
    if ((x & 0x7fffffff) > 0x7f800000) {
      out[i] = (x >>> 16) | 0x40;
      continue;
    }
    out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return out;
}
