/** Keys and values of past positions, per layer: [position, kvHeads, headDim] float32, growing on demand. */
export class KvCache {
  private keys: Float32Array[];
  private values: Float32Array[];
  private capacity: number;
  /** Positions filled. */
  length = 0;

  constructor(
    readonly layers: number,
    readonly kvHeads: number,
    readonly headDim: number,
    initialCapacity = 64,
  ) {
    this.capacity = initialCapacity;
    this.keys = Array.from({ length: layers }, () => new Float32Array(initialCapacity * kvHeads * headDim));
    this.values = Array.from({ length: layers }, () => new Float32Array(initialCapacity * kvHeads * headDim));
  }

  private ensure(positions: number): void {
    if (positions <= this.capacity) return;
    let cap = this.capacity;
    while (cap < positions) cap *= 2;
    const grow = (a: Float32Array) => {
      const b = new Float32Array(cap * this.kvHeads * this.headDim);
      b.set(a);
      return b;
    };
    this.keys = this.keys.map(grow);
    this.values = this.values.map(grow);
    this.capacity = cap;
  }

  /** Store rows of k and v ([rows, kvHeads, headDim]) for positions start…start+rows−1 of a layer. */
  write(layer: number, start: number, rows: number, k: Float32Array, v: Float32Array): void {
    this.ensure(start + rows);
    const stride = this.kvHeads * this.headDim;
    this.keys[layer].set(k.subarray(0, rows * stride), start * stride);
    this.values[layer].set(v.subarray(0, rows * stride), start * stride);
  }

  keysOf(layer: number): Float32Array {
    return this.keys[layer];
  }

  valuesOf(layer: number): Float32Array {
    return this.values[layer];
  }

  /** Bytes held. */
  get bytes(): number {
    return 2 * this.layers * this.capacity * this.kvHeads * this.headDim * 4;
  }

  reset(): void {
    this.length = 0;
  }
}
