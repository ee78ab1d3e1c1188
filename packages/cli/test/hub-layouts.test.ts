// Every layout the DFloat11 Hub releases use, as tiny twins of reference models (test/layout-twins.ts):
// the v0.2.0 one-file-per-module layout, the pattern_dicts as shipped (plain and escaped dots, a tied BF16
// embedding without lm_head, phi3's fused projections), gemma-3's multimodal checkpoint, and the pickled
// 0.1.0 format. For each: `df11 generate` gives transformers' greedy tokens on the BF16 original, the
// logits match it, and inspect, verify --against and decompress work.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SafetensorsCollection, SafetensorsFile } from "@df11/hub-loader";
import { loadCausalLM, UnsupportedDfloat11VersionError, type PatternDict } from "@df11/models";
import { repoRoot } from "../../../test-support/fixtures.js";
import { df11 } from "./helpers.js";
import { L7, PHI3_FUSED, writePerModuleTwin } from "./layout-twins.js";

const refRoot = join(repoRoot, "test-support", "reference-models");

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "df11-layouts-"));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

interface Twin {
  readonly title: string;
  readonly model: string;
  readonly patternDict: PatternDict;
  /** Compressed modules the twin holds. */
  readonly modules: number;
  /** Files of the twin's layout. */
  readonly files: readonly string[];
  /** A tensor stored uncompressed inside a layer's own file, as the releases do. */
  readonly layerFileHolds: readonly [file: string, tensor: string];
}

const layerFiles = (prefix: string) => [`${prefix}_0.safetensors`, `${prefix}_1.safetensors`];
const TWINS: Twin[] = [
  {
    title: "0.2.0 per-module files, dotted patterns (Llama-3.1-8B, Qwen2.5-14B, QwQ-32B, Qwen3-8B, DeepSeek-R1-Distill …)",
    model: "qwen2-tiny",
    patternDict: { lm_head: [], "model.embed_tokens": [], "model.layers.\\d+": L7 },
    modules: 4,
    files: ["lm_head.safetensors", "model.safetensors", "model_embed_tokens.safetensors", ...layerFiles("model_layers")],
    layerFileHolds: ["model_layers_1.safetensors", "model.layers.1.self_attn.q_proj.bias"],
  },
  {
    title: "escaped dots (Llama-3.3-70B, Mistral-Nemo, Mistral-Small-24B)",
    model: "mistral-tiny",
    patternDict: { lm_head: [], "model\\.embed_tokens": [], "model\\.layers\\.\\d+": L7 },
    modules: 4,
    files: ["lm_head.safetensors", "model.safetensors", "model_embed_tokens.safetensors", ...layerFiles("model_layers")],
    layerFileHolds: ["model_layers_0.safetensors", "model.layers.0.post_attention_layernorm.weight"],
  },
  {
    title: "tied: BF16 embedding, no lm_head (Qwen3-4B)",
    model: "qwen3-tied-tiny",
    patternDict: { "model.layers.\\d+": L7 },
    modules: 2,
    files: ["model.safetensors", ...layerFiles("model_layers")],
    layerFileHolds: ["model_layers_0.safetensors", "model.layers.0.self_attn.k_norm.weight"],
  },
  {
    title: "phi3 fused qkv_proj / gate_up_proj (Phi-4-reasoning-plus)",
    model: "phi3-tiny",
    patternDict: { lm_head: [], "model.embed_tokens": [], "model.layers.\\d+": PHI3_FUSED },
    modules: 4,
    files: ["lm_head.safetensors", "model.safetensors", "model_embed_tokens.safetensors", ...layerFiles("model_layers")],
    layerFileHolds: ["model_layers_1.safetensors", "model.layers.1.input_layernorm.weight"],
  },
  {
    title: "gemma-3 Gemma3ForConditionalGeneration, language_model.model.* names, vision tower BF16 (gemma-3-4b/12b/27b-it)",
    model: "gemma3-vlm-tiny",
    patternDict: { "language_model.model.layers.\\d+": L7 },
    modules: 2,
    files: ["language_model_model_layers_0.safetensors", "language_model_model_layers_1.safetensors", "model.safetensors"],
    layerFileHolds: ["language_model_model_layers_0.safetensors", "language_model.model.layers.0.pre_feedforward_layernorm.weight"],
  },
];

async function referenceOf(model: string) {
  const ref = JSON.parse(readFileSync(join(refRoot, model, "reference.json"), "utf8")) as { input_ids: number[]; greedy_fp32: number[] };
  await using f = await SafetensorsFile.open(join(refRoot, model, "reference_logits.safetensors"));
  const raw = await f.read("logits_fp32");
  return { ...ref, logits: new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4) };
}

