// Which files are the model: an index's shards, else the visible *.safetensors; the rest ignored, and what
// looks like weights among it named once.
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { appleDouble } from "../../../test-support/stray-files.js";
import { ModelDirectoryError, SafetensorsCollection, SafetensorsError, selectWeightFiles, writeSafetensors } from "../src/index.js";

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "df11-files-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const tensor = (name: string, value: number) => ({ name, dtype: "U8" as const, shape: [1], data: Uint8Array.of(value) });

async function dirWith(name: string, files: Record<string, Buffer | string | Array<ReturnType<typeof tensor>>>): Promise<string> {
  const d = join(root, name);
  await mkdir(d, { recursive: true });
  for (const [f, content] of Object.entries(files)) {
    if (Array.isArray(content)) await writeSafetensors(join(d, f), content);
    else await writeFile(join(d, f), content);
  }
  return d;
}

describe("the files of a model", () => {
  it("without an index: every visible *.safetensors; a macOS ._ file and a pytorch_model.bin are ignored and named", async () => {
    const d = await dirWith("apple", {
      "model.safetensors": [tensor("a", 1)],
      "extra.safetensors": [tensor("b", 2)],
      "._model.safetensors": appleDouble(),
      "._extra.safetensors": appleDouble(),
      "pytorch_model.bin": "x",
      "README.md": "hi",
      "config.json": "{}",
    });
    const s = await selectWeightFiles(d);
    expect(s.files).toEqual(["extra.safetensors", "model.safetensors"]);
    expect(s.index).toBeUndefined();
    expect(s.ignored).toEqual(["._extra.safetensors", "._model.safetensors", "pytorch_model.bin"]);
    await using c = await SafetensorsCollection.openDirectory(d, { onIgnoredFiles: () => {} });
    expect(c.names().sort()).toEqual(["a", "b"]);
    expect(c.ignoredFiles).toEqual(s.ignored);
  });

  it("with model.safetensors.index.json: exactly the shards it names; a stale shard and consolidated.safetensors are ignored", async () => {
    const d = await dirWith("indexed", {
      "model-00001-of-00002.safetensors": [tensor("a", 1)],
      "model-00002-of-00002.safetensors": [tensor("b", 2)],
      "model-00003-of-00003.safetensors": [tensor("a", 9)], // an older revision's shard: same names
      "consolidated.safetensors": [tensor("a", 1), tensor("b", 2)], // Mistral's native file beside the HF shards
      "._model-00001-of-00002.safetensors": appleDouble(),
      "model.safetensors.index.json": JSON.stringify({ metadata: {}, weight_map: { a: "model-00001-of-00002.safetensors", b: "model-00002-of-00002.safetensors" } }),
    });
    const s = await selectWeightFiles(d);
    expect(s.files).toEqual(["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]);
    expect(s.ignored).toEqual(["._model-00001-of-00002.safetensors", "consolidated.safetensors", "model-00003-of-00003.safetensors"]);
    await using c = await SafetensorsCollection.openDirectory(d, { onIgnoredFiles: () => {} });
    expect([...(await c.read("a"))]).toEqual([1]);
  });

  it("another library's single index (diffusers) is the model's; several without model.safetensors.index.json are ambiguous", async () => {
    const d = await dirWith("diffusers", {
      "diffusion_pytorch_model-00001-of-00001.safetensors": [tensor("w", 3)],
      "diffusion_pytorch_model.safetensors.index.json": JSON.stringify({ weight_map: { w: "diffusion_pytorch_model-00001-of-00001.safetensors" } }),
    });
    expect((await selectWeightFiles(d)).files).toEqual(["diffusion_pytorch_model-00001-of-00001.safetensors"]);
    await writeFile(join(d, "other.safetensors.index.json"), JSON.stringify({ weight_map: {} }));
    await expect(selectWeightFiles(d)).rejects.toBeInstanceOf(ModelDirectoryError);
    await expect(selectWeightFiles(d)).rejects.toThrowError(/several safetensors indexes/);
  });

  it("an index that points outside the directory, at a hidden file, or at a missing shard is refused by name", async () => {
    for (const [name, target] of [["outside", "../x.safetensors"], ["hidden", "._x.safetensors"], ["not-safetensors", "x.bin"]]) {
      const d = await dirWith(`bad-${name}`, { "x.safetensors": [tensor("a", 1)], "model.safetensors.index.json": JSON.stringify({ weight_map: { a: target } }) });
      await expect(selectWeightFiles(d), name).rejects.toThrowError(/tensor a: weight_map gives .* not the name of a \.safetensors file beside the index/);
    }
    const d = await dirWith("missing-shard", { "model.safetensors.index.json": JSON.stringify({ weight_map: { a: "model-00001-of-00002.safetensors" } }) });
    await expect(selectWeightFiles(d)).rejects.toThrowError(/shard model-00001-of-00002\.safetensors, which is missing/);
  });

  it("no weights at all: says so, naming what is there instead", async () => {
    const d = await dirWith("none", { "config.json": "{}", "._model.safetensors": appleDouble() });
    await expect(selectWeightFiles(d)).rejects.toBeInstanceOf(SafetensorsError);
    await expect(selectWeightFiles(d)).rejects.toThrowError(/no \*\.safetensors files in this directory \(\._model\.safetensors is not/);
  });

  it("names ignored files once per process, however often the directory is opened", async () => {
    const d = await dirWith("warn-once", { "model.safetensors": [tensor("a", 1)], "._model.safetensors": appleDouble() });
    const warn = vi.spyOn(process, "emitWarning").mockImplementation(() => {});
    try {
      for (let i = 0; i < 3; i++) await (await SafetensorsCollection.openDirectory(d)).close();
      expect(warn).toHaveBeenCalledTimes(1);
      expect(String(warn.mock.calls[0][0])).toMatch(/warn-once: ignoring \._model\.safetensors \(the model is the \*\.safetensors files that are not hidden\)/);
    } finally {
      warn.mockRestore();
    }
  });
});

describe("a renamed view", () => {
  it("shows tensors under other names, leaves some out, reads through, and maps stored names", async () => {
    const d = await dirWith("view", { "model.safetensors": [tensor("language_model.model.norm.weight", 5), tensor("vision_tower.w", 6)] });
    await using c = await SafetensorsCollection.openDirectory(d);
    const view = c.renamed((n) => (n.startsWith("language_model.model") ? `model${n.slice("language_model.model".length)}` : undefined));
    expect(view.names()).toEqual(["model.norm.weight"]);
    expect([...(await view.read("model.norm.weight"))]).toEqual([5]);
    const target = new Uint8Array(1);
    await view.readInto("model.norm.weight", target);
    expect([...target]).toEqual([5]);
    expect(view.info("model.norm.weight").name).toBe("language_model.model.norm.weight");
    expect(view.nameOf("language_model.model.layers.0")).toBe("model.layers.0");
    expect(view.nameOf("vision_tower.w")).toBeUndefined();
    expect(view.has("vision_tower.w")).toBe(false);
    expect(() => c.renamed(() => "same")).toThrowError(/renamed to same, which another tensor already has/);
  });
});
