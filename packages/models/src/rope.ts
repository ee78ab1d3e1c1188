import type { RopeSettings } from "./config.js";

/**
 * Inverse frequencies of rotary embeddings over `rotaryDim` dims, as transformers computes them
 * (float32), including linear and llama3 frequency scaling.
 */
export function ropeInverseFrequencies(rope: RopeSettings, rotaryDim: number): Float32Array {
  const half = rotaryDim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.fround(rope.theta ** Math.fround((2 * i) / rotaryDim));
  if (rope.type === "linear") {
    for (let i = 0; i < half; i++) inv[i] = inv[i] / rope.factor!;
  } else if (rope.type === "llama3") {
    const factor = rope.factor!;
    const low = rope.lowFreqFactor!;
    const high = rope.highFreqFactor!;
    const oldContext = rope.originalMaxPositionEmbeddings!;
    const lowWavelen = oldContext / low;
    const highWavelen = oldContext / high;
    for (let i = 0; i < half; i++) {
      const wavelen = (2 * Math.PI) / inv[i];
      if (wavelen > lowWavelen) inv[i] = inv[i] / factor;
      else if (wavelen >= highWavelen) {
        const smooth = (oldContext / wavelen - low) / (high - low);
        inv[i] = (1 - smooth) * (inv[i] / factor) + smooth * inv[i];
      }
    }
  }
  return inv;
}

/** cos/sin tables for positions, laid out [position][half]. */
export interface RopeTable {
  readonly rotaryDim: number;
  readonly inverseFrequencies: Float32Array;
}

export function ropeTable(rope: RopeSettings, headDim: number): RopeTable {
  const rotaryDim = Math.floor((headDim * rope.partialRotaryFactor) / 2) * 2;
  return { rotaryDim, inverseFrequencies: ropeInverseFrequencies(rope, rotaryDim) };
}

/**
 * Rotate `heads` heads of `x` (row-major [rows, heads, headDim]) in place, row r at position
 * positions[r]: x·cos + rotate_half(x)·sin on the first rotaryDim dims (transformers' convention).
 */
export function applyRope(x: Float32Array, rows: number, heads: number, headDim: number, positions: Int32Array, table: RopeTable): void {
  const half = table.rotaryDim / 2;
  const cos = new Float32Array(half);
  const sin = new Float32Array(half);
  for (let r = 0; r < rows; r++) {
    const p = positions[r];
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(p * table.inverseFrequencies[i]);
      cos[i] = Math.cos(angle);
      sin[i] = Math.sin(angle);
    }
    for (let h = 0; h < heads; h++) {
      const base = (r * heads + h) * headDim;
      for (let i = 0; i < half; i++) {
        const a = x[base + i];
        const b = x[base + i + half];
        x[base + i] = a * cos[i] - b * sin[i];
        x[base + i + half] = b * cos[i] + a * sin[i];
      }
    }
  }
}
