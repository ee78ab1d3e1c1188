// What other loaders read from files df11 writes. The official `dfloat11` loader builds the model with
// transformers, ties it, and deletes the weights of the modules it decodes; tools/emulate_official_loader.py
// re-enacts that on the CPU (its GPU peer, tools/peer_official_dfloat11.py, runs the real package on the
// GPU host). Every architecture, tied ones included, must give transformers' logits on the BF16 original.
// And the usual safetensors readers (safetensors, accelerate, transformers) must read every file df11 writes.
// Needs $DF11_PYTHON with torch, transformers, safetensors, accelerate; skipped, saying why, without it.
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SafetensorsCollection, writeSafetensors, type TensorToWrite } from "@df11/hub-loader";
import { fixtureNames, fixturesRoot, repoRoot } from "../../../test-support/fixtures.js";
import { pythonSkipReason } from "../../../test-support/python.js";
import { compressModel } from "../src/index.js";
import { L7, writePerModuleTwin } from "./layout-twins.js";

const python = process.env.DF11_PYTHON;
const skipReason = pythonSkipReason(["torch", "transformers", "safetensors", "accelerate"], "tests with other loaders");
const exec = promisify(execFile);
const refRoot = join(repoRoot, "test-support", "reference-models");
const IDS = [1, 17, 42, 99, 7, 200, 5, 64, 128, 3, 250, 11];

interface Emulated {
  model: string;
  maxLogitDifference: number | null;
  finite: boolean;
  greedyOfficial: number[];
  greedyReference: number[];
  unplaced: string[];
  shapeMismatches: string[];
  decodedModules: number;
}

/** Run the emulated official loader over [df11, bf16] pairs in one Python process. */
async function emulate(pairs: Array<[df11: string, bf16: string]>): Promise<Emulated[]> {
  const jobs = pairs.map(([d, b]) => [d, b, IDS.join(","), 8]);
  const { stdout } = await exec(python!, [join(repoRoot, "tools", "emulate_official_loader.py"), "--batch", JSON.stringify(jobs)], { maxBuffer: 1 << 26 });
  return JSON.parse(stdout.trim().split("\n").pop()!);
}

/** The gemma-3 reference model in the layout transformers 5 writes (model.language_model.*, model.vision_tower.*, …). */
async function gemma3CurrentLayout(to: string): Promise<string> {
  const from = join(refRoot, "gemma3-vlm-tiny", "bf16");
  await mkdir(to, { recursive: true });
  await using w = await SafetensorsCollection.openDirectory(from);
  const renames: Array<[string, string]> = [["language_model.model.", "model.language_model."], ["vision_tower.", "model.vision_tower."], ["multi_modal_projector.", "model.multi_modal_projector."]];
  const tensors: TensorToWrite[] = [];
  for (const n of w.names()) {
    const rule = renames.find(([old]) => n.startsWith(old));
    tensors.push({ name: rule ? rule[1] + n.slice(rule[0].length) : n, dtype: w.info(n).dtype, shape: w.info(n).shape, data: await w.read(n) });
  }
  await writeSafetensors(join(to, "model.safetensors"), tensors, { format: "pt" });
  await writeFile(join(to, "config.json"), readFileSync(join(from, "config.json")));
  return to;
}

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "df11-loaders-"));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe.skipIf(!!skipReason)(`the official dfloat11 loader, emulated on the CPU${skipReason ? ` (skipped: ${skipReason})` : ""}`, () => {
  it("loads what df11 compress writes for every architecture (tied qwen3, gemma2/3, gemma-3 multimodal included) with transformers' logits", async () => {
    const originals: Array<[string, string]> = [
      ...["gemma2-tiny", "gemma3-tiny", "mistral-tiny", "phi3-tiny", "qwen2-tiny", "qwen3-tied-tiny"].map((n): [string, string] => [n, join(refRoot, n, "bf16")]),
      // gemma-3 as Google ships it (language_model.model.*; df11 writes it under transformers 4.52+ names) and as transformers 5 saves it.
      ["gemma3-vlm-tiny", join(refRoot, "gemma3-vlm-tiny", "bf16")],
      ["gemma3-vlm-current-layout", await gemma3CurrentLayout(join(work, "gemma3-vlm-current-bf16"))],
      ...fixtureNames.map((n): [string, string] => [n, join(fixturesRoot, n, "bf16")]),
    ];
    if (fixtureNames.length === 0) console.warn(`[df11 tests] official fixtures absent (${fixturesRoot}): llama-tiny and qwen3-tiny not emulated`);
    const pairs: Array<[string, string]> = [];
    for (const [name, bf16] of originals) {
      const out = join(work, name);
      await compressModel(bf16, out);
      pairs.push([out, bf16]);
    }
    // The Hub's per-module layout of a tied model (Qwen3-4B-DF11), as the official loader sees it.
    const twin = join(work, "qwen3-tied-per-module");
    await writePerModuleTwin(join(refRoot, "qwen3-tied-tiny", "bf16"), twin, { "model.layers.\\d+": L7 });
    pairs.push([twin, join(refRoot, "qwen3-tied-tiny", "bf16")]);

    const results = await emulate(pairs);
    for (const r of results) {
      console.log(`[official loader, emulated] ${r.model}: ${r.decodedModules} modules decoded, max |logit − transformers BF16| ${r.maxLogitDifference}`);
      expect(r, r.model).toMatchObject({ finite: true, maxLogitDifference: 0, unplaced: [], shapeMismatches: [] });
      expect(r.decodedModules, r.model).toBeGreaterThan(0);
      expect(r.greedyOfficial, r.model).toEqual(r.greedyReference);
    }
  });

  it("catches the failure it guards against: a tied model whose embedding is compressed leaves lm_head uninitialised there", async () => {
    // What df11 wrote before: the untied pattern_dict on a tied model (no lm_head tensor; embedding compressed).
    const bf16 = join(refRoot, "qwen3-tied-tiny", "bf16");
    const out = join(work, "tied-embedding-compressed");
    await compressModel(bf16, out, { patternDict: { lm_head: [], "model\\.embed_tokens": [], "model\\.layers\\.\\d+": L7 } });
    const [r] = await emulate([[out, bf16]]);
    expect(r.finite).toBe(false);
    expect(r.greedyOfficial).not.toEqual(r.greedyReference);
  });
});

