import { ConfigError } from "./errors.js";
import { generalizePath, type PatternDict } from "./pattern-dict.js";

/** What df11 knows about one family of architectures. */
export interface ArchitectureSpec {
  /** Short name, e.g. `llama`. */
  readonly name: string;
  /** `model_type` values of config.json. */
  readonly modelTypes: readonly string[];
  /** `architectures` entries of config.json. */
  readonly architectures: readonly string[];
  /** The DF11 pattern_dict the official releases use for it. */
  readonly patternDict: PatternDict;
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

const llamaLike = (layer: readonly string[] = LLAMA_LIKE_LAYER): PatternDict => ({
  lm_head: [],
  "model\\.embed_tokens": [],
  "model\\.layers\\.\\d+": layer,
});

/** The architectures df11 ships pattern_dicts for. */
export const ARCHITECTURES: readonly ArchitectureSpec[] = [
  { name: "llama", modelTypes: ["llama"], architectures: ["LlamaForCausalLM"], patternDict: llamaLike() },
  { name: "mistral", modelTypes: ["mistral"], architectures: ["MistralForCausalLM"], patternDict: llamaLike() },
  { name: "qwen2", modelTypes: ["qwen2"], architectures: ["Qwen2ForCausalLM"], patternDict: llamaLike() },
  { name: "qwen3", modelTypes: ["qwen3"], architectures: ["Qwen3ForCausalLM"], patternDict: llamaLike() },
  { name: "gemma2", modelTypes: ["gemma2"], architectures: ["Gemma2ForCausalLM"], patternDict: llamaLike() },
  { name: "gemma3", modelTypes: ["gemma3_text"], architectures: ["Gemma3ForCausalLM"], patternDict: llamaLike() },
  {
    name: "phi3",
    modelTypes: ["phi3"],
    architectures: ["Phi3ForCausalLM"],
    patternDict: llamaLike(["self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj", "mlp.down_proj"]),
  },
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
 * Generic fallback for unknown models (diffusion transformers, new LLMs): every BF16 matrix
 * `<module>.weight` is compressed alone. Layer indices become `\d+`, so the dict stays small.
 */
export function genericPatternDict(weights: readonly WeightDescriptor[]): PatternDict {
  const dict: Record<string, string[]> = {};
  for (const w of weights) {
    if (w.dtype !== "BF16" || w.shape.length !== 2 || !w.name.endsWith(".weight")) continue;
    dict[generalizePath(w.name.slice(0, -".weight".length))] = [];
  }
  return dict;
}

/** The pattern_dict to compress a model with: its architecture's, else the generic fallback. */
export function patternDictFor(config: Record<string, unknown>, weights: readonly WeightDescriptor[]): {
  patternDict: PatternDict;
  architecture: string;
} {
  if ("dfloat11_config" in config) throw new ConfigError("dfloat11_config", "this model is already DFloat11-compressed");
  const spec = findArchitecture(config);
  if (spec) return { patternDict: spec.patternDict, architecture: spec.name };
  return { patternDict: genericPatternDict(weights), architecture: "generic" };
}
