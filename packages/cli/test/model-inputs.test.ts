// Model directories as they arrive in the wild: stray files beside the weights (a macOS `._` AppleDouble
// companion, a stale shard, Mistral's consolidated.safetensors), and models with nothing DFloat11 can
// compress (FP16, FP32).
import { existsSync, readdirSync } from "node:fs";
import { cp, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SafetensorsCollection, writeSafetensors, type TensorToWrite } from "@df11/hub-loader";
import { loadCausalLM, writeSyntheticModel } from "@df11/models";
import { appleDouble } from "../../../test-support/stray-files.js";
import { df11, SMALL } from "./helpers.js";

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "df11-inputs-"));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const occurrences = (text: string, what: string) => text.split(what).length - 1;
const failureOf = (p: Promise<unknown>) => p.then(() => undefined, (e: { code: number; stdout: string; stderr: string }) => e);

describe("stray files beside a model", () => {
  it("a macOS ._model.safetensors: compress, verify, inspect, decompress, generate and seal all work, naming it once", async () => {
    const bf16 = join(work, "apple-bf16");
    await writeSyntheticModel(bf16, SMALL, { seed: 7, tokenizer: true });
    await writeFile(join(bf16, "._model.safetensors"), appleDouble());
    await writeFile(join(bf16, "._config.json"), appleDouble());
    const out = join(work, "apple-df11");
    const compressed = await df11("compress", bf16, "-o", out);
    expect(compressed.stdout).toMatch(/Compressed 4 modules/);
    expect(occurrences(compressed.stderr, "ignoring ._model.safetensors")).toBe(1);
    expect(readdirSync(out).filter((f) => f.startsWith("."))).toEqual([]);

    await writeFile(join(out, "._model.safetensors"), appleDouble()); // the DF11 model went through a Mac too
    const verified = await df11("verify", out, "--against", bf16);
    expect(verified.stdout).toMatch(/OK: 4 modules.*bit-identical/);
    expect(occurrences(verified.stderr, `${out}: ignoring ._model.safetensors`)).toBe(1);
    expect(occurrences(verified.stderr, `${bf16}: ignoring ._model.safetensors`)).toBe(1);

    expect(JSON.parse((await df11("inspect", out, "--json")).stdout).modules).toHaveLength(4);
    const back = join(work, "apple-back");
    await df11("decompress", out, "-o", back);
    expect(readdirSync(back).filter((f) => f.startsWith("."))).toEqual([]);
    const fromBf16 = JSON.parse((await df11("generate", bf16, "--prompt", "the water is", "-n", "6", "--device", "cpu", "--json")).stdout);
    const fromDf11 = JSON.parse((await df11("generate", out, "--prompt", "the water is", "-n", "6", "--device", "cpu", "--json")).stdout);
    expect(fromDf11.tokenIds).toEqual(fromBf16.tokenIds);
    const sealed = await df11("seal", out);
    expect(occurrences(sealed.stderr, "ignoring ._model.safetensors")).toBe(1);
    expect(readdirSync(out).sort()).toContain("._model.safetensors"); // left as it was
    using model = await loadCausalLM(out);
    expect(model.weights.kind).toBe("df11");
  });

  it("indexed shards: a stale extra shard and Mistral's consolidated.safetensors (same tensor names) are ignored", async () => {
    const bf16 = join(work, "apple-bf16");
    const sharded = join(work, "sharded-df11");
    await df11("compress", bf16, "-o", sharded, "--max-shard-size", "100KB");
    const shards = readdirSync(sharded).filter((f) => f.endsWith(".safetensors"));
    expect(shards.length).toBeGreaterThan(1);
    // The whole model once more in one file, as Mistral's repos ship it beside the HF shards.
    await using parts = await SafetensorsCollection.openDirectory(sharded);
    const all: TensorToWrite[] = [];
    for (const n of parts.names()) all.push({ name: n, dtype: parts.info(n).dtype, shape: parts.info(n).shape, data: await parts.read(n) });
    await writeSafetensors(join(sharded, "consolidated.safetensors"), all);
    await cp(join(sharded, shards[0]), join(sharded, `model-00009-of-00009.safetensors`));
    const verified = await df11("verify", sharded, "--against", bf16);
    expect(verified.stdout).toMatch(/OK: 4 modules/);
    expect(verified.stderr).toMatch(/ignoring consolidated\.safetensors, model-00009-of-00009\.safetensors \(the model is the shards model\.safetensors\.index\.json names\)/);
    const generated = JSON.parse((await df11("generate", sharded, "--input-ids", "1,2,3", "-n", "3", "--device", "cpu", "--json")).stdout);
    expect(generated.tokenIds).toHaveLength(3);
  });
});