describe.skipIf(!!skipReason)(`the usual safetensors readers${skipReason ? ` (skipped: ${skipReason})` : ""}`, () => {
  it("safetensors, accelerate and transformers read every file df11 writes (checksummed, sharded, --no-checksums, generic with shapes)", async () => {
    const model = join(refRoot, "qwen2-tiny", "bf16");
    const dirs = [join(work, "r-checksums"), join(work, "r-sharded"), join(work, "r-plain")];
    await compressModel(model, dirs[0]);
    await compressModel(model, dirs[1], { maxShardBytes: 60_000 });
    await compressModel(model, dirs[2], { checksums: false });
    // An architecture df11 does not know: shapes travel in the metadata.
    const generic = join(work, "r-generic");
    await mkdir(join(work, "generic-bf16"), { recursive: true });
    await writeFile(join(work, "generic-bf16", "config.json"), JSON.stringify({ _class_name: "SomeTransformer2DModel" }));
    await writeSafetensors(join(work, "generic-bf16", "model.safetensors"), [{ name: "blocks.0.proj.weight", dtype: "BF16", shape: [32, 16], data: new Uint8Array(32 * 16 * 2).fill(0x3c) }]);
    await compressModel(join(work, "generic-bf16"), generic);
    dirs.push(generic);
    const script = `
import json, os, sys
from safetensors import safe_open
from safetensors.torch import load_file
from accelerate.utils import load_state_dict as accelerate_load
from transformers.modeling_utils import load_state_dict as transformers_load
out = []
for d in sys.argv[1:]:
    for f in sorted(x for x in os.listdir(d) if x.endswith(".safetensors")):
        p = os.path.join(d, f)
        with safe_open(p, framework="pt") as h:
            meta = h.metadata()
        n = len(load_file(p))
        out.append({"file": p, "safetensors": n, "accelerate": len(accelerate_load(p)), "transformers": len(transformers_load(p)), "format": (meta or {}).get("format")})
print(json.dumps(out))
`;
    const { stdout } = await exec(python!, ["-c", script, ...dirs], { maxBuffer: 1 << 24 });
    const read: Array<{ file: string; safetensors: number; accelerate: number; transformers: number; format: string | null }> = JSON.parse(stdout.trim().split("\n").pop()!);
    expect(read.length).toBeGreaterThan(dirs.length); // the sharded model has several files
    for (const r of read) {
      expect(r.safetensors, r.file).toBeGreaterThan(0);
      expect(r.accelerate, r.file).toBe(r.safetensors);
      expect(r.transformers, r.file).toBe(r.safetensors);
      // Byte-identical to the official compressor's files without checksums (no metadata at all); else format: pt.
      expect(r.format, r.file).toBe(r.file.includes("r-plain") ? null : "pt");
    }
    expect(existsSync(join(dirs[1], "model.safetensors.index.json"))).toBe(true);
  });
});

describe.skipIf(!!skipReason)(`tools/peer_official_dfloat11.py, the GPU host's peer script${skipReason ? ` (skipped: ${skipReason})` : ""}`, () => {
  it("runs end to end on the CPU with a stand-in for the package (the emulated loader), applying its shims", async () => {
    // The real package needs a GPU (it loads its kernel with cupy on import); the lead runs it on the GPU host.
    const stub = join(work, "stub-peer", "dfloat11");
    await mkdir(stub, { recursive: true });
    await writeFile(join(stub, "__init__.py"), "from .dfloat11 import DFloat11Model\n");
    await writeFile(
      join(stub, "dfloat11.py"),
      `import sys
sys.path.insert(0, ${JSON.stringify(join(repoRoot, "tools"))})
import pkg_resources  # the imports the real module makes, served by the script's shims where absent
from dahuffman import HuffmanCodec
from transformers.modeling_utils import no_init_weights
from emulate_official_loader import load_like_official
version = "stand-in"
class DFloat11Model:
    @classmethod
    def from_pretrained(cls, path, device=None, device_map="auto", attn_implementation=None, **kwargs):
        model, placement = load_like_official(path, attn_implementation or "sdpa")
        for name in placement["unplaced"]:
            print(f"Cannot find module path for {name}", file=sys.stderr)
        return model.to(device) if device else model
`,
    );
    const out = join(work, "peer.json");
    await exec(python!, [join(repoRoot, "tools", "peer_official_dfloat11.py"), "--device", "cpu", "--only", "qwen3-tied", "--out", out], {
      env: { ...process.env, PYTHONPATH: join(work, "stub-peer") },
      maxBuffer: 1 << 24,
    });
    const summary = JSON.parse(readFileSync(out, "utf8"));
    expect(summary).toMatchObject({ ok: true, passed: 1, failed: [], peer: { dfloat11: "stand-in" } });
    expect(summary.results[0]).toMatchObject({ model: "qwen3-tied-tiny", files: "df11 compress", finite: true, maxLogitDifference: 0, loaderWarnings: [] });
    expect(summary.results[0].patternDict).toEqual({ "model\\.layers\\.\\d+": L7 });
    expect(summary.results[0].greedyOfficial).toEqual(summary.results[0].greedyTransformers);
  });
});
