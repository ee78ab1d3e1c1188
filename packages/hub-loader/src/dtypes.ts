/** safetensors dtypes and their element sizes in bytes. */
export const DTYPE_SIZES = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
} as const;

export type DType = keyof typeof DTYPE_SIZES;

/** Order of the reference implementation's dtype enum; files list larger ranks first. */
const DTYPE_RANK: Record<DType, number> = Object.fromEntries(
  Object.keys(DTYPE_SIZES).map((d, i) => [d, i]),
) as Record<DType, number>;

export const isDType = (d: unknown): d is DType => typeof d === "string" && d in DTYPE_SIZES;

/**
 * The reference writer's tensor order (higher dtype rank first, then by name), which makes our files
 * byte-identical to the ones Python's `safetensors` writes.
 */
export const compareForLayout = (a: { name: string; dtype: DType }, b: { name: string; dtype: DType }): number =>
  DTYPE_RANK[b.dtype] - DTYPE_RANK[a.dtype] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** The float32 value of an IEEE half-precision bit pattern (exact: every F16 value is an F32 value). */
export function float16ToFloat32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}
