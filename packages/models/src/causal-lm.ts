import type { TextModelConfig } from "./config.js";
import { bf16ToFloat32 } from "@df11/codec";
import { addInPlace, gatedActivation, geluTanh, linear, rmsNorm, silu } from "./cpu-ops.js";
import { KvCache } from "./kv-cache.js";
import { applyRope, ropeTable, type RopeTable } from "./rope.js";
import type { MatrixView, WeightStore } from "./weight-store.js";
import { WeightLayoutError } from "./errors.js";

export interface ForwardOptions {
  /** Return logits for every input position ([rows, vocab]) instead of only the last one. */
  readonly allLogits?: boolean;
  /** Called with the residual stream after each layer ([rows, hidden]; a view, copy to keep it). */
  readonly onLayerOutput?: (layer: number, hidden: Float32Array) => void;
}

/** Reusable activation buffers, grown to the largest batch of rows seen. */
class Scratch {
  rows = 0;
  h = new Float32Array(0);
  x = new Float32Array(0);
  q = new Float32Array(0);
  k = new Float32Array(0);
  v = new Float32Array(0);
  attn = new Float32Array(0);
  o = new Float32Array(0);
  gate = new Float32Array(0);
  up = new Float32Array(0);
  qkv = new Float32Array(0);
  ensure(rows: number, c: TextModelConfig): void {
    if (rows <= this.rows) return;
    const qDim = c.numHeads * c.headDim;
    const kvDim = c.numKvHeads * c.headDim;
    this.rows = rows;
    this.h = new Float32Array(rows * c.hiddenSize);
    this.x = new Float32Array(rows * c.hiddenSize);
    this.q = new Float32Array(rows * qDim);
    this.k = new Float32Array(rows * kvDim);
    this.v = new Float32Array(rows * kvDim);
    this.attn = new Float32Array(rows * qDim);
    this.o = new Float32Array(rows * c.hiddenSize);
    this.gate = new Float32Array(rows * c.intermediateSize * (c.fusedProjections ? 2 : 1));
    this.up = new Float32Array(rows * c.intermediateSize);
    this.qkv = c.fusedProjections ? new Float32Array(rows * (qDim + 2 * kvDim)) : new Float32Array(0);
  }
}

/**
 * A decoder-only transformer (llama, mistral, qwen2/3, gemma2/3, phi3) running on the CPU, with a
 * KV cache. Weights come from a {@link WeightStore}: BF16 resident, or DF11 decoded just before use —
 * the arithmetic is identical, so both give bit-identical logits.
 */
export class CausalLM implements Disposable {
  readonly cache: KvCache;
  private readonly scratch = new Scratch();
  private readonly ropes: RopeTable[];

  constructor(
    readonly config: TextModelConfig,
    readonly weights: WeightStore,
  ) {
    this.cache = new KvCache(config.numLayers, config.numKvHeads, config.headDim);
    this.ropes = config.rope.map((r) => ropeTable(r, config.headDim));
    this.checkWeights();
  }

  /** Fail early, naming the tensor, when the checkpoint does not fit the config. */
  private checkWeights(): void {
    const c = this.config;
    const need = ["model.embed_tokens.weight", "model.norm.weight"];
    if (!c.tieWordEmbeddings) need.push("lm_head.weight");
    for (let l = 0; l < c.numLayers; l++) {
      const p = `model.layers.${l}`;
      need.push(`${p}.input_layernorm.weight`, `${p}.post_attention_layernorm.weight`, `${p}.self_attn.o_proj.weight`, `${p}.mlp.down_proj.weight`);
      need.push(...(c.fusedProjections ? [`${p}.self_attn.qkv_proj.weight`, `${p}.mlp.gate_up_proj.weight`] : [`${p}.self_attn.q_proj.weight`, `${p}.self_attn.k_proj.weight`, `${p}.self_attn.v_proj.weight`, `${p}.mlp.gate_proj.weight`, `${p}.mlp.up_proj.weight`]));
      if (c.qkNorm) need.push(`${p}.self_attn.q_norm.weight`, `${p}.self_attn.k_norm.weight`);
      if (c.sandwichNorms) need.push(`${p}.pre_feedforward_layernorm.weight`, `${p}.post_feedforward_layernorm.weight`);
      if (c.attentionBias) need.push(`${p}.self_attn.q_proj.bias`, `${p}.self_attn.k_proj.bias`, `${p}.self_attn.v_proj.bias`);
    }
    const missing = need.find((n) => !this.weights.has(n));
    if (missing) throw new WeightLayoutError(missing, "missing from the checkpoint (the config.json requires it)");
  }

