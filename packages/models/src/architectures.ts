import { ConfigError } from "./errors.js";
import { textConfigOf, tiedWordEmbeddings } from "./config.js";
import { languageModelLayout } from "./language-model.js";
import { escapePath, generalizePath, type PatternDict } from "./pattern-dict.js";

/** What df11 knows about one family of architectures. */
export interface ArchitectureSpec {
  /** Short name, e.g. `llama`. */
  readonly name: string;
  /** `model_type` values of config.json. */
  readonly modelTypes: readonly string[];
  /** `architectures` entries of config.json. */
  readonly architectures: readonly string[];
  /** The linear layers of one decoder layer, compressed together in this order (the official releases'). */
  readonly layer: readonly string[];
}

const LLAMA_LIKE_LAYER = [
  "self_attn.q_proj",
  "self_attn.k_proj",
  "self_attn.v_proj",
  "self_attn.o_proj",
  "mlp.gate_proj",
  "mlp.up_proj",
  "mlp.down_proj",
];

/** The architectures df11 ships pattern_dicts for. */
export const ARCHITECTURES: readonly ArchitectureSpec[] = [
  { name: "llama", modelTypes: ["llama"], architectures: ["LlamaForCausalLM"], layer: LLAMA_LIKE_LAYER },
  { name: "mistral", modelTypes: ["mistral"], architectures: ["MistralForCausalLM"], layer: LLAMA_LIKE_LAYER },
  { name: "qwen2", modelTypes: ["qwen2"], architectures: ["Qwen2ForCausalLM"], layer: LLAMA_LIKE_LAYER },
  { name: "qwen3", modelTypes: ["qwen3"], architectures: ["Qwen3ForCausalLM"], layer: LLAMA_LIKE_LAYER },
  { name: "gemma2", modelTypes: ["gemma2"], architectures: ["Gemma2ForCausalLM"], layer: LLAMA_LIKE_LAYER },
  { name: "gemma3", modelTypes: ["gemma3_text", "gemma3"], architectures: ["Gemma3ForCausalLM", "Gemma3ForConditionalGeneration"], layer: LLAMA_LIKE_LAYER },
  { name: "phi3", modelTypes: ["phi3"], architectures: ["Phi3ForCausalLM"], layer: ["self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj", "mlp.down_proj"] },
];

/** The spec for a config.json, or undefined when df11 does not know its architecture. */
export function findArchitecture(config: Record<string, unknown>): ArchitectureSpec | undefined {
  const archs = Array.isArray(config.architectures) ? (config.architectures as unknown[]) : [];
  const modelType = config.model_type;
  return (
    ARCHITECTURES.find((a) => archs.some((x) => a.architectures.includes(String(x)))) ??
    ARCHITECTURES.find((a) => typeof modelType === "string" && a.modelTypes.includes(modelType))
  );
}

/** A 2-D BF16 weight as the generic fallback sees it. */
export interface WeightDescriptor {
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly number[];
}

/**
 * The pattern_dict of a known architecture, for a checkpoint whose tensors are `tensorNames`: every
 * decoder layer's linear layers as one module; the embedding and lm_head each alone, unless the model
 * ties them. A tied model keeps its embedding in BF16, as the official releases of tied models do
 * (Qwen3-4B-DF11, gemma-3): loaders that build the model with transformers tie lm_head to the
 * embedding's BF16 weight and drop the weights of the modules they decode, so a compressed tied
 * embedding leaves lm_head without weights in them. Multimodal checkpoints (gemma-3) compress their
 * language model's layers under its stored names.
 */
export function architecturePatternDict(spec: ArchitectureSpec, config: Record<string, unknown>, tensorNames: readonly string[]): PatternDict {
  const layout = languageModelLayout(tensorNames);
  const stored = (usual: string) => escapePath(layout.storedName(usual));
  const dict: Record<string, readonly string[]> = {};
  if (!tiedWordEmbeddings(config)) {
    dict[stored("lm_head")] = [];
    dict[stored("model.embed_tokens")] = [];
  }
  dict[`${stored("model.layers")}\\.\\d+`] = spec.layer;
  return dict;
}

/**
 * Generic fallback for unknown models (diffusion transformers, new LLMs): every BF16 matrix
 * `<module>.weight` is compressed alone. Layer indices become `\d+`, so the dict stays small. A matrix
 * of the embedding's shape [vocab_size, hidden_size] stays BF16 when the model may tie it to its output
 * head (`tie_word_embeddings` true, or unsaid with only one such matrix), for the reason
 * {@link architecturePatternDict} gives.
 */
export function genericPatternDict(weights: readonly WeightDescriptor[], config: Record<string, unknown> = {}): PatternDict {
  const matrices = weights.filter((w) => w.dtype === "BF16" && w.shape.length === 2 && w.name.endsWith(".weight"));
  const text = textConfigOf(config);
  const isEmbeddingShaped = (w: WeightDescriptor) => w.shape[0] === text.vocab_size && w.shape[1] === text.hidden_size;
  const tied = tiedWordEmbeddings(config) ?? matrices.filter(isEmbeddingShaped).length === 1;
  const dict: Record<string, string[]> = {};
  for (const w of matrices) {
    if (tied && isEmbeddingShaped(w)) continue;
    dict[generalizePath(w.name.slice(0, -".weight".length))] = [];
  }
  return dict;
}

/** The pattern_dict to compress a model with: its architecture's, else the generic fallback. */
export function patternDictFor(config: Record<string, unknown>, weights: readonly WeightDescriptor[]): {
  patternDict: PatternDict;
  architecture: string;
} {
  if ("dfloat11_config" in config || "dfloat11_version" in config) throw new ConfigError("dfloat11_config", "this model is already DFloat11-compressed");
  const spec = findArchitecture(config);
  if (spec) return { patternDict: architecturePatternDict(spec, config, weights.map((w) => w.name)), architecture: spec.name };
  return { patternDict: genericPatternDict(weights, config), architecture: "generic" };
}
