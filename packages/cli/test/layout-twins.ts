// Tiny twins of the layouts the DFloat11 Hub releases use (the Hub itself is out of reach in tests): a
// reference model's BF16 weights compressed with a release's pattern_dict, then laid out as that release
// lays out its files. The module tensors are df11's, which are byte-identical to the official encoder's
// (checked on the official fixtures elsewhere); what is under test here is the layout around them.
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { copySideFiles, SafetensorsCollection, writeSafetensors, type TensorToWrite } from "@df11/hub-loader";
import { compressedModulesOf, type PatternDict } from "@df11/models";
import { compressModel } from "../src/index.js";

/** The linear layers of a llama-like decoder layer, in the releases' order ("L7"). */
export const L7 = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"];
/** phi3's fused projections (Phi-4-reasoning-plus-DF11). */
export const PHI3_FUSED = ["self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj", "mlp.down_proj"];

/**
 * Write the v0.2.0 layout (every release from 0.2.0 to 0.5.0 made with `save_single_file=False`): one file
 * per compressed module, named after its path with dots as underscores (`model_layers_0.safetensors`,
 * `lm_head.safetensors`, `model_embed_tokens.safetensors`), holding the module's DF11 tensors and the
 * module's own uncompressed tensors (a layer's norms, q_norm/k_norm, biases); `model.safetensors` holds the
 * rest; no index; `dfloat11_config` first in config.json with `threads_per_block: [512]`.
 */
export async function writePerModuleTwin(bf16: string, out: string, patternDict: PatternDict, version = "0.2.0"): Promise<string[]> {
  const packed = `${out}.packed`;
  await compressModel(bf16, packed, { patternDict, checksums: false, overwrite: true });
  const files = new Map<string, TensorToWrite[]>();
  {
    await using w = await SafetensorsCollection.openDirectory(packed);
    const modules = compressedModulesOf(w.names());
    for (const name of w.names()) {
      const owner = modules.find((m) => name.startsWith(`${m}.`));
      const file = owner ? `${owner.replace(/\./g, "_")}.safetensors` : "model.safetensors";
      const info = w.info(name);
      files.set(file, [...(files.get(file) ?? []), { name, dtype: info.dtype, shape: info.shape, data: await w.read(name) }]);
    }
  }
  await rm(out, { recursive: true, force: true });
  await mkdir(out, { recursive: true });
  await copySideFiles(bf16, out);
  for (const [file, tensors] of files) await writeSafetensors(join(out, file), tensors, file === "model.safetensors" ? { format: "pt" } : undefined);
  const config = JSON.parse(await readFile(join(bf16, "config.json"), "utf8"));
  const dfloat11_config = { version, threads_per_block: [512], bytes_per_thread: 8, pattern_dict: patternDict };
  await writeFile(join(out, "config.json"), JSON.stringify({ dfloat11_config, ...config }, null, 2));
  await rm(packed, { recursive: true, force: true });
  return [...files.keys()].sort();
}