  private vector(name: string, length: number): Float32Array {
    const v = this.weights.vector(name);
    if (!v) throw new WeightLayoutError(name, "missing from the checkpoint");
    if (v.length !== length) throw new WeightLayoutError(name, `has ${v.length} elements, the config needs ${length}`);
    return v;
  }

  private proj(x: Float32Array, rows: number, w: MatrixView, bias: Float32Array | undefined, out: Float32Array): void {
    linear(x, rows, w.cols, w.data, w.offset, w.rows, bias, out);
  }

  /**
   * Run `ids` through the model at positions cache.length…, append them to the KV cache and return the
   * logits of the last position (or of all, with `allLogits`).
   */
  forward(ids: ArrayLike<number>, options: ForwardOptions = {}): Float32Array {
    const c = this.config;
    const rows = ids.length;
    if (rows === 0) throw new RangeError("forward() needs at least one token");
    for (let i = 0; i < rows; i++) {
      if (!Number.isInteger(ids[i]) || ids[i] < 0 || ids[i] >= c.vocabSize) throw new RangeError(`token id ${ids[i]} is outside the vocabulary (0…${c.vocabSize - 1})`);
    }
    const s = this.scratch;
    s.ensure(rows, c);
    const start = this.cache.length;
    const positions = Int32Array.from({ length: rows }, (_, i) => start + i);
    const H = c.hiddenSize;
    const qDim = c.numHeads * c.headDim;
    const kvDim = c.numKvHeads * c.headDim;
    const I = c.intermediateSize;
    const eps = c.rmsNormEps;
    const unit = c.gemmaNorms;

    // Embedding (gemma scales it by √hidden, rounded to the weights' precision as transformers does).
    const embedScale = c.gemmaNorms ? Math.fround(Math.sqrt(H)) : 1;
    for (let r = 0; r < rows; r++) {
      const row = bf16ToFloat32(this.weights.rows("model.embed_tokens.weight", H, ids[r], 1));
      for (let i = 0; i < H; i++) s.h[r * H + i] = row[i] * embedScale;
    }

    for (let l = 0; l < c.numLayers; l++) {
      const p = `model.layers.${l}`;
      rmsNorm(s.h, rows, H, this.vector(`${p}.input_layernorm.weight`, H), eps, unit, s.x);

      if (c.fusedProjections) {
        this.proj(s.x, rows, this.weights.matrix(`${p}.self_attn.qkv_proj.weight`, qDim + 2 * kvDim, H), undefined, s.qkv);
        for (let r = 0; r < rows; r++) {
          const o = r * (qDim + 2 * kvDim);
          s.q.set(s.qkv.subarray(o, o + qDim), r * qDim);
          s.k.set(s.qkv.subarray(o + qDim, o + qDim + kvDim), r * kvDim);
          s.v.set(s.qkv.subarray(o + qDim + kvDim, o + qDim + 2 * kvDim), r * kvDim);
        }
      } else {
        const bias = (n: string, len: number) => (c.attentionBias ? this.vector(`${p}.self_attn.${n}.bias`, len) : undefined);
        this.proj(s.x, rows, this.weights.matrix(`${p}.self_attn.q_proj.weight`, qDim, H), bias("q_proj", qDim), s.q);
        this.proj(s.x, rows, this.weights.matrix(`${p}.self_attn.k_proj.weight`, kvDim, H), bias("k_proj", kvDim), s.k);
        this.proj(s.x, rows, this.weights.matrix(`${p}.self_attn.v_proj.weight`, kvDim, H), bias("v_proj", kvDim), s.v);
      }
      if (c.qkNorm) {
        rmsNorm(s.q, rows * c.numHeads, c.headDim, this.vector(`${p}.self_attn.q_norm.weight`, c.headDim), eps, unit, s.q);
        rmsNorm(s.k, rows * c.numKvHeads, c.headDim, this.vector(`${p}.self_attn.k_norm.weight`, c.headDim), eps, unit, s.k);
      }
      applyRope(s.q, rows, c.numHeads, c.headDim, positions, this.ropes[l]);
      applyRope(s.k, rows, c.numKvHeads, c.headDim, positions, this.ropes[l]);
      this.cache.write(l, start, rows, s.k, s.v);
      this.attention(l, rows, start, s.q, s.attn);
      this.proj(s.attn, rows, this.weights.matrix(`${p}.self_attn.o_proj.weight`, H, qDim), c.outputProjectionBias ? this.vector(`${p}.self_attn.o_proj.bias`, H) : undefined, s.o);
      if (c.sandwichNorms) rmsNorm(s.o, rows, H, this.vector(`${p}.post_attention_layernorm.weight`, H), eps, unit, s.o);
      addInPlace(s.h, s.o, rows * H);

      const mlpNorm = c.sandwichNorms ? `${p}.pre_feedforward_layernorm.weight` : `${p}.post_attention_layernorm.weight`;
      rmsNorm(s.h, rows, H, this.vector(mlpNorm, H), eps, unit, s.x);
      const act = c.activation === "silu" ? silu : geluTanh;
      if (c.fusedProjections) {
        this.proj(s.x, rows, this.weights.matrix(`${p}.mlp.gate_up_proj.weight`, 2 * I, H), undefined, s.gate);
        // [rows, 2I] → gate [rows, I] and up [rows, I]; ascending rows never overwrite unread data.
        for (let r = 0; r < rows; r++) {
          s.up.set(s.gate.subarray(r * 2 * I + I, (r + 1) * 2 * I), r * I);
          s.gate.copyWithin(r * I, r * 2 * I, r * 2 * I + I);
        }
      } else {
        const mb = (n: string, len: number) => (c.mlpBias ? this.vector(`${p}.mlp.${n}.bias`, len) : undefined);
        this.proj(s.x, rows, this.weights.matrix(`${p}.mlp.gate_proj.weight`, I, H), mb("gate_proj", I), s.gate);
        this.proj(s.x, rows, this.weights.matrix(`${p}.mlp.up_proj.weight`, I, H), mb("up_proj", I), s.up);
      }
      gatedActivation(s.gate, s.up, rows * I, act);
      this.proj(s.gate, rows, this.weights.matrix(`${p}.mlp.down_proj.weight`, H, I), c.mlpBias ? this.vector(`${p}.mlp.down_proj.bias`, H) : undefined, s.o);
      if (c.sandwichNorms) rmsNorm(s.o, rows, H, this.vector(`${p}.post_feedforward_layernorm.weight`, H), eps, unit, s.o);
      addInPlace(s.h, s.o, rows * H);
      options.onLayerOutput?.(l, s.h.subarray(0, rows * H));
    }
    this.cache.length = start + rows;

    const outRows = options.allLogits ? rows : 1;
    const first = rows - outRows;
    const normed = new Float32Array(outRows * H);
    rmsNorm(s.h.subarray(first * H, rows * H), outRows, H, this.vector("model.norm.weight", H), eps, unit, normed);
    const head = this.weights.matrix(c.tieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight", c.vocabSize, H);
    const logits = new Float32Array(outRows * c.vocabSize);
    this.proj(normed, outRows, head, undefined, logits);
    if (c.finalLogitSoftcap) {
      const cap = c.finalLogitSoftcap;
      for (let i = 0; i < logits.length; i++) logits[i] = Math.tanh(logits[i] / cap) * cap;
    }
    return logits;
  }

  /** Causal attention of `rows` queries (positions start…) over the cache, GQA, optional window/softcap. */
  private attention(layer: number, rows: number, start: number, q: Float32Array, out: Float32Array): void {
    const c = this.config;
    const hd = c.headDim;
    const groups = c.numHeads / c.numKvHeads;
    const keys = this.cache.keysOf(layer);
    const values = this.cache.valuesOf(layer);
    const window = c.slidingWindow[layer];
    const cap = c.attnLogitSoftcap;
    const kvStride = c.numKvHeads * hd;
    const scores = new Float64Array(start + rows);
    for (let r = 0; r < rows; r++) {
      const pos = start + r;
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
        const oo = (r * c.numHeads + h) * hd;
        for (let i = 0; i < hd; i++) {
          let acc = 0;
          for (let j = lo; j <= pos; j++) acc += (scores[j] / sum) * values[j * kvStride + kvh * hd + i];
          out[oo + i] = acc;
        }
      }
    }
  }

  /** Forget the cached positions (start a new sequence). */
  reset(): void {
    this.cache.reset();
  }

  dispose(): void {
    this.cache.reset();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
