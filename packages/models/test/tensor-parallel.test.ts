// The tensor-parallel plan is exact: each rank's slices of a reference model's real weights, run in
// float64, give back the unsplit results — column-parallel outputs (q/k/v heads, attention per head,
// gate/up features, lm_head vocabulary shards) equal bit for bit, row-parallel partial sums (o_proj,
// down_proj) summed over the ranks equal the unsplit product to float64 rounding. Covers every reference
// architecture (fused phi3 projections, qwen2 biases, tied gemma embeddings), KV heads split (W = 2) and
// replicated (W = 4 with 2 KV heads), and a vocabulary that does not divide (W = 3).
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { mulberry32 } from "@df11/codec";
import { readModelConfig, SafetensorsCollection } from "@df11/hub-loader";
import { fixtureNames, fixturesRoot, repoRoot } from "../../../test-support/fixtures.js";
import {
  assembleLogits,
  combineArgmax,
  extractSlice,
  parseTextModelConfig,
  sliceElementRanges,
  tensorParallelPlan,
  TensorParallelError,
  type TensorParallelPlan,
  type TextModelConfig,
} from "../src/index.js";

type Weights = (name: string) => Float64Array | undefined;

/** out[r, n] = Σ_k x[r, k] · w[n, k] (+ bias[n]), k ascending (the same order split or not). */
function matmulT(x: Float64Array, rows: number, K: number, w: Float64Array, N: number, bias?: Float64Array): Float64Array {
  expect(w.length).toBe(N * K);
  const out = new Float64Array(rows * N);
  for (let r = 0; r < rows; r++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[r * K + k] * w[n * K + k];
      out[r * N + n] = s + (bias ? bias[n] : 0);
    }
  }
  return out;
}

/** Causal grouped-query attention (query head h reads KV head ⌊h / (heads / kvHeads)⌋); [T, heads × hd]. */
function attention(q: Float64Array, k: Float64Array, v: Float64Array, T: number, heads: number, kvHeads: number, hd: number): Float64Array {
  const out = new Float64Array(T * heads * hd);
  const group = heads / kvHeads;
  for (let h = 0; h < heads; h++) {
    const kv = Math.floor(h / group);
    for (let t = 0; t < T; t++) {
      const scores = Array.from({ length: t + 1 }, (_, j) => {
        let s = 0;
        for (let d = 0; d < hd; d++) s += q[(t * heads + h) * hd + d] * k[(j * kvHeads + kv) * hd + d];
        return s / Math.sqrt(hd);
      });
      const m = Math.max(...scores);
      const e = scores.map((s) => Math.exp(s - m));
      const z = e.reduce((a, b) => a + b, 0);
      for (let d = 0; d < hd; d++) {
        let s = 0;
        for (let j = 0; j <= t; j++) s += (e[j] / z) * v[(j * kvHeads + kv) * hd + d];
        out[(t * heads + h) * hd + d] = s;
      }
    }
  }
  return out;
}

const act = (c: TextModelConfig, g: number) => (c.activation === "silu" ? g / (1 + Math.exp(-g)) : 0.5 * g * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (g + 0.044715 * g ** 3))));

/** Columns [c0, c1) of a [rows, cols] matrix. */
function columns(m: Float64Array, rows: number, cols: number, c0: number, c1: number): Float64Array {
  const out = new Float64Array(rows * (c1 - c0));
  for (let r = 0; r < rows; r++) out.set(m.subarray(r * cols + c0, r * cols + c1), r * (c1 - c0));
  return out;
}

/** Side by side: [rows, a] | [rows, b] | … → [rows, a + b + …]. */
function concatColumns(parts: Float64Array[], rows: number): Float64Array {
  const widths = parts.map((p) => p.length / rows);
  const W = widths.reduce((a, b) => a + b, 0);
  const out = new Float64Array(rows * W);
  for (let r = 0; r < rows; r++) {
    let at = 0;
    parts.forEach((p, i) => {
      out.set(p.subarray(r * widths[i], (r + 1) * widths[i]), r * W + at);
      at += widths[i];
    });
  }
  return out;
}

const maxRelError = (got: Float64Array, expected: Float64Array) => {
  const scale = expected.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  return got.reduce((m, v, i) => Math.max(m, Math.abs(v - expected[i])), 0) / scale;
};

