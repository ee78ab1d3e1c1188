import { ConfigError } from "./errors.js";

/** RoPE frequencies: the type and its parameters, normalised from either config style. */
export interface RopeSettings {
  readonly type: "default" | "linear" | "llama3";
  readonly theta: number;
  /** Fraction of head_dim that is rotated (phi3 partial rotary); 1 for most models. */
  readonly partialRotaryFactor: number;
  readonly factor?: number;
  readonly lowFreqFactor?: number;
  readonly highFreqFactor?: number;
  readonly originalMaxPositionEmbeddings?: number;
}

export type Family = "llama" | "mistral" | "qwen2" | "qwen3" | "gemma2" | "gemma3" | "phi3";
export type Activation = "silu" | "gelu_tanh";

/** Everything the forward pass needs from config.json, validated. */
export interface TextModelConfig {
  readonly family: Family;
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly rmsNormEps: number;
  readonly activation: Activation;
  readonly tieWordEmbeddings: boolean;
  readonly attentionBias: boolean;
  /** qwen2: bias on q/k/v but not o. */
  readonly outputProjectionBias: boolean;
  readonly mlpBias: boolean;
  /** qwen3 / gemma3: RMSNorm over each head of q and k. */
  readonly qkNorm: boolean;
  /** gemma: norms scale by (1 + weight), embeddings are multiplied by sqrt(hidden). */
  readonly gemmaNorms: boolean;
  /** gemma2/3: extra norms after attention and around the MLP. */
  readonly sandwichNorms: boolean;
  /** phi3: fused qkv_proj and gate_up_proj weights. */
  readonly fusedProjections: boolean;
  readonly attentionScale: number;
  readonly attnLogitSoftcap?: number;
  readonly finalLogitSoftcap?: number;
  /** Per layer: the sliding window size, or undefined for full attention. */
  readonly slidingWindow: ReadonlyArray<number | undefined>;
  /** Per layer RoPE settings (gemma3 uses another base for sliding layers). */
  readonly rope: readonly RopeSettings[];
  readonly maxPositionEmbeddings: number;
  readonly bosTokenId?: number;
  readonly eosTokenIds: readonly number[];
}

type Raw = Record<string, unknown>;

const num = (c: Raw, key: string, fallback?: number, check: (v: number) => boolean = (v) => v > 0): number => {
  const v = c[key] ?? fallback;
  if (typeof v !== "number" || !Number.isFinite(v) || !check(v)) {
    throw new ConfigError(key, v === undefined ? "missing" : `invalid value ${JSON.stringify(v)}`);
  }
  return v;
};
const int = (c: Raw, key: string, fallback?: number): number => {
  const v = num(c, key, fallback);
  if (!Number.isInteger(v)) throw new ConfigError(key, `expected an integer, got ${v}`);
  return v;
};
const bool = (c: Raw, key: string, fallback: boolean): boolean => {
  const v = c[key] ?? fallback;
  if (typeof v !== "boolean") throw new ConfigError(key, `expected true or false, got ${JSON.stringify(v)}`);
  return v;
};
const optionalNumber = (c: Raw, key: string): number | undefined => (c[key] === null || c[key] === undefined ? undefined : num(c, key));

const FAMILY_BY_MODEL_TYPE: Record<string, Family> = {
  llama: "llama",
  mistral: "mistral",
  qwen2: "qwen2",
  qwen3: "qwen3",
  gemma2: "gemma2",
  gemma3_text: "gemma3",
  gemma3: "gemma3",
  phi3: "phi3",
};

/**
 * What transformers' config classes (5.x) assume for the keys df11 reads when config.json leaves them
 * out. Nested `text_config`s are saved as a diff against these (gemma-3's Hub configs give little more
 * than the sizes), so a missing key means the class default, not a guess of ours.
 */
