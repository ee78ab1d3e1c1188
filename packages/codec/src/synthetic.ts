import { float32ToBF16 } from "./bf16.js";

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

/**
 * BF16 weights drawn like a trained LLM's: normal with standard deviation `std`, plus a small share of
 * heavier-tailed outliers. Their exponents carry ≈2.6 bits of entropy, like real checkpoints.
 */
export function syntheticWeights(count: number, seed = 1, std = 0.02): Uint16Array {
  const rand = mulberry32(seed);
  const values = new Float32Array(count);
  for (let i = 0; i < count; i += 2) {
    // Box–Muller: two normals per pair of uniforms.
    const u = Math.max(rand(), 1e-12);
    const r = Math.sqrt(-2 * Math.log(u)) * std;
    const th = 2 * Math.PI * rand();
    const outlier = rand() < 0.001 ? 8 : 1;
    values[i] = r * Math.cos(th) * outlier;
    if (i + 1 < count) values[i + 1] = r * Math.sin(th);
  }
  return float32ToBF16(values);
}
