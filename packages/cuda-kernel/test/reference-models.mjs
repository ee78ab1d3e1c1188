// The models the GPU tests check (test-support/reference-models and the official fixtures in
// ../shared/fixtures), their transformers references, and the checks shared by the test files.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { SafetensorsFile } from "../../hub-loader/dist/index.js";

const here = dirname(fileURLToPath(import.meta.url));
export const repo = resolve(here, "..", "..", "..");
export const fixturesRoot = resolve(process.env.DF11_FIXTURES ?? join(repo, "..", "shared", "fixtures"));

/**
 * Tolerance on logits vs transformers float32, as relative L2 error over all positions. The GPU runs
 * BF16 weights with float32 activations and accumulation, but prefill multiplies on the tensor cores
 * with activations rounded to BF16 (relative rounding 2^-9 ≈ 2e-3 per operand) and the KV cache is
 * BF16: through two layers that left 0.9e-3…6.8e-3 on the H100 (largest: gemma2's soft-capped prefill).
 * Broken kernels (RoPE turning the wrong way, attention without its 1/√d scale) land above it (tested).
 */
export const REL_TOLERANCE = 1e-2;

/** Every model to check: [name, bf16 dir, df11 dir or undefined (compressed here), reference dir]. */
export function models() {
  const list = [];
  const refRoot = join(repo, "test-support", "reference-models");
  for (const name of readdirSync(refRoot).sort()) list.push({ name, bf16: join(refRoot, name, "bf16"), ref: join(refRoot, name) });
  if (existsSync(fixturesRoot)) {
    for (const name of readdirSync(fixturesRoot).sort()) {
      if (existsSync(join(fixturesRoot, name, "df11", "config.json"))) list.push({ name, bf16: join(fixturesRoot, name, "bf16"), df11: join(fixturesRoot, name, "df11"), ref: join(fixturesRoot, name) });
    }
  } else console.log(`# official fixtures not found at ${fixturesRoot}: only the reference models run`);
  return list;
}

export async function referenceOf(dir) {
  const ref = JSON.parse(readFileSync(join(dir, "reference.json"), "utf8"));
  const f = await SafetensorsFile.open(join(dir, "reference_logits.safetensors"));
  const raw = await f.read("logits_fp32");
  await f.close();
  return { ...ref, logits: new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4) };
}

export const sameBits = (a, b) => a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/** Greedy tokens; where they leave the reference, the two best logits must be within the tolerance (a near tie). */
export async function checkGreedy(model, ref, label) {
  const tokens = [];
  const margins = [];
  model.reset();
  let logits = model.forward(ref.input_ids);
  for (let i = 0; i < ref.greedy_fp32.length; i++) {
    const sorted = [...logits].map((v, t) => [v, t]).sort((a, b) => b[0] - a[0]);
    tokens.push(sorted[0][1]);
    margins.push(sorted[0][0] - sorted[1][0]);
    if (tokens[i] !== ref.greedy_fp32[i]) {
      const scale = Math.max(...logits.map(Math.abs));
      assert.ok(margins[i] < REL_TOLERANCE * scale, `${label}: token ${i} is ${tokens[i]}, transformers chose ${ref.greedy_fp32[i]}, with a top-two margin ${margins[i]} (not a near tie)`);
      console.log(`# ${label}: greedy tokens agree for ${i} steps, then a near tie (margin ${margins[i].toExponential(2)})`);
      return;
    }
    logits = model.forward([tokens[i]]);
  }
  console.log(`# ${label}: all ${tokens.length} greedy tokens equal transformers'`);
}


/** A model's logits at every position of `ids`: by one prefill step, then by one-token steps (graph replays). */
export function logitsBothWays(model, ids) {
  const prefill = model.forward(ids, { allLogits: true });
  model.reset();
  const vocab = model.config.vocabSize;
  const stepwise = new Float32Array(ids.length * vocab);
  ids.forEach((id, i) => stepwise.set(model.forward([id]), i * vocab));
  return { prefill, stepwise };
}