describe("DFloat11 Hub release layouts (tiny twins)", () => {
  for (const t of TWINS) {
    it(`${t.title}: generate = transformers on the BF16 original; inspect, verify, decompress`, async () => {
      const bf16 = join(refRoot, t.model, "bf16");
      const twin = join(work, t.model);
      expect(await writePerModuleTwin(bf16, twin, t.patternDict)).toEqual(t.files);
      expect(readdirSync(twin).sort()).toEqual(["config.json", ...t.files]);
      expect(Object.keys(JSON.parse(readFileSync(join(twin, "config.json"), "utf8")))[0]).toBe("dfloat11_config");
      {
        await using layerFile = await SafetensorsFile.open(join(twin, t.layerFileHolds[0]));
        expect(layerFile.names()).toContain(t.layerFileHolds[1]);
      }
      const ref = await referenceOf(t.model);

      // generate, as a user runs it: transformers' greedy tokens on the BF16 original.
      const { stdout } = await df11("generate", twin, "--input-ids", ref.input_ids.join(","), "-n", String(ref.greedy_fp32.length), "--temperature", "0", "--device", "cpu", "--json");
      const generated = JSON.parse(stdout);
      expect(generated.weights).toBe("df11");
      expect(generated.tokenIds).toEqual(ref.greedy_fp32);

      // Logits at every position: transformers' fp32 ones, and bit-identical to the BF16 original's here.
      using fromTwin = await loadCausalLM(twin);
      using fromBf16 = await loadCausalLM(bf16);
      const logits = fromTwin.forward(ref.input_ids, { allLogits: true });
      expect(logits.reduce((m, v, i) => Math.max(m, Math.abs(v - ref.logits[i])), 0)).toBeLessThan(1e-5);
      expect(Buffer.from(logits.buffer).equals(Buffer.from(fromBf16.forward(ref.input_ids, { allLogits: true }).buffer))).toBe(true);

      const inspected = JSON.parse((await df11("inspect", twin, "--json")).stdout);
      expect(inspected).toMatchObject({ format: "df11", version: "0.2.0" });
      expect(inspected.modules).toHaveLength(t.modules);

      await using original = await SafetensorsCollection.openDirectory(bf16);
      const verified = JSON.parse((await df11("verify", twin, "--against", bf16, "--json")).stdout);
      expect(verified).toMatchObject({ ok: true, modules: t.modules, comparedTensors: original.names().length });

      const back = join(work, `${t.model}-back`);
      await df11("decompress", twin, "-o", back);
      await using decompressed = await SafetensorsCollection.openDirectory(back);
      expect(decompressed.names().sort()).toEqual(original.names().sort());
      for (const n of original.names()) {
        expect(decompressed.info(n).shape, n).toEqual(original.info(n).shape);
        expect(Buffer.from(await decompressed.read(n)).equals(Buffer.from(await original.read(n))), n).toBe(true);
      }
      expect(JSON.parse(readFileSync(join(back, "config.json"), "utf8"))).toEqual(JSON.parse(readFileSync(join(bf16, "config.json"), "utf8")));
    });
  }

  it("gemma-3 multimodal: the language model runs, the vision tower and projector are left out, lm_head is the tied embedding", async () => {
    const { languageModelOf } = await import("@df11/models");
    await using files = await SafetensorsCollection.openDirectory(join(work, "gemma3-vlm-tiny"));
    const lm = languageModelOf(files, { "language_model.model.layers.\\d+": L7 });
    expect(lm.layout.kind).toBe("multimodal-legacy");
    expect(lm.weights.names().every((n) => n.startsWith("model."))).toBe(true);
    expect(lm.weights.has("model.layers.0.encoded_exponent") && lm.weights.has("model.embed_tokens.weight")).toBe(true);
    expect(lm.leftOut.length).toBeGreaterThan(0);
    expect(lm.leftOut.every((n) => n.startsWith("vision_tower.") || n.startsWith("multi_modal_projector."))).toBe(true);
    expect(lm.patternDict).toEqual({ "model\\.layers\\.0": L7, "model\\.layers\\.1": L7 });
  });

  it("df11 compress on gemma-3 as Google ships it: pattern for the language model's layers, names as transformers 4.52+ has them, verify --against the original across the rename", async () => {
    const bf16 = join(refRoot, "gemma3-vlm-tiny", "bf16");
    const out = join(work, "gemma3-vlm-ours");
    const { stdout, stderr } = await df11("compress", bf16, "-o", out);
    expect(stdout).toMatch(/Compressed 2 modules \(gemma3\)/);
    expect(stderr).toMatch(/written as model\.language_model\.\*/);
    const config = JSON.parse(readFileSync(join(out, "config.json"), "utf8"));
    expect(config.dfloat11_config.pattern_dict).toEqual({ "model\\.language_model\\.layers\\.\\d+": L7 });
    await using w = await SafetensorsCollection.openDirectory(out);
    expect(w.names().filter((n) => !n.startsWith("model.language_model.") && !n.startsWith("model.vision_tower.") && !n.startsWith("model.multi_modal_projector."))).toEqual([]);
    expect(w.info("model.language_model.embed_tokens.weight").dtype).toBe("BF16"); // tied: kept BF16
    const verified = JSON.parse((await df11("verify", out, "--against", bf16, "--json")).stdout);
    expect(verified).toMatchObject({ ok: true, modules: 2 });
    const ref = await referenceOf("gemma3-vlm-tiny");
    const generated = JSON.parse((await df11("generate", out, "--input-ids", ref.input_ids.join(","), "-n", "16", "--device", "cpu", "--json")).stdout);
    expect(generated.tokenIds).toEqual(ref.greedy_fp32);
  });

  it("a geometry no release uses (threads_per_block [256]) is refused, naming the key", async () => {
    const twin = join(work, "qwen2-tiny");
    const bad = join(work, "bad-geometry");
    await rm(bad, { recursive: true, force: true });
    await mkdir(bad);
    for (const f of readdirSync(twin)) await writeFile(join(bad, f), readFileSync(join(twin, f)));
    const config = JSON.parse(readFileSync(join(twin, "config.json"), "utf8"));
    await writeFile(join(bad, "config.json"), JSON.stringify({ ...config, dfloat11_config: { ...config.dfloat11_config, threads_per_block: [256] } }));
    for (const cmd of [["generate", bad, "--input-ids", "1,2", "--device", "cpu"], ["verify", bad], ["inspect", bad], ["decompress", bad, "-o", join(work, "never")]]) {
      await expect(df11(...cmd), cmd[0]).rejects.toMatchObject({ code: 1, stderr: expect.stringMatching(/dfloat11_config: threads_per_block \[256\]/) });
    }
    expect(existsSync(join(work, "never"))).toBe(false);
  });
});