/** A diffusers-style transformer (config with `_class_name`) whose matrices and norms are `dtype`. */
async function writeTransformer(dir: string, matrices: "F16" | "F32" | "BF16", vectors: "F16" | "F32" | "BF16"): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "config.json"), JSON.stringify({ _class_name: "SD3Transformer2DModel", _diffusers_version: "0.33.0", num_layers: 2, attention_head_dim: 16 }));
  const size = { F16: 2, BF16: 2, F32: 4 };
  let seed = 1;
  const bytes = (n: number) => Uint8Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0x3f); // small, finite values
  const tensors: TensorToWrite[] = [];
  for (let l = 0; l < 2; l++) {
    for (const m of ["attn.to_q", "attn.to_k", "attn.to_v", "ff.net.0.proj"]) {
      tensors.push({ name: `transformer_blocks.${l}.${m}.weight`, dtype: matrices, shape: [64, 64], data: bytes(64 * 64 * size[matrices]) });
    }
    tensors.push({ name: `transformer_blocks.${l}.norm1.linear.bias`, dtype: vectors, shape: [64], data: bytes(64 * size[vectors]) });
  }
  await writeSafetensors(join(dir, "diffusion_pytorch_model.safetensors"), tensors, { format: "pt" });
}

describe("models with nothing DFloat11 can compress", () => {
  for (const dtype of ["F16", "F32"] as const) {
    it(`an ${dtype} diffusers-style transformer: compress refuses (exit 1), names the dtypes and what to do, writes nothing`, async () => {
      const model = join(work, `dit-${dtype}`);
      await writeTransformer(model, dtype, dtype);
      const out = join(work, `dit-${dtype}-df11`);
      const failed = await failureOf(df11("compress", model, "-o", out));
      expect(failed).toMatchObject({ code: 1 });
      expect(failed!.stderr).toMatch(new RegExp(`nothing written: DFloat11 compresses BF16 weights \\(losslessly\\), and it has no BF16 weight matrix to compress\\. Its matrices: ${dtype}: 8 tensors`));
      expect(failed!.stderr).toMatch(/Use the model's BF16 release/);
      expect(existsSync(out)).toBe(false);
      expect(readdirSync(work).filter((f) => f.includes(".tmp-"))).toEqual([]);

      const inspected = JSON.parse((await df11("inspect", model, "--json")).stdout);
      expect(inspected).toMatchObject({ format: "plain", version: null, modules: [], uncompressedTensors: 10 });
      expect(inspected.uncompressedDtypes).toEqual([{ dtype, tensors: 10, bytes: (8 * 64 * 64 + 2 * 64) * (dtype === "F16" ? 2 : 4) }]);
      const text = (await df11("inspect", model)).stdout;
      expect(text).toMatch(new RegExp(`Stored as ${dtype}: 10 tensors`));
      expect(text).toMatch(/No BF16 tensors: DFloat11 is lossless for BF16 weights only/);
      expect(text).not.toMatch(/as BF16/);
    });
  }

  it("a known architecture stored in FP16 is refused the same way, naming the first FP16 matrix", async () => {
    const bf16 = join(work, "llama-bf16");
    await writeSyntheticModel(bf16, SMALL, { seed: 8 });
    const fp16 = join(work, "llama-fp16");
    await mkdir(fp16, { recursive: true });
    await cp(join(bf16, "config.json"), join(fp16, "config.json"));
    await using w = await SafetensorsCollection.openDirectory(bf16);
    const tensors: TensorToWrite[] = [];
    for (const n of w.names()) tensors.push({ name: n, dtype: "F16", shape: w.info(n).shape, data: await w.read(n) });
    await writeSafetensors(join(fp16, "model.safetensors"), tensors);
    const failed = await failureOf(df11("compress", fp16, "-o", join(work, "llama-fp16-df11")));
    expect(failed).toMatchObject({ code: 1 });
    expect(failed!.stderr).toMatch(/nothing written: .* and lm_head\.weight is F16\. Its matrices: F16: 16 tensors/);
    expect(existsSync(join(work, "llama-fp16-df11"))).toBe(false);
  });

  it("any architecture with BF16 matrices still compresses; inspect then names the real dtypes of what stays uncompressed", async () => {
    const model = join(work, "dit-bf16");
    await writeTransformer(model, "BF16", "F32");
    const out = join(work, "dit-bf16-df11");
    const { stdout } = await df11("compress", model, "-o", out);
    expect(stdout).toMatch(/Compressed 8 modules \(generic\)/);
    await df11("verify", out, "--against", model);
    const inspected = JSON.parse((await df11("inspect", out, "--json")).stdout);
    expect(inspected).toMatchObject({ format: "df11", version: "0.5.0" });
    expect(inspected.modules).toHaveLength(8);
    expect(inspected.uncompressedDtypes).toEqual([{ dtype: "F32", tensors: 2, bytes: 2 * 64 * 4 }]);
    expect((await df11("inspect", out)).stdout).toMatch(/2 uncompressed tensors \(512 B; F32: 2 tensors \(512 B\)\)/);
  });
});
