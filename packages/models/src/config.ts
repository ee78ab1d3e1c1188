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

/** Parse the RoPE settings of one rope dict (`rope_scaling` merged with `rope_theta`, or a `rope_parameters` entry). */
function parseRope(params: Raw, where: string, fallbackPartialRotaryFactor: number): RopeSettings {
  const type = (params.rope_type ?? params.type ?? "default") as string;
  const partialRotaryFactor = num(params, "partial_rotary_factor", fallbackPartialRotaryFactor, (v) => v > 0 && v <= 1);
  const theta = num(params, "rope_theta", 10000);
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
 * phi3). Unknown or unsupported settings raise {@link ConfigError} naming the key.
 */
export function parseTextModelConfig(raw: Raw): TextModelConfig {
  const c = (raw.text_config as Raw | undefined) ?? raw;
  const modelType = String(c.model_type ?? raw.model_type ?? "");
  const family = FAMILY_BY_MODEL_TYPE[modelType];
  if (!family) {
    throw new ConfigError("model_type", `"${modelType}" is not supported (supported: ${Object.keys(FAMILY_BY_MODEL_TYPE).join(", ")})`);
  }
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
  const rp = c.rope_parameters as Raw | undefined;
  if (rp && typeof rp === "object") {
    const perType = "full_attention" in rp || "sliding_attention" in rp;
    rope = slidingWindow.map((w, i) => {
      if (!perType) return parseRope(rp, "rope_parameters", partial);
      const kind = layerTypes?.[i] ?? (w ? "sliding_attention" : "full_attention");
      const p = rp[kind] as Raw | undefined;
      if (!p) throw new ConfigError(`rope_parameters.${kind}`, "missing");
      return parseRope(p, `rope_parameters.${kind}`, partial);
    });
  } else {
    const scaling = c.rope_scaling as Raw | null | undefined;
    if (scaling !== null && scaling !== undefined && typeof scaling !== "object") throw new ConfigError("rope_scaling", "expected an object or null");
    const global = parseRope({ ...(scaling ?? {}), rope_theta: c.rope_theta ?? 10000 }, "rope_scaling", partial);
    const local = family === "gemma3" ? parseRope({ rope_theta: c.rope_local_base_freq ?? 10000 }, "rope_local_base_freq", partial) : global;
    rope = slidingWindow.map((w) => (w ? local : global));
  }

  const eos = c.eos_token_id ?? raw.eos_token_id;
  const eosTokenIds = eos === undefined || eos === null ? [] : Array.isArray(eos) ? (eos as number[]) : [eos as number];
  const bos = c.bos_token_id ?? raw.bos_token_id;
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
    tieWordEmbeddings: bool(raw, "tie_word_embeddings", gemma),
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
