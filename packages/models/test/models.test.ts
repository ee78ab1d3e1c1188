import { describe, expect, it } from "vitest";
import {
  compressionUnits,
  ConfigError,
  dfloat11ConfigOf,
  expectedWeightShape,
  genericPatternDict,
  parseTextModelConfig,
  patternDictFor,
  tiedWordEmbeddings,
  UnsupportedDfloat11VersionError,
  WeightLayoutError,
  weightNamesOf,
} from "../src/index.js";

const layer = (i: number, subs = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]) =>
  subs.map((s) => `model.layers.${i}.${s}.weight`);

describe("architecture registry", () => {
  it.each([
    ["LlamaForCausalLM", "llama"],
    ["MistralForCausalLM", "mistral"],
    ["Qwen2ForCausalLM", "qwen2"],
    ["Qwen3ForCausalLM", "qwen3"],
    ["Gemma2ForCausalLM", "gemma2"],
    ["Gemma3ForCausalLM", "gemma3"],
    ["Phi3ForCausalLM", "phi3"],
  ])("%s → %s", (arch, name) => {
    expect(patternDictFor({ architectures: [arch] }, []).architecture).toBe(name);
  });

  it("falls back by model_type, then to a generic dict of every BF16 matrix", () => {
    expect(patternDictFor({ model_type: "qwen3" }, []).architecture).toBe("qwen3");
    const { patternDict, architecture } = patternDictFor({ architectures: ["FluxTransformer2DModel"] }, [
      { name: "transformer_blocks.0.attn.to_q.weight", dtype: "BF16", shape: [8, 8] },
      { name: "transformer_blocks.1.attn.to_q.weight", dtype: "BF16", shape: [8, 8] },
      { name: "transformer_blocks.1.norm.weight", dtype: "BF16", shape: [8] },
      { name: "proj_out.weight", dtype: "F32", shape: [8, 8] },
    ]);
    expect(architecture).toBe("generic");
    expect(patternDict).toEqual({ "transformer_blocks\\.\\d+\\.attn\\.to_q": [] });
    const units = compressionUnits(patternDict, ["transformer_blocks.0.attn.to_q.weight", "transformer_blocks.1.attn.to_q.weight"]);
    expect(units.map((u) => u.module)).toEqual(["transformer_blocks.0.attn.to_q", "transformer_blocks.1.attn.to_q"]);
    expect(genericPatternDict([])).toEqual({});
  });

  it("refuses an already compressed model", () => {
    expect(() => patternDictFor({ dfloat11_config: {} }, [])).toThrowError(ConfigError);
  });
});

describe("compression units", () => {
  const dict = patternDictFor({ architectures: ["LlamaForCausalLM"] }, []).patternDict;
  it("groups each layer's seven matrices in pattern order, layers in numeric order", () => {
    const names = [...layer(10), ...layer(2), "lm_head.weight", "model.embed_tokens.weight", "model.norm.weight"];
    const units = compressionUnits(dict, names);
    expect(units.map((u) => u.module)).toEqual(["lm_head", "model.embed_tokens", "model.layers.2", "model.layers.10"]);
    expect(units[2].weights).toEqual(layer(2));
    expect(weightNamesOf(dict, "model.layers.10")).toEqual(layer(10));
  });
  it("skips a tied lm_head and names a missing weight", () => {
    expect(compressionUnits(dict, ["model.embed_tokens.weight"]).map((u) => u.module)).toEqual(["model.embed_tokens"]);
    const names = layer(0).filter((n) => !n.includes("up_proj"));
    expect(() => compressionUnits(dict, names)).toThrowError(WeightLayoutError);
    expect(() => compressionUnits(dict, names)).toThrowError(/model\.layers\.0\.mlp\.up_proj\.weight/);
  });
});

