import { bf16ToFloat32 } from "@df11/codec";
import type { Backend, BackendMemory, BackendTensor, LinearWeight, PendingArgmax, StepPlan, StepRows, WeightsInfo } from "./backend.js";
import type { TextModelConfig } from "./config.js";
import { addInPlace, gatedActivation, geluTanh, linear, rmsNorm, silu } from "./cpu-ops.js";
import { ModelsError, WeightLayoutError } from "./errors.js";
import { KvCache } from "./kv-cache.js";
import { peakRssBytes } from "./memory.js";
import { applyRope, ropeTable, type RopeTable } from "./rope.js";
import { argmax } from "./sampling.js";
import type { WeightStore } from "./weight-store.js";

/** A CPU activation tensor: a view of `data` holding [rows, cols]. */
export interface CpuTensor extends BackendTensor {
  readonly data: Float32Array;
}

/**
 * The CPU backend: float32 activations, BF16 weights widened inside the dot products (double-precision
 * accumulation), a growing float32 KV cache per slot. Weights come from a {@link WeightStore}; BF16 and
 * DF11 stores feed the same arithmetic, so their logits are bit-identical.
 */
export class CpuBackend implements Backend<CpuTensor> {
  readonly device = "cpu";
  readonly maxRows = 1 << 30;
  readonly maxContext: number;
  readonly slots = Number.MAX_SAFE_INTEGER;
  private readonly storage = new Map<string, Float32Array>();
  private readonly caches = new Map<number, KvCache>();
  private readonly ropes: RopeTable[];
  private step: StepRows | undefined;
  /** The latest argmaxAsync result, while no other argmax followed it (setStepFromArgmax takes only that one). */
  private latestArgmax: PendingArgmax | undefined;
  private disposed = false;

  constructor(
    readonly config: TextModelConfig,
    readonly weights: WeightStore & WeightsInfo,
    /** Positions a sequence may hold (default: the model's max_position_embeddings). */
    maxContext = config.maxPositionEmbeddings,
  ) {
    this.maxContext = maxContext;
    this.ropes = config.rope.map((r) => ropeTable(r, config.headDim));
  }

  has(name: string): boolean {
    return this.weights.has(name);
  }

  tensor(name: string, rows: number, cols: number): CpuTensor {
    let data = this.storage.get(name);
    if (!data || data.length < rows * cols) this.storage.set(name, (data = new Float32Array(rows * cols)));
    return { data: data.subarray(0, rows * cols), rows, cols };
  }

  setStep(step: StepRows): void {
    if (this.disposed) throw new ModelsError("the model was disposed (its KV caches and activations are freed)");
    this.step = step;
  }

  private get current(): StepRows {
    if (!this.step) throw new Error("setStep() must come first");
    return this.step;
  }

  private vector(name: string, length: number): Float32Array {
    const v = this.weights.vector(name);
    if (!v) throw new WeightLayoutError(name, "missing from the checkpoint");
    if (v.length !== length) throw new WeightLayoutError(name, `has ${v.length} elements, the config needs ${length}`);
    return v;
  }

  embed(out: CpuTensor, scale: number): void {
    const H = out.cols;
    const { tokens } = this.current;
    for (let r = 0; r < out.rows; r++) {
      const row = bf16ToFloat32(this.weights.rows("model.embed_tokens.weight", H, tokens[r], 1));
      for (let i = 0; i < H; i++) out.data[r * H + i] = row[i] * scale;
    }
  }

  rmsNorm(x: CpuTensor, weight: string, out: CpuTensor): void {
    rmsNorm(x.data, x.rows, x.cols, this.vector(weight, x.cols), this.config.rmsNormEps, this.config.gemmaNorms, out.data);
  }

  rmsNormAdd(x: CpuTensor, weight: string, residual: CpuTensor): void {
    this.rmsNorm(x, weight, x);
    addInPlace(residual.data, x.data, x.rows * x.cols);
  }

  linear(x: CpuTensor, weights: readonly LinearWeight[], out: CpuTensor, accumulate = false): void {
    let offset = 0;
    for (const w of weights) {
      const m = this.weights.matrix(w.name, w.rows, x.cols);
      const bias = w.bias ? this.vector(w.bias, w.rows) : undefined;
      linear(x.data, x.rows, x.cols, m.data, m.offset, w.rows, bias, { out: out.data, stride: out.cols, offset, accumulate });
      offset += w.rows;
    }
  }

  private cacheOf(slot: number): KvCache {
    let cache = this.caches.get(slot);
    if (!cache) this.caches.set(slot, (cache = new KvCache(this.config.numLayers, this.config.numKvHeads, this.config.headDim)));
    return cache;
  }