describe("DFloat11 0.1.0 (pickled layers, per-model decode.ptx)", () => {
  let old: string;
  beforeAll(async () => {
    // What the 0.1.0 releases hold (Llama-3.1-405B-Instruct-DF11, Qwen2.5-32B-Instruct-DF11, …).
    old = join(work, "v010");
    await mkdir(old, { recursive: true });
    await writeFile(join(old, "config.json"), JSON.stringify({ dfloat11_version: "0.1.0" }));
    for (const f of ["layer_0.pkl", "layer_1.pkl", "lm_head.pkl"]) await writeFile(join(old, f), Buffer.from([0x80, 0x04, 0x95]));
    await writeFile(join(old, "decode.ptx"), ".version 8.0\n.target sm_80\n");
  });

  it("every command refuses it with a clear error naming the version and what to do", async () => {
    for (const cmd of [["generate", old, "--input-ids", "1,2", "--device", "cpu"], ["verify", old], ["inspect", old], ["decompress", old, "-o", join(work, "v010-back")], ["compress", old, "-o", join(work, "v010-again")]]) {
      const failed = await df11(...cmd).then(
        () => undefined,
        (e: { code: number; stderr: string }) => e,
      );
      expect(failed, cmd[0]).toMatchObject({ code: 1 });
      expect(failed!.stderr, cmd[0]).toMatch(/a DFloat11 0\.1\.0 model .*download the original BF16 model and run `df11 compress`/);
      expect(failed!.stderr).not.toMatch(/at .*\.js:\d+/); // a message, not a stack trace
    }
    expect(existsSync(join(work, "v010-back")) || existsSync(join(work, "v010-again"))).toBe(false);
  });

  it("the library throws UnsupportedDfloat11VersionError with the version", async () => {
    await expect(loadCausalLM(old)).rejects.toBeInstanceOf(UnsupportedDfloat11VersionError);
    await expect(loadCausalLM(old)).rejects.toMatchObject({ version: "0.1.0", directory: old });
  });
});
