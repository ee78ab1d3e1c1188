/**
 * Fast normal draws for the benchmark models: Marsaglia & Tsang's ziggurat (2000; 128 layers) over a
 * xorshift128 generator. About 5× faster than Box–Muller in JS, which matters when 70 billion weights are
 * drawn: it keeps drawing well below the cost of encoding them.
 */
import { float32ToBF16 } from "@df11/codec";

const LAYERS = 128;
const M1 = 2147483648; // 2^31
const R = 3.442619855899; // start of the tail
const kn = new Float64Array(LAYERS);
const wn = new Float64Array(LAYERS);
const fn = new Float64Array(LAYERS);
{
  const vn = 9.91256303526217e-3; // area of each layer
  let dn = R;
  let tn = dn;
  const q = vn / Math.exp(-0.5 * dn * dn);
  kn[0] = (dn / q) * M1;
  kn[1] = 0;
  wn[0] = q / M1;
  wn[LAYERS - 1] = dn / M1;
  fn[0] = 1;
  fn[LAYERS - 1] = Math.exp(-0.5 * dn * dn);
  for (let i = LAYERS - 2; i >= 1; i--) {
    dn = Math.sqrt(-2 * Math.log(vn / dn + Math.exp(-0.5 * dn * dn)));
    kn[i + 1] = (dn / tn) * M1;
    tn = dn;
    fn[i] = Math.exp(-0.5 * dn * dn);
    wn[i] = dn / M1;
  }
}

/** xorshift128 state seeded through splitmix32 (never all zero). */
function seeded(seed: number): Uint32Array {
  const s = new Uint32Array(4);
  let z = seed >>> 0;
  for (let i = 0; i < 4; i++) {
    z = (z + 0x9e3779b9) >>> 0;
    let t = z;
    t = Math.imul(t ^ (t >>> 16), 0x85ebca6b);
    t = Math.imul(t ^ (t >>> 13), 0xc2b2ae35);
    s[i] = (t ^ (t >>> 16)) >>> 0;
  }
  if ((s[0] | s[1] | s[2] | s[3]) === 0) s[0] = 1;
  return s;
}

/** Values per pass through a small float32 buffer (cache-sized). */
const CHUNK = 1 << 14;

/**
 * Fill `out` with BF16 bits of normal(0, `std`) draws, a fraction `outlierRate` of them (at positions
 * drawn independently) scaled by `outlierScale` — tools/make_bench_model.py's statistics
 * (`randn · std`, `rand < 0.0005` → ×8). Deterministic for a seed.
 */
export function drawWeights(out: Uint16Array, seed: number, std: number, outlierRate = 0.0005, outlierScale = 8): Uint16Array {
  const s = seeded(seed);
  let x = s[0] | 0;
  let y = s[1] | 0;
  let z = s[2] | 0;
  let w = s[3] | 0;
  const next = () => {
    const t = x ^ (x << 11);
    x = y;
    y = z;
    z = w;
    w = w ^ (w >>> 19) ^ (t ^ (t >>> 8));
    return w;
  };
  const uniform = () => ((next() >>> 0) + 0.5) / 4294967296;
  // Positions of outliers: geometric gaps, one uniform per outlier instead of one per weight.
  const logKeep = Math.log1p(-outlierRate);
  const gap = () => (outlierRate > 0 ? Math.floor(Math.log(uniform()) / logKeep) : Infinity);
  let nextOutlier = gap();

  const slow = (hz: number, iz: number): number => {
    for (;;) {
      const v = hz * wn[iz];
      if (iz === 0) {
        let a: number;
        let b: number;
        do {
          a = -Math.log(uniform()) / R;
          b = -Math.log(uniform());
        } while (b + b < a * a);
        return hz > 0 ? R + a : -R - a;
      }
      if (fn[iz] + uniform() * (fn[iz - 1] - fn[iz]) < Math.exp(-0.5 * v * v)) return v;
      hz = next();
      iz = hz & (LAYERS - 1);
      if (Math.abs(hz) < kn[iz]) return hz * wn[iz];
    }
  };

  const values = new Float32Array(Math.min(out.length, CHUNK));
  for (let base = 0; base < out.length; base += CHUNK) {
    const n = Math.min(CHUNK, out.length - base);
    for (let i = 0; i < n; i++) {
      const hz = next();
      const iz = hz & (LAYERS - 1);
      values[i] = (Math.abs(hz) < kn[iz] ? hz * wn[iz] : slow(hz, iz)) * std;
    }
    while (nextOutlier < base + n) {
      values[nextOutlier - base] *= outlierScale;
      nextOutlier += 1 + gap();
    }
    float32ToBF16(values.subarray(0, n), out.subarray(base, base + n));
  }
  return out;
}

/** BF16 bits of 1 + normal(0, `std`): RMSNorm scales as a trained model has them. */
export function drawNormWeights(out: Uint16Array, seed: number, std = 0.05): Uint16Array {
  drawWeights(out, seed, std, 0);
  const v = new Float32Array(out.length);
  const u = new Uint32Array(v.buffer);
  for (let i = 0; i < out.length; i++) u[i] = out[i] << 16;
  for (let i = 0; i < out.length; i++) v[i] += 1;
  return float32ToBF16(v, out);
}
