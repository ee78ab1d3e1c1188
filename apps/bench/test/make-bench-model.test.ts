// make-bench-model: the DF11 model it writes straight from synthetic weights is, byte for byte, what
// `df11 compress` makes of the BF16 twin it writes; the weights have the intended statistics; the 8B and
// 70B shapes are the real models' (checked against @df11/models' shape rules, without drawing them).
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { bf16ToFloat32 } from "@df11/codec";
import { SafetensorsCollection } from "@df11/hub-loader";
import { expectedWeightShape, parseTextModelConfig } from "@df11/models";
import { repoRoot } from "../../../test-support/fixtures.js";
import { BENCH_SHAPES, benchConfigText, benchTensors } from "../src/bench-model/shapes.js";

const run = promisify(execFile);
const tool = join(repoRoot, "apps", "bench", "dist", "make-bench-model.js");
const df11 = join(repoRoot, "packages", "cli", "dist", "bin.js");
const work = mkdtempSync(join(tmpdir(), "df11-bench-model-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const std = (v: Float32Array, mean = 0) => Math.sqrt(v.reduce((s, x) => s + (x - mean) ** 2, 0) / v.length);

describe("make-bench-model", () => {
  it("the DF11 model equals `df11 compress` of the BF16 twin, every file byte for byte (sharded, checksums recorded)", async () => {
    const bf16 = join(work, "bf16");
    const direct = join(work, "direct");
    const viaCli = join(work, "via-cli");
    // 3 MB shards: several shards and an index, as a large model has
    await run(process.execPath, [tool, "--shape", "tiny", "--layers", "3", "--seed", "7", "--bf16", bf16, "--out", direct, "--max-shard-size", "3MB", "--threads", "2"]);
    await run(process.execPath, [df11, "compress", bf16, "-o", viaCli, "--max-shard-size", "3MB", "--threads", "2"]);
    const files = readdirSync(direct).sort();
    expect(files).toEqual(readdirSync(viaCli).sort());
    expect(files.filter((f) => f.endsWith(".safetensors")).length).toBeGreaterThan(1);
    expect(files).toContain("model.safetensors.index.json");
    for (const f of files) expect(readFileSync(join(direct, f)).equals(readFileSync(join(viaCli, f))), f).toBe(true);

    await using out = await SafetensorsCollection.openDirectory(direct);
    const metadataKeys = out.files.flatMap((f) => Object.keys(f.metadata));
    expect(metadataKeys).toContain("df11.checksums"); // the checksum ledger was compared too
    const config = JSON.parse(readFileSync(join(direct, "config.json"), "utf8"));
    expect(config.num_hidden_layers).toBe(3);
    expect(config.dfloat11_config.pattern_dict).toHaveProperty("model\\.layers\\.\\d+");
  });

  it("draws weights with make_bench_model.py's statistics: std 0.5/√cols, ~0.05 % outliers ×8, norms 1 ± 0.05", async () => {
    const dir = join(work, "stats");
    await run(process.execPath, [tool, "--shape", "tiny", "--layers", "1", "--bf16", dir]);
    await using w = await SafetensorsCollection.openDirectory(dir);
    const gate = bf16ToFloat32(await w.readU16("model.layers.0.mlp.gate_proj.weight")); // [688, 256]
    const sd = 0.5 / Math.sqrt(256);
    const core = gate.filter((x) => Math.abs(x) < 4 * sd); // without the outliers
    expect(std(core) / sd).toBeGreaterThan(0.97);
    expect(std(core) / sd).toBeLessThan(1.02);
    // |x| > 4.5σ: 7e-6 of normals, plus the outliers ×8 (57 % of which land there): ≈ 2.9e-4
    const tail = gate.filter((x) => Math.abs(x) > 4.5 * sd).length / gate.length;
    expect(tail).toBeGreaterThan(1.5e-4);
    expect(tail).toBeLessThan(4.5e-4);
    const norm = bf16ToFloat32(await w.readU16("model.layers.0.input_layernorm.weight"));
    const mean = norm.reduce((a, b) => a + b, 0) / norm.length;
    expect(Math.abs(mean - 1)).toBeLessThan(0.015);
    expect(std(norm, mean)).toBeGreaterThan(0.04);
    expect(std(norm, mean)).toBeLessThan(0.06);
    // different tensors get different values
    const up = await w.readU16("model.layers.0.mlp.up_proj.weight");
    expect(Buffer.from(up.buffer, up.byteOffset, up.byteLength).equals(Buffer.from(await w.read("model.layers.0.mlp.gate_proj.weight")))).toBe(false);
  });

  for (const name of ["8b", "70b"] as const) {
    it(`the ${name} shape is the real model's: every tensor has the shape config.json implies, ${name === "70b" ? "80" : "32"} layers, 128256 vocab`, () => {
      const shape = BENCH_SHAPES[name];
      const raw = JSON.parse(benchConfigText(shape));
      const config = parseTextModelConfig(raw);
      expect(config).toMatchObject({ numLayers: name === "70b" ? 80 : 32, vocabSize: 128256, numKvHeads: 8, headDim: 128 });
      const tensors = benchTensors(shape);
      expect(tensors.length).toBe(3 + 9 * shape.layers);
      for (const t of tensors) if (t.kind === "matrix") expect(t.shape, t.name).toEqual(expectedWeightShape(raw, t.name));
      const params = tensors.reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
      expect(params / 1e9).toBeCloseTo(name === "70b" ? 70.55 : 8.03, 1);
      expect(JSON.parse(benchConfigText(shape, 2)).num_hidden_layers).toBe(2);
    });
  }

  it("refuses an unknown shape and a run with nothing to write, saying why", async () => {
    await expect(run(process.execPath, [tool, "--shape", "13b", "--out", join(work, "x")])).rejects.toMatchObject({ stderr: expect.stringMatching(/unknown shape 13b/) });
    await expect(run(process.execPath, [tool, "--shape", "tiny"])).rejects.toMatchObject({ stderr: expect.stringMatching(/nothing to write/) });
    await expect(run(process.execPath, [tool, "--shape", "tiny", "--layers", "0", "--out", join(work, "y")])).rejects.toMatchObject({ stderr: expect.stringMatching(/positive integer/) });
  });
});
