import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { syntheticNormWeights, syntheticWeights } from "@df11/codec";
import { writeSafetensors, type TensorToWrite } from "@df11/hub-loader";
import { bytesOf } from "./df11-checkpoint.js";

/** Dimensions of a generated model. */
export interface SyntheticModelShape {
  readonly vocab: number;
  readonly hidden: number;
  readonly intermediate: number;
  readonly layers: number;
  readonly heads: number;
  readonly kvHeads: number;
}

export interface SyntheticModelOptions {
  /** llama (default) or qwen3 (adds per-head q/k norms). */
  readonly family?: "llama" | "qwen3";
  readonly seed?: number;
  /** Also write a word-level tokenizer.json, tokenizer_config.json and a chat template. */
  readonly tokenizer?: boolean;
}

export const DEMO_SHAPE: SyntheticModelShape = { vocab: 8192, hidden: 512, intermediate: 1408, layers: 4, heads: 8, kvHeads: 2 };

const WORDS =
  "the of and to a in is it you that he was for on are with as I his they be at one have this from or had by hot word but what some we can out other were all there when up use your how said an each she which do their time if will way about many then them write would like so these her long make thing see him two has look more day could go come did number sound no most people my over know water than call first who may down side been now find any new work part take get place made live where after back little only round man year came show every good me give our under name very through just form sentence great think say help low line differ turn cause much mean before move right boy old too same tell does set three want air well also play small end put home read hand port large spell add even land here must big high such follow act why ask men change went light kind off need house picture try us again animal point mother world near build self earth father".split(
    " ",
  );

/** A WordPiece tokenizer over `vocab` ids: specials, common words, characters and their continuations. */
function tokenizerJson(vocab: number): object {
  const specials = ["<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>"];
  const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-:;()".split("");
  const tokens = [...specials, ...new Set([...chars, ...chars.map((c) => `##${c}`), ...WORDS])];
  for (let i = 0; tokens.length < vocab; i++) tokens.push(`tok${i}`);
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: specials.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: null,
    pre_tokenizer: { type: "Whitespace" },
    post_processor: { type: "TemplateProcessing", single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }], pair: [], special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } } },
    decoder: { type: "WordPiece", prefix: "##", cleanup: true },
    model: { type: "WordPiece", unk_token: "<unk>", continuing_subword_prefix: "##", max_input_chars_per_word: 100, vocab: Object.fromEntries(tokens.slice(0, vocab).map((t, i) => [t, i])) },
  };
}

/** A tensor of a llama-shaped model: its name, its shape, and how its values are drawn. */
export interface SyntheticTensorSpec {
  readonly name: string;
  readonly shape: readonly number[];
  /** `matrix`: normal values (and a few outliers); `norm`: RMSNorm scales around 1. */
  readonly kind: "matrix" | "norm";
}

/**
 * The tensors of a llama-family model of this shape (qwen3 adds per-head q/k norms), in the order
 * {@link writeSyntheticModel} draws them: embeddings, lm_head, final norm, then each layer's.
 */
export function syntheticModelTensors(shape: SyntheticModelShape, family: "llama" | "qwen3" = "llama"): SyntheticTensorSpec[] {
  const { vocab, hidden, intermediate, layers, heads, kvHeads } = shape;
  const headDim = hidden / heads;
  const matrix = (name: string, rows: number, cols: number): SyntheticTensorSpec => ({ name, shape: [rows, cols], kind: "matrix" });
  const norm = (name: string, size = hidden): SyntheticTensorSpec => ({ name, shape: [size], kind: "norm" });
  const out = [matrix("model.embed_tokens.weight", vocab, hidden), matrix("lm_head.weight", vocab, hidden), norm("model.norm.weight")];
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}`;
    out.push(
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
    if (family === "qwen3") out.push(norm(`${p}.self_attn.q_norm.weight`, headDim), norm(`${p}.self_attn.k_norm.weight`, headDim));
  }
  return out;
}

const CHAT_TEMPLATE =
  "{% for message in messages %}{{ '<|' + message['role'] + '|> ' + message['content'] + ' ' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}";

/**
 * Write a BF16 model (config.json + model.safetensors) with llama/qwen3 structure and weights drawn
 * like a trained model's, so compression and inference behave as on real checkpoints. Deterministic.
 */
export async function writeSyntheticModel(dir: string, shape: SyntheticModelShape = DEMO_SHAPE, options: SyntheticModelOptions = {}): Promise<void> {
  await mkdir(dir, { recursive: true });
  const { vocab, hidden, intermediate, layers, heads, kvHeads } = shape;
  const family = options.family ?? "llama";
  const headDim = hidden / heads;
  let s = options.seed ?? 1;
  const tensors: TensorToWrite[] = syntheticModelTensors(shape, family).map(({ name, shape: [rows, cols], kind }) => ({
    name,
    dtype: "BF16",
    shape: kind === "matrix" ? [rows, cols] : [rows],
    data: bytesOf(kind === "matrix" ? syntheticWeights(rows * cols, s++, 1 / Math.sqrt(cols)) : syntheticNormWeights(rows, s++)),
  }));
  await writeSafetensors(join(dir, "model.safetensors"), tensors, { format: "pt" });
  const config = {
    architectures: [family === "qwen3" ? "Qwen3ForCausalLM" : "LlamaForCausalLM"],
    model_type: family,
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
  if (options.tokenizer) {
    await writeFile(join(dir, "tokenizer.json"), JSON.stringify(tokenizerJson(vocab)));
    await writeFile(
      join(dir, "tokenizer_config.json"),
      JSON.stringify({ bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>", chat_template: CHAT_TEMPLATE, model_max_length: 2048 }, null, 2),
    );
  }
}

