// What tensor parallelism refuses before it touches a GPU or NCCL (runs on any machine); the split
// itself runs in tensor-parallel.test.mjs on GPU hosts.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { OptionError, TensorParallelError, writeSyntheticModel } from "@df11/models";
import { repoRoot } from "../../../test-support/fixtures.js";
import { TensorParallelBackend } from "../src/backend/tensor-parallel-backend.js";

const work = mkdtempSync(join(tmpdir(), "df11-tp-load-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const qwen2 = join(repoRoot, "test-support", "reference-models", "qwen2-tiny", "bf16");

describe("TensorParallelBackend.load refuses early, naming the field", () => {
  it("heads that do not divide over the GPUs", async () => {
    const e = await TensorParallelBackend.load(qwen2, { devices: [0, 1, 2] }).catch((x) => x);
    expect(e).toBeInstanceOf(TensorParallelError);
    expect(e.message).toMatch(/num_attention_heads.*4 attention heads do not divide over 3 GPUs/);
  });
  it("a vocabulary that does not divide (lm_head is split by vocabulary)", async () => {
    const dir = join(work, "odd-vocab");
    await writeSyntheticModel(dir, { vocab: 257, hidden: 64, intermediate: 128, layers: 1, heads: 4, kvHeads: 2 }, { seed: 1 });
    const e = await TensorParallelBackend.load(dir, { devices: [0, 1] }).catch((x) => x);
    expect(e).toBeInstanceOf(TensorParallelError);
    expect(e.message).toMatch(/vocab_size.*257 vocabulary rows do not divide over 2 GPUs/);
  });
  it("the huffman layout (modules stay whole) and an empty device list", async () => {
    const e = await TensorParallelBackend.load(qwen2, { devices: [0, 1], gpuWeights: "huffman" }).catch((x) => x);
    expect(e).toBeInstanceOf(OptionError);
    expect(e.message).toMatch(/^gpuWeights \(--gpu-weights\): huffman keeps DF11 modules whole/);
    await expect(TensorParallelBackend.load(qwen2, { devices: [] })).rejects.toThrow(/devices is empty/);
  });
});
