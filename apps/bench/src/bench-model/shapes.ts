/**
 * The shapes of the benchmark models: Llama-3.1-8B and Llama-3.3-70B (their config.json values), for
 * synthetic weights with the statistics of a trained model (see tools/make_bench_model.py).
 */

import { syntheticModelTensors, type SyntheticModelShape, type SyntheticTensorSpec } from "@df11/models";

export interface BenchShape extends SyntheticModelShape {
  /** Values of config.json that are not dimensions. */
  readonly extra: Readonly<Record<string, unknown>>;
}

const llama3 = {
  hidden_act: "silu",
  max_position_embeddings: 131072,
  rms_norm_eps: 1e-5,
  rope_theta: 500000.0,
  rope_scaling: { rope_type: "llama3", factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192 },
  tie_word_embeddings: false,
  torch_dtype: "bfloat16",
  bos_token_id: 128000,
  attention_bias: false,
  mlp_bias: false,
};

export const BENCH_SHAPES = {
  /** meta-llama/Llama-3.1-8B (as tools/make_bench_model.py writes it). */
  "8b": { hidden: 4096, intermediate: 14336, layers: 32, heads: 32, kvHeads: 8, vocab: 128256, extra: { ...llama3, eos_token_id: 128001 } },
  /** A Llama-3 layout in miniature, for tests: seconds to make on any machine. */
  tiny: { hidden: 256, intermediate: 688, layers: 2, heads: 4, kvHeads: 2, vocab: 2048, extra: { ...llama3, bos_token_id: 1, eos_token_id: 2 } },
  /** meta-llama/Llama-3.3-70B-Instruct. */
  "70b": { hidden: 8192, intermediate: 28672, layers: 80, heads: 64, kvHeads: 8, vocab: 128256, extra: { ...llama3, eos_token_id: [128001, 128008, 128009] } },
} as const satisfies Record<string, BenchShape>;

export type BenchShapeName = keyof typeof BENCH_SHAPES;

/**
 * A tensor of the model: `matrix` values are normal with std 0.5/√cols and 0.05 % outliers ×8, `norm`
 * values 1 + normal(0, 0.05).
 */
export type BenchTensor = SyntheticTensorSpec;

/** The model's tensors (with `layers` layers), sorted by name: the order a directory of them lists. */
export function benchTensors(shape: BenchShape, layers = shape.layers): BenchTensor[] {
  return syntheticModelTensors({ ...shape, layers }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** config.json of the model with `layers` layers, as text. */
export function benchConfigText(shape: BenchShape, layers = shape.layers): string {
  const config = {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    vocab_size: shape.vocab,
    hidden_size: shape.hidden,
    intermediate_size: shape.intermediate,
    num_hidden_layers: layers,
    num_attention_heads: shape.heads,
    num_key_value_heads: shape.kvHeads,
    head_dim: shape.hidden / shape.heads,
    ...shape.extra,
  };
  return JSON.stringify(config, null, 2) + "\n";
}
