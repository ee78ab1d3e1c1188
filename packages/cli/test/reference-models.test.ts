// Architectures beyond the official fixtures (mistral with a sliding window, qwen2 with biases, qwen3 with
// tied embeddings, gemma2 with soft-capping and sandwich norms, gemma3 with q/k norms and per-layer RoPE,
// gemma-3's multimodal checkpoint with a sparse text_config, phi3 with fused projections), checked
// against transformers' fp32 outputs. The tiny models and their references
// were made by tools/make_reference_models.py and live in test-support/reference-models.
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SafetensorsFile } from "@df11/hub-loader";
import { generate, loadCausalLM } from "@df11/models";
import { repoRoot } from "../../../test-support/fixtures.js";
import { compressModel } from "../src/index.js";

const root = join(repoRoot, "test-support", "reference-models");
const names = readdirSync(root).sort();

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "df11-refmodels-"));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe("forward pass vs transformers fp32 on every supported family", () => {
  it("covers mistral, qwen2, qwen3 (tied), gemma2, gemma3 (text, and multimodal in the Hub's layout) and phi3", () => {
    expect(names).toEqual(["gemma2-tiny", "gemma3-tiny", "gemma3-vlm-tiny", "mistral-tiny", "phi3-tiny", "qwen2-tiny", "qwen3-tied-tiny"]);
  });
  for (const name of names) {
    it(`${name}: logits and greedy tokens match; its DF11 compression gives bit-identical logits`, async () => {
      const dir = join(root, name, "bf16");
      const ref = JSON.parse(readFileSync(join(root, name, "reference.json"), "utf8"));
      await using f = await SafetensorsFile.open(join(root, name, "reference_logits.safetensors"));
      const raw = await f.read("logits_fp32");
      const expected = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
      using model = await loadCausalLM(dir);
      const logits = model.forward(ref.input_ids, { allLogits: true });
      const diff = logits.reduce((m, v, i) => Math.max(m, Math.abs(v - expected[i])), 0);
      console.log(`[${name}] max |logit − transformers fp32|: ${diff.toExponential(2)}`);
      expect(diff).toBeLessThan(1e-5);
      const tokens: number[] = [];
      for await (const t of generate(model, ref.input_ids, { maxTokens: 16, stopTokenIds: [] })) tokens.push(t.id);
      expect(tokens).toEqual(ref.greedy_fp32);

      const out = join(work, name);
      await compressModel(dir, out);
      using df11 = await loadCausalLM(out);
      const fromDf11 = df11.forward(ref.input_ids, { allLogits: true });
      expect(Buffer.from(fromDf11.buffer).equals(Buffer.from(logits.buffer))).toBe(true);
    });
  }
});