const CLASS_DEFAULTS: Record<Family, Raw> = {
  llama: { rms_norm_eps: 1e-6, rope_theta: 10000, max_position_embeddings: 2048, tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2 },
  mistral: { rms_norm_eps: 1e-6, rope_theta: 10000, max_position_embeddings: 131072, sliding_window: 4096, tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2 },
  qwen2: { rms_norm_eps: 1e-6, rope_theta: 10000, max_position_embeddings: 32768, sliding_window: null, use_sliding_window: false, max_window_layers: 28, tie_word_embeddings: false },
  qwen3: { rms_norm_eps: 1e-6, rope_theta: 10000, max_position_embeddings: 32768, sliding_window: null, use_sliding_window: false, max_window_layers: 28, tie_word_embeddings: false, head_dim: 128 },
  gemma2: {
    vocab_size: 256000, hidden_size: 2304, intermediate_size: 9216, num_hidden_layers: 26, num_attention_heads: 8, num_key_value_heads: 4, head_dim: 256,
    hidden_activation: "gelu_pytorch_tanh", max_position_embeddings: 8192, rms_norm_eps: 1e-6, rope_theta: 10000, query_pre_attn_scalar: 256,
    sliding_window: 4096, final_logit_softcapping: 30, attn_logit_softcapping: 50, tie_word_embeddings: true, bos_token_id: 2, eos_token_id: 1,
  },
  gemma3: {
    vocab_size: 262208, hidden_size: 2304, intermediate_size: 9216, num_hidden_layers: 26, num_attention_heads: 8, num_key_value_heads: 4, head_dim: 256,
    hidden_activation: "gelu_pytorch_tanh", max_position_embeddings: 131072, rms_norm_eps: 1e-6, rope_theta: 1_000_000, rope_local_base_freq: 10000,
    query_pre_attn_scalar: 256, sliding_window: 4096, sliding_window_pattern: 6, final_logit_softcapping: null, attn_logit_softcapping: null,
    tie_word_embeddings: true, bos_token_id: 2, eos_token_id: 1,
  },
  phi3: { rms_norm_eps: 1e-5, rope_theta: 10000, max_position_embeddings: 4096, sliding_window: null, tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 32000 },
};

/** The family of a config.json (its `text_config`'s model type first), or undefined when df11 does not run it. */
export function familyOf(raw: Raw): Family | undefined {
  const nested = raw.text_config as Raw | undefined;
  return FAMILY_BY_MODEL_TYPE[String(nested?.model_type ?? raw.model_type ?? "")];
}

/**
 * The text model's settings of a config.json: its `text_config` (multimodal models) or the config
 * itself, over its class's defaults where df11 knows the family. What `dimensionsOf` and
 * {@link parseTextModelConfig} read.
 */
export function textConfigOf(raw: Raw): Raw {
  const c = (raw.text_config as Raw | undefined) ?? raw;
  const family = familyOf(raw);
  return family ? { ...CLASS_DEFAULTS[family], ...c } : c;
}

/** Token ids from an `eos_token_id` value: one id, a list of ids, or null. */
export function tokenIdList(value: unknown, key: string, fail: (key: string, detail: string) => Error): number[] {
  if (value === undefined || value === null) return [];
  const list = Array.isArray(value) ? value : [value];
  if (list.some((v) => !Number.isInteger(v) || (v as number) < 0)) fail(key, `expected a token id or a list of them, got ${JSON.stringify(value)}`);
  return list as number[];
}

/**
 * Whether the output head shares the input embedding's weights (transformers ties them): config.json's
 * `tie_word_embeddings` (top level, as transformers reads it; else the text config's), else the class
 * default of a known family; undefined for an unknown model type that does not say.
 */
export function tiedWordEmbeddings(raw: Raw): boolean | undefined {
  const nested = raw.text_config as Raw | undefined;
  const v = raw.tie_word_embeddings ?? nested?.tie_word_embeddings;
  if (typeof v === "boolean") return v;
  if (v !== undefined && v !== null) throw new ConfigError("tie_word_embeddings", `expected true or false, got ${JSON.stringify(v)}`);
  const family = familyOf(raw);
  return family ? (CLASS_DEFAULTS[family].tie_word_embeddings as boolean) : undefined;
}