const random = (n: number, seed: number) => {
  const rand = mulberry32(seed);
  return Float64Array.from({ length: n }, () => rand() * 2 - 1);
};

/** q, k, v of a layer from its own weights (fused or not), [T, dims] each. */
function qkvOf(c: TextModelConfig, x: Float64Array, T: number, w: Weights, p: string, heads: number, kvHeads: number, pick: (name: string, full: Float64Array) => Float64Array) {
  const qDim = heads * c.headDim;
  const kvDim = kvHeads * c.headDim;
  const get = (name: string) => pick(name, w(name)!);
  const opt = (name: string) => (w(name) ? get(name) : undefined);
  if (c.fusedProjections) {
    const qkv = matmulT(x, T, c.hiddenSize, get(`${p}.self_attn.qkv_proj.weight`), qDim + 2 * kvDim);
    return { q: columns(qkv, T, qDim + 2 * kvDim, 0, qDim), k: columns(qkv, T, qDim + 2 * kvDim, qDim, qDim + kvDim), v: columns(qkv, T, qDim + 2 * kvDim, qDim + kvDim, qDim + 2 * kvDim) };
  }
  const proj = (n: string, N: number) => matmulT(x, T, c.hiddenSize, get(`${p}.self_attn.${n}.weight`), N, opt(`${p}.self_attn.${n}.bias`));
  return { q: proj("q_proj", qDim), k: proj("k_proj", kvDim), v: proj("v_proj", kvDim) };
}

function gateUpOf(c: TextModelConfig, x: Float64Array, T: number, w: Weights, p: string, I: number, pick: (name: string, full: Float64Array) => Float64Array) {
  if (c.fusedProjections) {
    const gu = matmulT(x, T, c.hiddenSize, pick(`${p}.mlp.gate_up_proj.weight`, w(`${p}.mlp.gate_up_proj.weight`)!), 2 * I);
    return { gate: columns(gu, T, 2 * I, 0, I), up: columns(gu, T, 2 * I, I, 2 * I) };
  }
  const proj = (n: string) => matmulT(x, T, c.hiddenSize, pick(`${p}.mlp.${n}.weight`, w(`${p}.mlp.${n}.weight`)!), I);
  return { gate: proj("gate_proj"), up: proj("up_proj") };
}

