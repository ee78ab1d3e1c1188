/**
 * CPU kernels of the forward pass, on Float32Array activations. Weights arrive as BF16 bit patterns
 * (Uint16Array) and are widened row by row, so a BF16 and a DF11 model run exactly the same arithmetic.
 * Dot products accumulate in double precision.
 */

const rowScratch = { f32: new Float32Array(0), u32: new Uint32Array(0) };

function widenRow(w: Uint16Array, offset: number, cols: number): Float32Array {
  if (rowScratch.f32.length < cols) {
    rowScratch.f32 = new Float32Array(cols);
    rowScratch.u32 = new Uint32Array(rowScratch.f32.buffer);
  }
  const u = rowScratch.u32;
  for (let i = 0; i < cols; i++) u[i] = w[offset + i] << 16;
  return rowScratch.f32;
}

/** float32 value of every BF16 bit pattern (256 KB): one load widens a weight inside the dot product. */
const BF16_TO_F32 = (() => {
  const t = new Float32Array(65536);
  const u = new Uint32Array(t.buffer);
  for (let i = 0; i < 65536; i++) u[i] = i << 16;
  return t;
})();

/** Where a linear layer writes: row r, output o goes to out[r · stride + offset + o]; added with `accumulate`. */
export interface LinearOutput {
  readonly out: Float32Array;
  readonly stride: number;
  readonly offset: number;
  readonly accumulate: boolean;
}

/**
 * out[r, o] (+)= Σ_i x[r, i] · W[o, i] (+ bias[o]) for a weight W of shape [outFeatures, inFeatures]
 * stored as BF16 bits from `wOffset`.
 */
export function linear(
  x: Float32Array,
  rows: number,
  inFeatures: number,
  w: Uint16Array,
  wOffset: number,
  outFeatures: number,
  bias: Float32Array | undefined,
  target: Float32Array | LinearOutput,
): void {
  const { out, stride, offset, accumulate } = target instanceof Float32Array ? { out: target, stride: outFeatures, offset: 0, accumulate: false } : target;
  const put = (index: number, value: number) => (accumulate ? (out[index] += value) : (out[index] = value));
  if (rows < 4) {
    // Few rows (decoding): widen weights through the table inside the dot products, four output rows
    // at a time so each activation load serves four weights.
    const t = BF16_TO_F32;
    for (let r = 0; r < rows; r++) {
      const xo = r * inFeatures;
      const oo = r * stride + offset;
      let o = 0;
      for (; o + 4 <= outFeatures; o += 4) {
        const a = wOffset + o * inFeatures;
        const b = a + inFeatures;
        const c = b + inFeatures;
        const d = c + inFeatures;
        let s0 = 0;
        let s1 = 0;
        let s2 = 0;
        let s3 = 0;
        for (let i = 0; i < inFeatures; i++) {
          const xi = x[xo + i];
          s0 += xi * t[w[a + i]];
          s1 += xi * t[w[b + i]];
          s2 += xi * t[w[c + i]];
          s3 += xi * t[w[d + i]];
        }
        put(oo + o, s0 + (bias ? bias[o] : 0));
        put(oo + o + 1, s1 + (bias ? bias[o + 1] : 0));
        put(oo + o + 2, s2 + (bias ? bias[o + 2] : 0));
        put(oo + o + 3, s3 + (bias ? bias[o + 3] : 0));
      }
      for (; o < outFeatures; o++) {
        const a = wOffset + o * inFeatures;
        let s0 = 0;
        for (let i = 0; i < inFeatures; i++) s0 += x[xo + i] * t[w[a + i]];
        put(oo + o, s0 + (bias ? bias[o] : 0));
      }
    }
    return;
  }
  // Many rows (prefill): widen each weight row once, and run it against four input rows at a time so
  // each widened weight load serves four products.
  for (let o = 0; o < outFeatures; o++) {
    const wr = widenRow(w, wOffset + o * inFeatures, inFeatures);
    const b = bias ? bias[o] : 0;
    let r = 0;
    for (; r + 4 <= rows; r += 4) {
      const x0 = r * inFeatures;
      const x1 = x0 + inFeatures;
      const x2 = x1 + inFeatures;
      const x3 = x2 + inFeatures;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let i = 0; i < inFeatures; i++) {
        const wi = wr[i];
        s0 += x[x0 + i] * wi;
        s1 += x[x1 + i] * wi;
        s2 += x[x2 + i] * wi;
        s3 += x[x3 + i] * wi;
      }
      put(r * stride + offset + o, s0 + b);
      put((r + 1) * stride + offset + o, s1 + b);
      put((r + 2) * stride + offset + o, s2 + b);
      put((r + 3) * stride + offset + o, s3 + b);
    }
    for (; r < rows; r++) {
      const xo = r * inFeatures;
      let s0 = 0;
      for (let i = 0; i < inFeatures; i++) s0 += x[xo + i] * wr[i];
      put(r * stride + offset + o, s0 + b);
    }
  }
}

/** RMSNorm over rows of `dim`: x / rms(x) · w, or · (1 + w) for gemma. In place when out === x. */
export function rmsNorm(x: Float32Array, rows: number, dim: number, weight: Float32Array, eps: number, unitOffset: boolean, out: Float32Array): void {
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[o + i] * x[o + i];
    const inv = 1 / Math.sqrt(Math.fround(ss / dim) + eps);
    for (let i = 0; i < dim; i++) {
      const normed = Math.fround(x[o + i] * inv);
      out[o + i] = normed * (unitOffset ? 1 + weight[i] : weight[i]);
    }
  }
}

export const silu = (v: number): number => v / (1 + Math.exp(-v));
export const geluTanh = (v: number): number => 0.5 * v * (1 + Math.tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));

/** In-place gate ← act(gate) · up. */
export function gatedActivation(gate: Float32Array, up: Float32Array, n: number, act: (v: number) => number): void {
  for (let i = 0; i < n; i++) gate[i] = Math.fround(act(gate[i])) * up[i];
}

/** a ← a + b */
export function addInPlace(a: Float32Array, b: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) a[i] += b[i];
}