/** Parse the RoPE settings of one rope dict (`rope_scaling` merged with `rope_theta`, or a `rope_parameters` entry). */
function parseRope(params: Raw, where: string, fallbackPartialRotaryFactor: number, fallbackTheta: number): RopeSettings {
  const type = (params.rope_type ?? params.type ?? "default") as string;
  const partialRotaryFactor = num(params, "partial_rotary_factor", fallbackPartialRotaryFactor, (v) => v > 0 && v <= 1);
  const theta = num(params, "rope_theta", fallbackTheta);
  if (type === "default") return { type, theta, partialRotaryFactor };
  if (type === "linear") return { type, theta, partialRotaryFactor, factor: num(params, "factor") };
  if (type === "llama3") {
    return {
      type,
      theta,
      partialRotaryFactor,
      factor: num(params, "factor"),
      lowFreqFactor: num(params, "low_freq_factor"),
      highFreqFactor: num(params, "high_freq_factor"),
      originalMaxPositionEmbeddings: num(params, "original_max_position_embeddings"),
    };
  }
  throw new ConfigError(`${where}.rope_type`, `RoPE type "${type}" is not supported (default, linear and llama3 are)`);
}

/**
 * Parse and validate a text model's config.json (llama, mistral, qwen2, qwen3, gemma2, gemma3 text,
 * phi3; a multimodal model's `text_config`, e.g. gemma-3's). Keys left out take their transformers
 * class default. Unknown or unsupported settings raise {@link ConfigError} naming the key.
 */
