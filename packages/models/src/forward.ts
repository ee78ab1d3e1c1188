import type { Backend, BackendTensor, LinearWeight } from "./backend.js";

/** Options of one forward step. */
export interface ForwardStepOptions {
  /** Called with the residual stream after each layer (host copy, [rows, hidden]). */
  readonly onLayerOutput?: (layer: number, hidden: Float32Array) => void;
}

/**
 * The decoder-only transformer (llama, mistral, qwen2/3, gemma2/3, phi3), written once over a
 * {@link Backend}: embeds the step's rows, runs every layer (writing the KV cache), and returns the
 * logits [outputRows, vocab] as a backend tensor (a tensor-parallel backend's holds its vocabulary shard;
 * its `read` and `argmax` answer for the whole vocabulary).
 */
export function forwardStep<T extends BackendTensor>(b: Backend<T>, rows: number, outputRows: number, options: ForwardStepOptions = {}): T {
  const c = b.config;
  // A tensor-parallel backend's tensors hold its GPUs' share of heads, features and vocabulary.
  const s = b.shardConfig ?? c;
  const H = c.hiddenSize;
  const qDim = s.numHeads * c.headDim;
  const kvDim = s.numKvHeads * c.headDim;
  const I = s.intermediateSize;
  const h = b.tensor("hidden", rows, H);
  const x = b.tensor("normed", rows, H);
  const qkv = b.tensor("qkv", rows, qDim + 2 * kvDim);
  const attn = b.tensor("attention", rows, qDim);
  const gu = b.tensor("gate_up", rows, 2 * I);
  const act = b.tensor("activated", rows, I);
  const o = c.sandwichNorms ? b.tensor("branch", rows, H) : h;

  // Gemma scales embeddings by √hidden, rounded to float32 as transformers does.
  b.embed(h, c.gemmaNorms ? Math.fround(Math.sqrt(H)) : 1);
  for (let l = 0; l < c.numLayers; l++) {
    b.beginLayer?.(l); // a backend streaming layers (CPU offload) waits here for this layer's weights
    const p = `model.layers.${l}`;
    const bias = (on: boolean, name: string) => (on ? `${p}.${name}.bias` : undefined);
    b.rmsNorm(h, `${p}.input_layernorm.weight`, x);
    const qkvWeights: LinearWeight[] = c.fusedProjections
      ? [{ name: `${p}.self_attn.qkv_proj.weight`, rows: qDim + 2 * kvDim }]
      : [
          { name: `${p}.self_attn.q_proj.weight`, rows: qDim, bias: bias(c.attentionBias, "self_attn.q_proj") },
          { name: `${p}.self_attn.k_proj.weight`, rows: kvDim, bias: bias(c.attentionBias, "self_attn.k_proj") },
          { name: `${p}.self_attn.v_proj.weight`, rows: kvDim, bias: bias(c.attentionBias, "self_attn.v_proj") },
        ];
    b.linear(x, qkvWeights, qkv);
    b.attention(l, qkv, attn);
    // Without sandwich norms the projection adds straight into the residual stream.
    b.linear(attn, [{ name: `${p}.self_attn.o_proj.weight`, rows: H, bias: bias(c.outputProjectionBias, "self_attn.o_proj") }], o, !c.sandwichNorms);
    if (c.sandwichNorms) b.rmsNormAdd(o, `${p}.post_attention_layernorm.weight`, h);

    b.rmsNorm(h, c.sandwichNorms ? `${p}.pre_feedforward_layernorm.weight` : `${p}.post_attention_layernorm.weight`, x);
    const guWeights: LinearWeight[] = c.fusedProjections
      ? [{ name: `${p}.mlp.gate_up_proj.weight`, rows: 2 * I }]
      : [
          { name: `${p}.mlp.gate_proj.weight`, rows: I, bias: bias(c.mlpBias, "mlp.gate_proj") },
          { name: `${p}.mlp.up_proj.weight`, rows: I, bias: bias(c.mlpBias, "mlp.up_proj") },
        ];
    b.linear(x, guWeights, gu);
    b.gatedActivation(gu, act);
    b.linear(act, [{ name: `${p}.mlp.down_proj.weight`, rows: H, bias: bias(c.mlpBias, "mlp.down_proj") }], o, !c.sandwichNorms);
    if (c.sandwichNorms) b.rmsNormAdd(o, `${p}.post_feedforward_layernorm.weight`, h);
    options.onLayerOutput?.(l, b.read(h));
  }
  b.beginLayer?.(c.numLayers); // the last layer's ops are queued

  const last = b.tensor("output_hidden", outputRows, H);
  b.gatherOutputRows(h, last);
  b.rmsNorm(last, "model.norm.weight", last);
  const logits = b.tensor("logits", outputRows, s.vocabSize);
  b.linear(last, [{ name: c.tieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight", rows: s.vocabSize }], logits);
  if (c.finalLogitSoftcap) b.softcap(logits, c.finalLogitSoftcap);
  return logits;
}

/** The tensors every model needs, for an early error naming the first one missing. */
export function requiredWeights(b: Pick<Backend, "config">): string[] {
  const c = b.config;
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
  return need;
}