/** Run layer 0's attention and MLP, and the lm_head, unsplit and per rank; check they agree. */
function checkPlan(c: TextModelConfig, W: number, w: Weights, label: string): TensorParallelPlan {
  const plan = tensorParallelPlan(c, W);
  const T = 5;
  const H = c.hiddenSize;
  const hd = c.headDim;
  const I = c.intermediateSize;
  const p = "model.layers.0";
  const x = random(T * H, 7);
  const whole = (_: string, full: Float64Array) => full;

  // attention block, unsplit
  const full = qkvOf(c, x, T, w, p, c.numHeads, c.numKvHeads, whole);
  const attn = attention(full.q, full.k, full.v, T, c.numHeads, c.numKvHeads, hd);
  const oFull = matmulT(attn, T, c.numHeads * hd, w(`${p}.self_attn.o_proj.weight`)!, H);
  // per rank: its heads and KV heads, its o_proj columns
  const oSum = new Float64Array(T * H);
  const attnParts: Float64Array[] = [];
  for (const rank of plan.ranks) {
    const pick = (name: string, m: Float64Array) => extractSlice(m, rank.slice(name));
    const local = qkvOf(c, x, T, w, p, rank.config.numHeads, rank.config.numKvHeads, pick);
    const [q0, q1] = rank.qHeads.map((h) => h * hd);
    const [k0, k1] = rank.kvHeads.map((h) => h * hd);
    expect(local.q, `${label} rank ${rank.rank}: q`).toEqual(columns(full.q, T, c.numHeads * hd, q0, q1));
    expect(local.k, `${label} rank ${rank.rank}: k`).toEqual(columns(full.k, T, c.numKvHeads * hd, k0, k1));
    expect(local.v, `${label} rank ${rank.rank}: v`).toEqual(columns(full.v, T, c.numKvHeads * hd, k0, k1));
    const localAttn = attention(local.q, local.k, local.v, T, rank.config.numHeads, rank.config.numKvHeads, hd);
    attnParts.push(localAttn);
    const o = rank.slice(`${p}.self_attn.o_proj.weight`);
    expect(o.split).toBe("columns");
    matmulT(localAttn, T, o.localShape[1], extractSlice(w(o.name)!, o), H).forEach((v, i) => (oSum[i] += v));
  }
  expect(concatColumns(attnParts, T), `${label}: attention heads concatenated over ranks`).toEqual(attn);
  expect(maxRelError(oSum, oFull), `${label}: o_proj partial sums`).toBeLessThan(1e-13);

  // MLP, unsplit and per rank
  const { gate, up } = gateUpOf(c, x, T, w, p, I, whole);
  const a = gate.map((g, i) => act(c, g) * up[i]);
  const downFull = matmulT(a, T, I, w(`${p}.mlp.down_proj.weight`)!, H);
  const downSum = new Float64Array(T * H);
  for (const rank of plan.ranks) {
    const pick = (name: string, m: Float64Array) => extractSlice(m, rank.slice(name));
    const local = gateUpOf(c, x, T, w, p, plan.intermediatePerRank, pick);
    const [i0, i1] = rank.intermediate;
    expect(local.gate, `${label} rank ${rank.rank}: gate`).toEqual(columns(gate, T, I, i0, i1));
    expect(local.up, `${label} rank ${rank.rank}: up`).toEqual(columns(up, T, I, i0, i1));
    const la = local.gate.map((g, i) => act(c, g) * local.up[i]);
    const d = rank.slice(`${p}.mlp.down_proj.weight`);
    matmulT(la, T, d.localShape[1], extractSlice(w(d.name)!, d), H).forEach((v, i) => (downSum[i] += v));
  }
  expect(maxRelError(downSum, downFull), `${label}: down_proj partial sums`).toBeLessThan(1e-13);

  // lm_head by vocabulary shards: concatenation exact, greedy from per-rank candidates, sampling from the gathered shards
  const rows = 3;
  const h = random(rows * H, 11);
  const lmName = c.tieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight";
  const logits = matmulT(h, rows, H, w(lmName)!, c.vocabSize);
  const gathered = new Float32Array(W * rows * plan.vocabShard).fill(NaN); // padding must be dropped
  const candidates: Array<Array<{ value: number; index: number }>> = Array.from({ length: rows }, () => []);
  for (const rank of plan.ranks) {
    expect(rank.lmHead.name).toBe(lmName);
    const local = matmulT(h, rows, H, extractSlice(w(lmName)!, rank.lmHead), rank.config.vocabSize);
    expect(local, `${label} rank ${rank.rank}: lm_head shard`).toEqual(columns(logits, rows, c.vocabSize, ...rank.vocab));
    for (let r = 0; r < rows; r++) {
      const row = local.subarray(r * rank.config.vocabSize, (r + 1) * rank.config.vocabSize);
      gathered.set(Float32Array.from(row), (rank.rank * rows + r) * plan.vocabShard);
      const best = row.indexOf(Math.max(...row));
      candidates[r].push({ value: row[best], index: rank.vocab[0] + best });
    }
  }
  expect(assembleLogits(plan, gathered, rows)).toEqual(Float32Array.from(logits));
  for (let r = 0; r < rows; r++) {
    const row = logits.subarray(r * c.vocabSize, (r + 1) * c.vocabSize);
    expect(combineArgmax(candidates[r]), `${label}: greedy token of row ${r}`).toBe(row.indexOf(Math.max(...row)));
  }

  // vocab-split embeddings: the holder's row plus zeros elsewhere is the row, exactly
  const vocabPlan = tensorParallelPlan(c, W, { embeddings: "vocab" });
  const table = w("model.embed_tokens.weight")!;
  for (const token of [0, c.vocabSize - 1, Math.floor(c.vocabSize / 2) + 1]) {
    const sum = new Float64Array(H);
    for (const rank of vocabPlan.ranks) {
      const s = rank.slice("model.embed_tokens.weight");
      const local = extractSlice(table, s);
      const [v0, v1] = s.rows[0];
      if (token >= v0 && token < v1) local.subarray((token - v0) * H, (token - v0 + 1) * H).forEach((v, i) => (sum[i] += v));
    }
    expect(sum).toEqual(table.subarray(token * H, (token + 1) * H));
  }
  expect(plan.ranks.every((r) => r.slice("model.embed_tokens.weight").split === "replicated")).toBe(true);
  return plan;
}