export function parseTextModelConfig(raw: Raw): TextModelConfig {
  const family = familyOf(raw);
  if (!family) {
    const modelType = String((raw.text_config as Raw | undefined)?.model_type ?? raw.model_type ?? "");
    throw new ConfigError("model_type", `"${modelType}" is not supported (supported: ${Object.keys(FAMILY_BY_MODEL_TYPE).join(", ")})`);
  }
  const c = textConfigOf(raw);
  const hiddenSize = int(c, "hidden_size");
  const numHeads = int(c, "num_attention_heads");
  const numKvHeads = int(c, "num_key_value_heads", numHeads);
  if (numHeads % numKvHeads !== 0) throw new ConfigError("num_key_value_heads", `${numKvHeads} does not divide num_attention_heads ${numHeads}`);
  const headDim = int(c, "head_dim", hiddenSize % numHeads === 0 ? hiddenSize / numHeads : undefined);
  const numLayers = int(c, "num_hidden_layers");
  const gemma = family === "gemma2" || family === "gemma3";

  const act = String(c.hidden_activation ?? c.hidden_act ?? "silu");
  const activation: Activation =
    act === "silu" || act === "swish" ? "silu" : act === "gelu_pytorch_tanh" || act === "gelu_tanh" ? "gelu_tanh" : (() => {
      throw new ConfigError(c.hidden_activation ? "hidden_activation" : "hidden_act", `activation "${act}" is not supported (silu, gelu_pytorch_tanh)`);
    })();

  // Layer kinds: explicit layer_types, gemma2's alternation, or one sliding_window for all.
  const layerTypes = Array.isArray(c.layer_types) ? (c.layer_types as string[]) : undefined;
  if (layerTypes && layerTypes.length !== numLayers) throw new ConfigError("layer_types", `${layerTypes.length} entries for ${numLayers} layers`);
  const window = c.sliding_window === null || c.sliding_window === undefined ? undefined : int(c, "sliding_window");
  const useSliding = c.use_sliding_window === undefined ? true : bool(c, "use_sliding_window", true);
  const slidingWindow = Array.from({ length: numLayers }, (_, i) => {
    if (!window || !useSliding) return undefined;
    if (layerTypes) return layerTypes[i] === "sliding_attention" ? window : undefined;
    if (family === "gemma2") return i % 2 === 0 ? window : undefined;
    if (family === "qwen2" || family === "qwen3") return i >= int(c, "max_window_layers", numLayers) ? window : undefined;
    return window;
  });
  if (family === "gemma3" && !layerTypes && window) {
    const pattern = int(c, "sliding_window_pattern", 6);
    slidingWindow.forEach((_, i) => ((slidingWindow as Array<number | undefined>)[i] = (i + 1) % pattern !== 0 ? window : undefined));
  }

  // RoPE: the newer `rope_parameters` (possibly per layer type), or `rope_theta` + `rope_scaling`.
  const partial = num(c, "partial_rotary_factor", 1, (v) => v > 0 && v <= 1);
  let rope: RopeSettings[];
  const rp = c.rope_parameters as Raw | null | undefined;
  if (rp !== null && rp !== undefined && (typeof rp !== "object" || Array.isArray(rp))) throw new ConfigError("rope_parameters", `expected an object, got ${JSON.stringify(rp)}`);
  if (rp) {
    const perType = "full_attention" in rp || "sliding_attention" in rp;
    const globalTheta = num(c, "rope_theta", 10000);
    rope = slidingWindow.map((w, i) => {
      if (!perType) return parseRope(rp, "rope_parameters", partial, globalTheta);
      const kind = layerTypes?.[i] ?? (w ? "sliding_attention" : "full_attention");
      const p = rp[kind] as Raw | undefined;
      if (!p) throw new ConfigError(`rope_parameters.${kind}`, "missing");
      return parseRope(p, `rope_parameters.${kind}`, partial, kind === "sliding_attention" ? num(c, "rope_local_base_freq", globalTheta) : globalTheta);
    });
  } else {
    const scaling = c.rope_scaling as Raw | null | undefined;
    if (scaling !== null && scaling !== undefined && typeof scaling !== "object") throw new ConfigError("rope_scaling", "expected an object or null");
    const global = parseRope({ ...(scaling ?? {}), rope_theta: c.rope_theta ?? 10000 }, "rope_scaling", partial, 10000);
    const local = family === "gemma3" ? parseRope({ rope_theta: c.rope_local_base_freq ?? 10000 }, "rope_local_base_freq", partial, 10000) : global;
    rope = slidingWindow.map((w) => (w ? local : global));
  }

  // Token ids given anywhere (text config, then top level: gemma-3 keeps [1, 106] there) beat the class default.
  const given = (raw.text_config as Raw | undefined) ?? raw;
  const eos = given.eos_token_id ?? raw.eos_token_id ?? c.eos_token_id;
  const eosTokenIds = tokenIdList(eos, "eos_token_id", (key, detail) => {
    throw new ConfigError(key, detail);
  });
  const bos = given.bos_token_id ?? raw.bos_token_id ?? c.bos_token_id;
  const queryScalar = gemma ? num(c, "query_pre_attn_scalar", headDim) : headDim;

  return {
    family,
    vocabSize: int(c, "vocab_size"),
    hiddenSize,
    intermediateSize: int(c, "intermediate_size"),
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: num(c, "rms_norm_eps", 1e-6),
    activation,
    tieWordEmbeddings: tiedWordEmbeddings(raw)!,
    attentionBias: family === "qwen2" ? true : bool(c, "attention_bias", false),
    outputProjectionBias: family === "qwen2" ? false : bool(c, "attention_bias", false),
    mlpBias: bool(c, "mlp_bias", false),
    qkNorm: family === "qwen3" || family === "gemma3",
    gemmaNorms: gemma,
    sandwichNorms: gemma,
    fusedProjections: family === "phi3",
    attentionScale: 1 / Math.sqrt(queryScalar),
    attnLogitSoftcap: family === "gemma2" ? optionalNumber(c, "attn_logit_softcapping") : undefined,
    finalLogitSoftcap: gemma ? optionalNumber(c, "final_logit_softcapping") : undefined,
    slidingWindow,
    rope,
    maxPositionEmbeddings: int(c, "max_position_embeddings", 4096),
    bosTokenId: typeof bos === "number" ? bos : undefined,
    eosTokenIds,
  };
}