  attention(layer: number, qkv: CpuTensor, out: CpuTensor): void {
    const c = this.config;
    const rows = qkv.rows;
    const hd = c.headDim;
    const qDim = c.numHeads * hd;
    const kvDim = c.numKvHeads * hd;
    const q = this.tensor("cpu.q", rows, qDim).data;
    const k = this.tensor("cpu.k", rows, kvDim).data;
    const v = this.tensor("cpu.v", rows, kvDim).data;
    for (let r = 0; r < rows; r++) {
      const o = r * (qDim + 2 * kvDim);
      q.set(qkv.data.subarray(o, o + qDim), r * qDim);
      k.set(qkv.data.subarray(o + qDim, o + qDim + kvDim), r * kvDim);
      v.set(qkv.data.subarray(o + qDim + kvDim, o + qDim + 2 * kvDim), r * kvDim);
    }
    const p = `model.layers.${layer}`;
    if (c.qkNorm) {
      rmsNorm(q, rows * c.numHeads, hd, this.vector(`${p}.self_attn.q_norm.weight`, hd), c.rmsNormEps, c.gemmaNorms, q);
      rmsNorm(k, rows * c.numKvHeads, hd, this.vector(`${p}.self_attn.k_norm.weight`, hd), c.rmsNormEps, c.gemmaNorms, k);
    }
    const { positions, slots } = this.current;
    applyRope(q, rows, c.numHeads, hd, positions, this.ropes[layer]);
    applyRope(k, rows, c.numKvHeads, hd, positions, this.ropes[layer]);
    for (let r = 0; r < rows; r++) this.cacheOf(slots[r]).write(layer, positions[r], 1, k.subarray(r * kvDim), v.subarray(r * kvDim));
    for (let r = 0; r < rows; r++) this.attendRow(layer, r, positions[r], this.cacheOf(slots[r]), q, out.data);
  }

  /** Causal attention of row r's query heads (position `pos`) over its slot's cache: GQA, window, softcap. */
  private attendRow(layer: number, r: number, pos: number, cache: KvCache, q: Float32Array, out: Float32Array): void {
    const c = this.config;
    const hd = c.headDim;
    const groups = c.numHeads / c.numKvHeads;
    const keys = cache.keysOf(layer);
    const values = cache.valuesOf(layer);
    const window = c.slidingWindow[layer];
    const cap = c.attnLogitSoftcap;
    const kvStride = c.numKvHeads * hd;
    const scores = new Float64Array(pos + 1);
    const lo = window ? Math.max(0, pos - window + 1) : 0;
    for (let h = 0; h < c.numHeads; h++) {
      const qo = (r * c.numHeads + h) * hd;
      const kvh = Math.floor(h / groups);
      let max = -Infinity;
      for (let j = lo; j <= pos; j++) {
        const ko = j * kvStride + kvh * hd;
        let dot = 0;
        for (let i = 0; i < hd; i++) dot += q[qo + i] * keys[ko + i];
        let sc = Math.fround(dot) * c.attentionScale;
        if (cap) sc = Math.tanh(sc / cap) * cap;
        scores[j] = sc;
        if (sc > max) max = sc;
      }
      let sum = 0;
      for (let j = lo; j <= pos; j++) sum += scores[j] = Math.exp(scores[j] - max);
      for (let i = 0; i < hd; i++) {
        let acc = 0;
        for (let j = lo; j <= pos; j++) acc += (scores[j] / sum) * values[j * kvStride + kvh * hd + i];
        out[qo + i] = acc;
      }
    }
  }

  gatedActivation(gu: CpuTensor, out: CpuTensor): void {
    const I = out.cols;
    for (let r = 0; r < gu.rows; r++) out.data.set(gu.data.subarray(r * 2 * I, r * 2 * I + I), r * I);
    const up = this.tensor("cpu.up", gu.rows, I).data;
    for (let r = 0; r < gu.rows; r++) up.set(gu.data.subarray(r * 2 * I + I, (r + 1) * 2 * I), r * I);
    gatedActivation(out.data, up, gu.rows * I, this.config.activation === "silu" ? silu : geluTanh);
  }

  add(a: CpuTensor, b: CpuTensor): void {
    addInPlace(a.data, b.data, a.rows * a.cols);
  }

  gatherOutputRows(x: CpuTensor, out: CpuTensor): void {
    const { outputRows } = this.current;
    for (let i = 0; i < out.rows; i++) out.data.set(x.data.subarray(outputRows[i] * x.cols, (outputRows[i] + 1) * x.cols), i * x.cols);
  }

  softcap(x: CpuTensor, cap: number): void {
    for (let i = 0; i < x.data.length; i++) x.data[i] = Math.tanh(x.data[i] / cap) * cap;
  }

  read(x: CpuTensor): Float32Array {
    return x.data.slice();
  }

  argmax(x: CpuTensor): Int32Array {
    this.latestArgmax = undefined;
    return Int32Array.from({ length: x.rows }, (_, r) => argmax(x.data.subarray(r * x.cols, (r + 1) * x.cols)));
  }

  /** `argmax`, handed out as pending (the CPU has it at once); the next setStepFromArgmax may take it. */
  argmaxAsync(x: CpuTensor): PendingArgmax {
    const indices = this.argmax(x);
    const pending: PendingArgmax = { rows: x.rows, read: () => indices };
    this.latestArgmax = pending;
    return pending;
  }

  setStepFromArgmax(step: StepPlan, previous: PendingArgmax): boolean {
    if (previous !== this.latestArgmax || previous.rows !== step.positions.length) return false;
    this.setStep({ ...step, tokens: Int32Array.from(previous.read()) });
    return true;
  }

  replayable<R>(_key: string, fn: () => R): R {
    return fn();
  }

  /** Drop a slot's cached positions. */
  releaseSlot(slot: number): void {
    this.caches.delete(slot);
  }

  /** The process's resident set: weights, KV caches and activations are host memory here. */
  memory(): BackendMemory {
    return { measure: "process-rss", inUseBytes: process.memoryUsage.rss(), peakBytes: peakRssBytes() };
  }

  dispose(): void {
    this.disposed = true;
    this.caches.clear();
    this.storage.clear();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