async function referenceWeights(dir: string): Promise<{ config: TextModelConfig; weights: Weights; close: () => Promise<void> }> {
  const config = parseTextModelConfig(await readModelConfig(dir));
  const st = await SafetensorsCollection.openDirectory(dir);
  const cache = new Map<string, Float64Array>();
  for (const n of st.names()) cache.set(n, Float64Array.from(await st.readFloat32(n)));
  return { config, weights: (n) => cache.get(n), close: () => st.close() };
}

const referenceDirs = [
  ...fixtureNames.map((n) => ({ name: n, dir: join(fixturesRoot, n, "bf16") })),
  ...["mistral-tiny", "qwen2-tiny", "gemma2-tiny", "gemma3-tiny", "phi3-tiny"].map((n) => ({ name: n, dir: join(repoRoot, "test-support", "reference-models", n, "bf16") })),
].filter((m) => existsSync(m.dir));

describe("tensor-parallel plan on the reference models' weights", () => {
  for (const { name, dir } of referenceDirs) {
    it(`${name}: W = 2 (KV heads split) and W = 4 (KV heads replicated) reproduce the unsplit layer and logits`, async () => {
      const m = await referenceWeights(dir);
      try {
        const two = checkPlan(m.config, 2, m.weights, `${name} W=2`);
        expect(two.kvReplicas).toBe(1);
        const four = checkPlan(m.config, 4, m.weights, `${name} W=4`);
        expect(four.kvReplicas).toBe(4 / m.config.numKvHeads);
        expect(four.ranks.map((r) => r.kvHeads[0])).toEqual([0, 0, 1, 1]);
        if (m.config.attentionBias) expect(two.ranks[1].slice("model.layers.0.self_attn.k_proj.bias").rows).toEqual([[m.config.headDim, 2 * m.config.headDim]]);
      } finally {
        await m.close();
      }
    });
  }
});

