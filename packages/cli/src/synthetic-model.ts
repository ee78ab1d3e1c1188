import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { float32ToBF16, syntheticWeights } from "@df11/codec";
import { writeSafetensors, type TensorToWrite } from "@df11/hub-loader";
import { bytesOf } from "./df11-io.js";

/** Dimensions of a generated Llama-shaped model. */
export interface SyntheticModelShape {
  readonly vocab: number;
  readonly hidden: number;
  readonly intermediate: number;
  readonly layers: number;
  readonly heads: number;
  readonly kvHeads: number;
}

export const DEMO_SHAPE: SyntheticModelShape = { vocab: 8192, hidden: 512, intermediate: 1408, layers: 4, heads: 8, kvHeads: 2 };

/**
 * Write a Llama-shaped BF16 model (config.json + model.safetensors) with weights drawn like a trained
 * model's, so compression behaves as on real checkpoints. Deterministic for a given seed.
 */
export async function writeSyntheticLlama(dir: string, shape: SyntheticModelShape = DEMO_SHAPE, seed = 1): Promise<void> {
  await mkdir(dir, { recursive: true });
  const { vocab, hidden, intermediate, layers, heads, kvHeads } = shape;
  const headDim = hidden / heads;
  let s = seed;
  const matrix = (name: string, rows: number, cols: number): TensorToWrite => ({
    name,
    dtype: "BF16",
    shape: [rows, cols],
    data: bytesOf(syntheticWeights(rows * cols, s++, 1 / Math.sqrt(cols))),
  });
  const norm = (name: string): TensorToWrite => ({
    name,
    dtype: "BF16",
    shape: [hidden],
    data: bytesOf(float32ToBF16(new Float32Array(hidden).fill(1))),
  });
  const tensors: TensorToWrite[] = [matrix("model.embed_tokens.weight", vocab, hidden), matrix("lm_head.weight", vocab, hidden), norm("model.norm.weight")];
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}`;
    tensors.push(
      matrix(`${p}.self_attn.q_proj.weight`, heads * headDim, hidden),
      matrix(`${p}.self_attn.k_proj.weight`, kvHeads * headDim, hidden),
      matrix(`${p}.self_attn.v_proj.weight`, kvHeads * headDim, hidden),
      matrix(`${p}.self_attn.o_proj.weight`, hidden, heads * headDim),
      matrix(`${p}.mlp.gate_proj.weight`, intermediate, hidden),
      matrix(`${p}.mlp.up_proj.weight`, intermediate, hidden),
      matrix(`${p}.mlp.down_proj.weight`, hidden, intermediate),
      norm(`${p}.input_layernorm.weight`),
      norm(`${p}.post_attention_layernorm.weight`),
    );
  }
  await writeSafetensors(join(dir, "model.safetensors"), tensors, { format: "pt" });
  const config = {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    vocab_size: vocab,
    hidden_size: hidden,
    intermediate_size: intermediate,
    num_hidden_layers: layers,
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    head_dim: headDim,
    hidden_act: "silu",
    max_position_embeddings: 2048,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: false,
    torch_dtype: "bfloat16",
    bos_token_id: 1,
    eos_token_id: 2,
  };
  await writeFile(join(dir, "config.json"), JSON.stringify(config, null, 2) + "\n");
  await writeFile(join(dir, "generation_config.json"), JSON.stringify({ bos_token_id: 1, eos_token_id: 2 }, null, 2) + "\n");
}
