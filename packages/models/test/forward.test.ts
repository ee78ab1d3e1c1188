import { readFileSync } from "node:fs";
import { cp, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SafetensorsFile } from "@df11/hub-loader";
import { fixtureNames, fixturesRoot, fixturesSkipReason } from "../../../test-support/fixtures.js";
import { CausalLM, ConfigError, Df11WeightStore, generate, loadCausalLM, parseTextModelConfig, writeSyntheticModel, type WeightStore } from "../src/index.js";

const floatBitsEqual = (a: Float32Array, b: Float32Array) =>
  a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

async function referenceLogits(name: string): Promise<Float32Array> {
  await using f = await SafetensorsFile.open(join(fixturesRoot, name, "reference_logits.safetensors"));
  const bytes = await f.read("logits_fp32");
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

const maxAbsDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

/** Tolerance on logits vs transformers fp32; far below what a wrong RoPE or head layout produces (tested below). */
const LOGIT_TOLERANCE = 1e-5;

describe.skipIf(fixtureNames.length === 0)(`forward pass vs transformers (${fixtureNames.length ? fixtureNames.join(", ") : fixturesSkipReason})`, () => {
  for (const name of fixtureNames) {
    const ref = JSON.parse(readFileSync(join(fixturesRoot, name, "reference.json"), "utf8"));

    it(`${name}: logits at every position match transformers fp32, DF11 bit-identical to BF16`, async () => {
      using bf16 = await loadCausalLM(join(fixturesRoot, name, "bf16"));
      using df11 = await loadCausalLM(join(fixturesRoot, name, "df11"));
      expect(df11.weights.kind).toBe("df11");
      const expected = await referenceLogits(name);
      const ours = bf16.forward(ref.input_ids, { allLogits: true });
      const diff = maxAbsDiff(ours, expected);
      console.log(`[${name}] max |logit − transformers fp32| over ${ours.length} logits: ${diff.toExponential(2)}`);
      expect(diff).toBeLessThan(LOGIT_TOLERANCE);
      const fromDf11 = df11.forward(ref.input_ids, { allLogits: true });
      expect(floatBitsEqual(fromDf11, ours)).toBe(true);
      expect((df11.weights as Df11WeightStore).decodes).toBeGreaterThan(0);
    });

    it(`${name}: greedy tokens equal transformers' greedy_fp32, from BF16 and DF11`, async () => {
      for (const variant of ["bf16", "df11"]) {
        using model = await loadCausalLM(join(fixturesRoot, name, variant));
        const tokens: number[] = [];
        for await (const t of generate(model, ref.input_ids, { maxTokens: ref.greedy_fp32.length, stopTokenIds: [] })) tokens.push(t.id);
        expect(tokens, variant).toEqual(ref.greedy_fp32);
      }
    });

    it(`${name}: the tolerance catches a wrong RoPE base and swapped heads`, async () => {
      const expected = await referenceLogits(name);
      const dir = await mkdtemp(join(tmpdir(), "df11-wrong-"));
      try {
        await cp(join(fixturesRoot, name, "bf16"), dir, { recursive: true });
        const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
        config.rope_parameters = { ...config.rope_parameters, rope_theta: config.rope_parameters.rope_theta * 2 };
        await writeFile(join(dir, "config.json"), JSON.stringify(config));
        using wrongRope = await loadCausalLM(dir);
        expect(maxAbsDiff(wrongRope.forward(ref.input_ids, { allLogits: true }), expected)).toBeGreaterThan(LOGIT_TOLERANCE * 10);
        // Two query heads swapped in q_proj: attention pairs each with the wrong keys.
        using right = await loadCausalLM(join(fixturesRoot, name, "bf16"));
        const headRows = right.config.headDim * right.config.hiddenSize;
        const store = right.weights;
        const swapped: WeightStore = {
          kind: store.kind,
          residentBytes: store.residentBytes,
          has: (n) => store.has(n),
          rows: (n, c, f, k) => store.rows(n, c, f, k),
          vector: (n) => store.vector(n),
          matrix: (n, r, c) => {
            const m = store.matrix(n, r, c);
            if (!n.endsWith("layers.0.self_attn.q_proj.weight")) return m;
            const data = m.data.slice(m.offset, m.offset + r * c);
            data.set(m.data.subarray(m.offset + headRows, m.offset + 2 * headRows), 0);
            data.set(m.data.subarray(m.offset, m.offset + headRows), headRows);
            return { data, offset: 0, rows: r, cols: c };
          },
        };
        const wrongHeads = new CausalLM(right.config, swapped);
        expect(maxAbsDiff(wrongHeads.forward(ref.input_ids, { allLogits: true }), expected)).toBeGreaterThan(LOGIT_TOLERANCE * 10);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  }
});

describe("config parsing", () => {
  const base = { model_type: "llama", hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 2, num_hidden_layers: 2, vocab_size: 100, intermediate_size: 128 };
  it("reads both RoPE styles, llama3 and linear scaling", () => {
    expect(parseTextModelConfig({ ...base, rope_theta: 5e5 }).rope[0]).toMatchObject({ type: "default", theta: 5e5 });
    const l3 = parseTextModelConfig({ ...base, rope_theta: 5e5, rope_scaling: { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 } });
    expect(l3.rope[0]).toMatchObject({ type: "llama3", factor: 8 });
    expect(parseTextModelConfig({ ...base, rope_parameters: { rope_type: "linear", factor: 2, rope_theta: 1e4 } }).rope[1]).toMatchObject({ type: "linear", factor: 2 });
    // Qwen3Config's head_dim defaults to 128, not hidden_size / heads (transformers 5).
    expect(parseTextModelConfig({ ...base, model_type: "qwen3" })).toMatchObject({ qkNorm: true, headDim: 128 });
    expect(parseTextModelConfig({ ...base, model_type: "qwen3", head_dim: 16 })).toMatchObject({ headDim: 16 });
    expect(parseTextModelConfig({ ...base, model_type: "qwen2" })).toMatchObject({ attentionBias: true, outputProjectionBias: false });
  });
  it("names the offending key", () => {
    expect(() => parseTextModelConfig({ ...base, model_type: "bert" })).toThrowError(/model_type/);
    expect(() => parseTextModelConfig({ ...base, hidden_size: undefined })).toThrowError(/hidden_size: missing/);
    expect(() => parseTextModelConfig({ ...base, num_attention_heads: -4 })).toThrowError(/num_attention_heads/);
    expect(() => parseTextModelConfig({ ...base, rope_scaling: { rope_type: "yarn", factor: 4 } })).toThrowError(/rope_scaling.rope_type: RoPE type "yarn"/);
    expect(() => parseTextModelConfig({ ...base, hidden_act: "relu" })).toThrowError(ConfigError);
    // Wrong types are named, not read as "absent" (which would run with defaults and give other tokens).
    expect(() => parseTextModelConfig({ ...base, rope_parameters: 5 })).toThrowError(/config\.json: rope_parameters: expected an object, got 5/);
    expect(() => parseTextModelConfig({ ...base, eos_token_id: "2" })).toThrowError(/config\.json: eos_token_id: expected a token id or a list of them, got "2"/);
    expect(() => parseTextModelConfig({ ...base, eos_token_id: [2, -1] })).toThrowError(/eos_token_id/);
    expect(() => parseTextModelConfig({ ...base, tie_word_embeddings: "yes" })).toThrowError(/config\.json: tie_word_embeddings: expected true or false, got "yes"/);
    expect(parseTextModelConfig({ ...base, eos_token_id: [2, 7], rope_parameters: null, tie_word_embeddings: null })).toMatchObject({ eosTokenIds: [2, 7], tieWordEmbeddings: false });
  });
});

describe("bad checkpoints", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "df11-bad-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  it.skipIf(fixtureNames.length === 0)("a config that does not fit the weights names the tensor", async () => {
    const name = fixtureNames[0];
    await cp(join(fixturesRoot, name, "bf16"), join(dir, "m"), { recursive: true });
    const config = JSON.parse(readFileSync(join(dir, "m", "config.json"), "utf8"));
    await writeFile(join(dir, "m", "config.json"), JSON.stringify({ ...config, intermediate_size: config.intermediate_size + 1 }));
    using model = await loadCausalLM(join(dir, "m"));
    expect(() => model.forward([1, 2])).toThrowError(/model\.layers\.0\.mlp\.gate_proj\.weight: shape/);
    await writeFile(join(dir, "m", "config.json"), JSON.stringify({ ...config, num_hidden_layers: config.num_hidden_layers + 1 }));
    await expect(loadCausalLM(join(dir, "m"))).rejects.toThrowError(new RegExp(`model\\.layers\\.${config.num_hidden_layers}\\..*missing`));
  });
  it("rejects out-of-vocabulary ids", () => {
    const config = parseTextModelConfig({ model_type: "llama", hidden_size: 8, num_attention_heads: 2, num_hidden_layers: 1, vocab_size: 10, intermediate_size: 8 });
    const store = { kind: "bf16" as const, residentBytes: 0, has: () => true, matrix: () => { throw new Error("unused"); }, rows: () => new Uint16Array(8), vector: () => new Float32Array(8) };
    const model = new CausalLM(config, store);
    expect(() => model.forward([10])).toThrowError(/token id 10 is outside/);
  });
});

describe("CausalLM.truncate", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "df11-truncate-"));
    await writeSyntheticModel(dir, { vocab: 64, hidden: 32, intermediate: 48, layers: 2, heads: 4, kvHeads: 2 });
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  it("continues a sequence as if the dropped positions had never been there, bit for bit; rejects lengths it does not hold", async () => {
    using model = await loadCausalLM(dir);
    const prompt = [3, 14, 15, 9, 26];
    const first = model.forward(prompt);
    const continued = [5, 35, 8].map((t) => model.forward([t]));
    expect(model.length()).toBe(8);
    // Drop the last two positions and step a different token there: as a sequence that never held them.
    model.truncate(0, 6);
    expect(model.length()).toBe(6);
    const other = model.forward([60]);
    using fresh = await loadCausalLM(dir);
    fresh.forward(prompt);
    fresh.forward([5]);
    expect(floatBitsEqual(other, fresh.forward([60]))).toBe(true);
    expect(floatBitsEqual(other, continued[1])).toBe(false);
    // Back to the prompt: the same continuation's logits as the first time.
    model.truncate(0, prompt.length);
    expect([5, 35, 8].map((t) => model.forward([t])).every((l, i) => floatBitsEqual(l, continued[i]))).toBe(true);
    // To 0: the sequence starts anew.
    model.truncate(0, 0);
    expect(model.length()).toBe(0);
    expect(floatBitsEqual(model.forward(prompt), first)).toBe(true);
    expect(() => model.truncate(0, 6)).toThrowError(RangeError);
    expect(() => model.truncate(0, 2.5)).toThrowError(/cannot truncate sequence 0 to 2.5 positions: it holds 5/);
    expect(() => model.truncate(1, 1)).toThrowError(/holds 0/);
  });

  it("refuses to run after dispose() (a CPU model's caches are freed then)", async () => {
    const model = await loadCausalLM(dir);
    model.forward([3, 14, 15]);
    model.dispose();
    expect(() => model.forward([9])).toThrowError(/the model was disposed/);
    expect(() => model.step([{ slot: 0, tokens: [9] }])).toThrowError(/the model was disposed/);
  });

  it("refuses slots that are not KV-cache slots (2^32 and 0.5 would land in slot 0's cache) and a slot twice in one step", async () => {
    using model = await loadCausalLM(dir);
    const prompt = [3, 14, 15, 9, 26];
    model.forward(prompt);
    const next = model.forward([5]);
    model.truncate(0, prompt.length);
    for (const slot of [2 ** 32, 0.5, -1, Number.NaN]) {
      expect(() => model.forward([60], { slot })).toThrowError(new RegExp(`slot ${slot} is not a KV-cache slot`));
      expect(() => model.step([{ slot, tokens: [60] }])).toThrowError(RangeError);
      expect(() => model.truncate(slot, 0)).toThrowError(RangeError);
    }
    expect(() => model.step([{ slot: 0, tokens: [5] }, { slot: 0, tokens: [6] }])).toThrowError(/slot 0 appears twice in one step/);
    // Nothing was written: slot 0 continues as before.
    expect(model.length()).toBe(prompt.length);
    expect(floatBitsEqual(model.forward([5]), next)).toBe(true);
  });
});
