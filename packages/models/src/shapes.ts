import { textConfigOf } from "./config.js";
import { ConfigError } from "./errors.js";

const positiveInt = (config: Record<string, unknown>, key: string, fallback?: number): number => {
  const v = config[key] ?? fallback;
  if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
    throw new ConfigError(key, v === undefined ? "missing" : `expected a positive integer, got ${JSON.stringify(v)}`);
  }
  return v;
};

/** The dimensions the weight shapes of llama-family models follow. */
export interface Dimensions {
  readonly vocab: number;
  readonly hidden: number;
  readonly intermediate: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
}

/** Read the dimensions from a config.json (text configs nested under `text_config` included, over their class defaults). */
export function dimensionsOf(rawConfig: Record<string, unknown>): Dimensions {
  const config = textConfigOf(rawConfig);
  const hidden = positiveInt(config, "hidden_size");
  const heads = positiveInt(config, "num_attention_heads");
  const kvHeads = positiveInt(config, "num_key_value_heads", heads);
  if (heads % kvHeads !== 0) throw new ConfigError("num_key_value_heads", `${kvHeads} does not divide num_attention_heads ${heads}`);
  return {
    vocab: positiveInt(config, "vocab_size"),
    hidden,
    intermediate: positiveInt(config, "intermediate_size"),
    heads,
    kvHeads,
    headDim: positiveInt(config, "head_dim", hidden % heads === 0 ? hidden / heads : undefined),
  };
}

/**
 * Shape of a weight tensor of a llama-family model (llama, mistral, qwen2/3, gemma2/3, phi3), or
 * undefined for a name it does not know.
 */
export function expectedWeightShape(config: Record<string, unknown>, tensor: string): number[] | undefined {
  // A vision tower's or projector's linear layers are not sized by the text config.
  if (/(^|\.)(vision_tower|vision_model|multi_modal_projector|visual|audio_tower)\./.test(tensor)) return undefined;
  const d = dimensionsOf(config);
  const suffix = tensor.replace(/^.*?(?=(self_attn|mlp)\.)/, "");
  if (/(^|\.)embed_tokens\.weight$/.test(tensor) || /(^|\.)lm_head\.weight$/.test(tensor)) return [d.vocab, d.hidden];
  switch (suffix) {
    case "self_attn.q_proj.weight":
      return [d.heads * d.headDim, d.hidden];
    case "self_attn.k_proj.weight":
    case "self_attn.v_proj.weight":
      return [d.kvHeads * d.headDim, d.hidden];
    case "self_attn.o_proj.weight":
      return [d.hidden, d.heads * d.headDim];
    case "self_attn.qkv_proj.weight":
      return [(d.heads + 2 * d.kvHeads) * d.headDim, d.hidden];
    case "mlp.gate_proj.weight":
    case "mlp.up_proj.weight":
      return [d.intermediate, d.hidden];
    case "mlp.gate_up_proj.weight":
      return [2 * d.intermediate, d.hidden];
    case "mlp.down_proj.weight":
      return [d.hidden, d.intermediate];
    default:
      return undefined;
  }
}