describe("weight shapes from config", () => {
  const config = { hidden_size: 128, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 32, vocab_size: 512, intermediate_size: 344 };
  it("follows GQA and head_dim", () => {
    expect(expectedWeightShape(config, "model.layers.0.self_attn.k_proj.weight")).toEqual([64, 128]);
    expect(expectedWeightShape(config, "model.layers.0.mlp.down_proj.weight")).toEqual([128, 344]);
    expect(expectedWeightShape(config, "lm_head.weight")).toEqual([512, 128]);
    expect(expectedWeightShape(config, "model.layers.0.self_attn.qkv_proj.weight")).toEqual([256, 128]);
  });
  it("names a bad key", () => {
    expect(() => expectedWeightShape({ ...config, hidden_size: "x" }, "lm_head.weight")).toThrowError(/hidden_size: expected a positive integer/);
    expect(() => expectedWeightShape({ ...config, num_key_value_heads: 3 }, "lm_head.weight")).toThrowError(/num_key_value_heads/);
  });
});

describe("tied embeddings", () => {
  const L7 = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"];
  it("follows config.json, else the class default (gemma ties, qwen3 does not)", () => {
    expect(tiedWordEmbeddings({ model_type: "qwen3", tie_word_embeddings: true })).toBe(true);
    expect(tiedWordEmbeddings({ model_type: "qwen3" })).toBe(false);
    expect(tiedWordEmbeddings({ model_type: "gemma2" })).toBe(true);
    expect(tiedWordEmbeddings({ model_type: "gemma3", text_config: { model_type: "gemma3_text" } })).toBe(true);
    expect(tiedWordEmbeddings({ model_type: "somethingnew" })).toBeUndefined();
  });
  it("a tied model's pattern_dict leaves the embedding (and lm_head) alone, as Qwen3-4B-DF11 does", () => {
    expect(patternDictFor({ architectures: ["Qwen3ForCausalLM"], tie_word_embeddings: true }, []).patternDict).toEqual({ "model\\.layers\\.\\d+": L7 });
    expect(Object.keys(patternDictFor({ architectures: ["Qwen3ForCausalLM"], tie_word_embeddings: false }, []).patternDict)).toEqual(["lm_head", "model\\.embed_tokens", "model\\.layers\\.\\d+"]);
  });
  it("gemma-3 multimodal: the language model's layers under the names it is stored with", () => {
    const config = { architectures: ["Gemma3ForConditionalGeneration"], model_type: "gemma3", text_config: { model_type: "gemma3_text" } };
    const legacy = [{ name: "language_model.model.layers.0.self_attn.q_proj.weight", dtype: "BF16", shape: [8, 8] }];
    expect(patternDictFor(config, legacy)).toEqual({ architecture: "gemma3", patternDict: { "language_model\\.model\\.layers\\.\\d+": L7 } });
    const current = [{ name: "model.language_model.layers.0.self_attn.q_proj.weight", dtype: "BF16", shape: [8, 8] }];
    expect(patternDictFor(config, current).patternDict).toEqual({ "model\\.language_model\\.layers\\.\\d+": L7 });
  });
  it("the generic fallback keeps an embedding-shaped matrix BF16 when the model may tie it", () => {
    const weights = [
      { name: "wte.weight", dtype: "BF16", shape: [100, 16] },
      { name: "h.0.fc.weight", dtype: "BF16", shape: [16, 16] },
    ];
    const dims = { vocab_size: 100, hidden_size: 16 };
    expect(Object.keys(genericPatternDict(weights, { ...dims, tie_word_embeddings: true }))).toEqual(["h\\.\\d+\\.fc"]);
    expect(Object.keys(genericPatternDict(weights, dims))).toEqual(["h\\.\\d+\\.fc"]); // unsaid, one such matrix: may be tied
    expect(Object.keys(genericPatternDict(weights, { ...dims, tie_word_embeddings: false }))).toEqual(["wte", "h\\.\\d+\\.fc"]);
    const untied = [...weights, { name: "head.weight", dtype: "BF16", shape: [100, 16] }];
    expect(Object.keys(genericPatternDict(untied, dims))).toEqual(["wte", "h\\.\\d+\\.fc", "head"]); // two: not tied
  });
});