describe("tensor-parallel plan: shapes, fused projections, refusals", () => {
  const config = (extra: Record<string, unknown>) =>
    parseTextModelConfig({ model_type: "llama", hidden_size: 48, intermediate_size: 96, num_hidden_layers: 1, num_attention_heads: 6, num_key_value_heads: 3, vocab_size: 250, ...extra });

  it("a vocabulary that does not divide (250 over 3): shards of 84, 84, 82, padded for the gather; exact on random weights", () => {
    const c = config({});
    const shapes: Record<string, number[]> = {
      "model.embed_tokens.weight": [250, 48],
      "lm_head.weight": [250, 48],
      "model.layers.0.self_attn.q_proj.weight": [48, 48],
      "model.layers.0.self_attn.k_proj.weight": [24, 48],
      "model.layers.0.self_attn.v_proj.weight": [24, 48],
      "model.layers.0.self_attn.o_proj.weight": [48, 48],
      "model.layers.0.mlp.gate_proj.weight": [96, 48],
      "model.layers.0.mlp.up_proj.weight": [96, 48],
      "model.layers.0.mlp.down_proj.weight": [48, 96],
    };
    const tensors = new Map(Object.entries(shapes).map(([n, s], i) => [n, random(s[0] * s[1], 100 + i)]));
    const plan = checkPlan(c, 3, (n) => tensors.get(n), "synthetic W=3");
    expect(plan.vocabShard).toBe(84);
    expect(plan.ranks.map((r) => r.vocab)).toEqual([[0, 84], [84, 168], [168, 250]]);
  });

  it("phi3's fused qkv_proj and gate_up_proj: a rank's q, k, v rows (and gate, up rows) stacked in that order", () => {
    const c = parseTextModelConfig({ model_type: "phi3", hidden_size: 64, intermediate_size: 96, num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 256 });
    const r1 = tensorParallelPlan(c, 2).ranks[1];
    const qkv = r1.slice("model.layers.0.self_attn.qkv_proj.weight");
    expect(qkv.rows).toEqual([[32, 64], [64 + 16, 64 + 32], [96 + 16, 96 + 32]]);
    expect(qkv.localShape).toEqual([64, 64]);
    expect(r1.slice("model.layers.0.mlp.gate_up_proj.weight").rows).toEqual([[48, 96], [144, 192]]);
  });

  it("row-parallel slices are one element range per row; a row-parallel bias lives on rank 0 only; norms are replicated", () => {
    const c = config({ mlp_bias: true, num_key_value_heads: 2 });
    const plan = tensorParallelPlan(c, 2);
    const down = plan.ranks[1].slice("model.layers.0.mlp.down_proj.weight");
    expect(down).toMatchObject({ split: "columns", columns: [48, 96], localShape: [48, 48] });
    expect(sliceElementRanges(down).slice(0, 2)).toEqual([[48, 96], [96 + 48, 96 + 96]]);
    expect(sliceElementRanges(plan.ranks[0].slice("model.layers.0.mlp.gate_proj.weight"))).toEqual([[0, 48 * 48]]);
    expect(plan.ranks.map((r) => r.slice("model.layers.0.mlp.down_proj.bias").localShape)).toEqual([[48], [0]]);
    expect(plan.ranks[1].slice("model.layers.0.mlp.up_proj.bias").rows).toEqual([[48, 96]]);
    expect(plan.ranks[1].slice("model.layers.0.post_attention_layernorm.weight")).toMatchObject({ split: "replicated", localShape: [48] });
    expect(plan.ranks[1].config).toMatchObject({ numHeads: 3, numKvHeads: 1, intermediateSize: 48, vocabSize: 125, hiddenSize: 48 });
    expect(() => plan.ranks[0].slice("model.layers.0.block_sparse_moe.gate.weight")).toThrow(/no tensor-parallel rule/);
  });

  it("refuses a world size that does not divide heads, KV heads or the intermediate size, naming the field", () => {
    const fails = (c: TextModelConfig, W: number, key: string) => {
      const e = (() => {
        try {
          tensorParallelPlan(c, W);
        } catch (err) {
          return err;
        }
      })();
      expect(e).toBeInstanceOf(TensorParallelError);
      expect((e as TensorParallelError).key).toBe(key);
      expect((e as Error).message).toContain(`over ${W} GPUs`);
    };
    fails(config({}), 4, "num_attention_heads");
    fails(config({ num_attention_heads: 12, num_key_value_heads: 4, hidden_size: 48 }), 3, "num_key_value_heads");
    fails(config({ intermediate_size: 100 }), 3, "intermediate_size");
    expect(() => tensorParallelPlan(config({}), 0)).toThrow(RangeError);
    expect(tensorParallelPlan(config({}), 1).ranks[0].config.numHeads).toBe(6);
  });

  it("combineArgmax: the largest value, ties to the smallest index, NaN never wins", () => {
    expect(combineArgmax([{ value: 1, index: 7 }, { value: 1, index: 3 }, { value: 0.5, index: 1 }])).toBe(3);
    expect(combineArgmax([{ value: NaN, index: 0 }, { value: -Infinity, index: 9 }])).toBe(9);
  });
});

describe("GPU options are checked before any device is chosen (no quiet CPU run)", () => {
  it("devices: empty, negative, fractional, repeated, or with device cpu; maxGpuMemory not positive", async () => {
    const { checkGpuOptions, OptionError } = await import("../src/index.js");
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ devices: [] }, /^devices \(--devices\): give at least one GPU index/],
      [{ devices: [0, -1] }, /-1 is not a GPU index/],
      [{ devices: [1.5] }, /1\.5 is not a GPU index/],
      [{ devices: [0, 0] }, /0,0 lists a GPU twice/],
      [{ devices: [0, 1], device: "cpu" }, /names GPUs; it does not apply to device cpu/],
      [{ maxGpuMemory: 0 }, /^maxGpuMemory \(--max-gpu-memory\): must be a positive number of bytes, got 0/],
      [{ maxGpuMemory: -5e9 }, /got -5000000000/],
    ];
    for (const [options, message] of bad) {
      expect(() => checkGpuOptions(options as never), JSON.stringify(options)).toThrow(OptionError);
      expect(() => checkGpuOptions(options as never)).toThrow(message);
    }
    expect(() => checkGpuOptions({ devices: [0], maxGpuMemory: 12e9 })).not.toThrow(); // several devices with it: gpu-options.test.ts
  });
  it("loadCausalLM with devices and no usable GPU says so instead of running on the CPU", async () => {
    const { loadCausalLM } = await import("../src/index.js");
    const dir = join(repoRoot, "test-support", "reference-models", "qwen2-tiny", "bf16");
    await expect(loadCausalLM(dir, { devices: [0, 1] })).rejects.toThrow(/^devices 0,1: /);
  });
});
