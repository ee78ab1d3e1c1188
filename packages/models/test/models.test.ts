import { describe, expect, it } from "vitest";
import { compressionUnits, ConfigError, expectedWeightShape, patternDictFor, WeightLayoutError, weightNamesOf, genericPatternDict } from "../src/index.js";

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
