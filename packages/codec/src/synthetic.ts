import { bf16ToFloat32, float32ToBF16 } from "./bf16.js";

/** Small, fast, seedable PRNG (mulberry32) so generated weights are reproducible everywhere. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Values generated per pass: even (pairs never straddle two passes), and small enough to stay in cache. */
const CHUNK = 1 << 14;

/**
 * BF16 weights drawn like a trained LLM's: normal with standard deviation `std`, plus a small share of
 * heavier-tailed outliers. Their exponents carry ≈2.6 bits of entropy, like real checkpoints. Written into
 * `out` when given (no other array as large is made: float32 values pass through a small chunk).
 */
export function syntheticWeights(count: number, seed = 1, std = 0.02, out: Uint16Array = new Uint16Array(count)): Uint16Array {
  if (out.length < count) throw new RangeError(`syntheticWeights: out holds ${out.length} elements, ${count} asked`);
  const rand = mulberry32(seed);
  const values = new Float32Array(Math.min(count + (count & 1), CHUNK));
  for (let base = 0; base < count; base += CHUNK) {
    const n = Math.min(CHUNK, count - base);
    for (let i = 0; i < n; i += 2) {
      // Box–Muller: two normals per pair of uniforms.
      const u = Math.max(rand(), 1e-12);
      const r = Math.sqrt(-2 * Math.log(u)) * std;
      const th = 2 * Math.PI * rand();
      const outlier = rand() < 0.001 ? 8 : 1;
      values[i] = r * Math.cos(th) * outlier;
      values[i + 1] = r * Math.sin(th);
    }
    float32ToBF16(values.subarray(0, n), out.subarray(base, base + n));
  }
  return out;
}

/**
 * BF16 norm weights drawn around 1 (1 + normal(0, `std`), as a trained model's RMSNorm scales are).
 * Deterministic for a seed.
 */
export function syntheticNormWeights(count: number, seed = 1, std = 0.05): Uint16Array {
  const values = bf16ToFloat32(syntheticWeights(count, seed, std));
  for (let i = 0; i < count; i++) values[i] = 1 + values[i];
  return float32ToBF16(values);
}