describe("dfloat11_config of every release", () => {
  const dict = { "model.layers.\\d+": ["self_attn.q_proj"] };
  it("reads 0.2.0 to 0.5.0 forms; a plain model has none", () => {
    expect(dfloat11ConfigOf({ dfloat11_config: { version: "0.2.0", threads_per_block: [512], bytes_per_thread: 8, pattern_dict: dict } }, "m")).toEqual({ version: "0.2.0", patternDict: dict, threadsPerBlock: 512, bytesPerThread: 8 });
    expect(dfloat11ConfigOf({ dfloat11_config: { threads_per_block: 512, pattern_dict: dict } }, "m")?.version).toBe("unknown");
    expect(dfloat11ConfigOf({ model_type: "llama" }, "m")).toBeUndefined();
  });
  it("refuses 0.1.0 with a typed error, and malformed or foreign settings naming the key", () => {
    expect(() => dfloat11ConfigOf({ dfloat11_version: "0.1.0" }, "old")).toThrowError(UnsupportedDfloat11VersionError);
    expect(() => dfloat11ConfigOf({ dfloat11_version: "0.1.0" }, "old")).toThrowError(/old: a DFloat11 0\.1\.0 model/);
    expect(() => dfloat11ConfigOf({ dfloat11_config: { pattern_dict: dict, threads_per_block: [256] } }, "m")).toThrowError(/threads_per_block \[256\]/);
    expect(() => dfloat11ConfigOf({ dfloat11_config: { pattern_dict: { x: "q_proj" } } }, "m")).toThrowError(/pattern_dict\["x"\]: expected a list/);
    expect(() => dfloat11ConfigOf({ dfloat11_config: { pattern_dict: { "(": [] } } }, "m")).toThrowError(/not a regular expression/);
    expect(() => dfloat11ConfigOf({ dfloat11_config: {} }, "m")).toThrowError(/pattern_dict: missing/);
  });
});

describe("config keys left out take transformers' class defaults", () => {
  it("gemma-3's sparse text_config (as the Hub ships it)", () => {
    const c = parseTextModelConfig({
      model_type: "gemma3",
      eos_token_id: [1, 106],
      text_config: { model_type: "gemma3_text", hidden_size: 2560, intermediate_size: 10240, num_hidden_layers: 34, rope_scaling: { factor: 8.0, rope_type: "linear" }, sliding_window: 1024 },
    });
    expect(c).toMatchObject({ family: "gemma3", numHeads: 8, numKvHeads: 4, headDim: 256, vocabSize: 262208, attentionScale: 1 / 16, activation: "gelu_tanh", tieWordEmbeddings: true, eosTokenIds: [1, 106], bosTokenId: 2 });
    expect(c.finalLogitSoftcap).toBeUndefined();
    expect(c.slidingWindow.slice(0, 6)).toEqual([1024, 1024, 1024, 1024, 1024, undefined]);
    expect(c.rope[5]).toMatchObject({ type: "linear", factor: 8, theta: 1_000_000 });
    expect(c.rope[0]).toMatchObject({ type: "default", theta: 10_000 });
  });
  it("gemma2's soft-capping, phi3's epsilon, qwen2's sliding window off", () => {
    const base = { hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, vocab_size: 100, num_attention_heads: 4, head_dim: 16 };
    expect(parseTextModelConfig({ ...base, model_type: "gemma2" })).toMatchObject({ attnLogitSoftcap: 50, finalLogitSoftcap: 30, attentionScale: 1 / 16 });
    expect(parseTextModelConfig({ ...base, model_type: "phi3" }).rmsNormEps).toBe(1e-5);
    expect(parseTextModelConfig({ ...base, model_type: "qwen2", sliding_window: 8 }).slidingWindow).toEqual([undefined, undefined]);
  });
});
