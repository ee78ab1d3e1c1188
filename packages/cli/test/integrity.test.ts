// Checksums you can prove: df11 compress records df11-sum64 checksums in each file's __metadata__;
// verify / decompress / loading check them; seal adds them to models that have none.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { cp, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SafetensorsCollection } from "@df11/hub-loader";
import { ChecksumMismatchError, CHECKSUMS_METADATA_KEY, loadCausalLM } from "@df11/models";
import { pythonSkipReason } from "../../../test-support/python.js";
import { fixtureNames, fixturesRoot, fixturesSkipReason, repoRoot } from "../../../test-support/fixtures.js";
import { compressModel, sealModel, verifyModel, writeSyntheticModel } from "../src/index.js";

import { bin, df11, run, SMALL } from "./helpers.js";

let work: string;
let bf16: string;
let sealed: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "df11-integrity-"));
  bf16 = join(work, "bf16");
  await writeSyntheticModel(bf16, SMALL, { seed: 11 });
  sealed = join(work, "df11");
  await compressModel(bf16, sealed, { threads: 2 });
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** The header of a safetensors file, and where its data starts. */
function header(file: string): { json: Record<string, { data_offsets: [number, number] } & Record<string, unknown>>; dataStart: number } {
  const bytes = readFileSync(file);
  const n = Number(bytes.readBigUInt64LE(0));
  return { json: JSON.parse(bytes.subarray(8, 8 + n).toString("utf8")), dataStart: 8 + n };
}

/** A copy of `dir` with one bit of `tensor` flipped at byte `at`. */
async function withFlippedBit(dir: string, name: string, tensor: string, at = 17, bit = 2): Promise<string> {
  const out = join(work, name);
  await cp(dir, out, { recursive: true });
  const file = join(out, "model.safetensors");
  const { json, dataStart } = header(file);
  const bytes = readFileSync(file);
  bytes[dataStart + json[tensor].data_offsets[0] + at] ^= 1 << bit;
  writeFileSync(file, bytes);
  return out;
}

/** A copy of `dir` whose recorded checksum of `module`'s decoded weights is wrong (the stored tensors stay right). */
async function withWrongWeightsRecord(dir: string, name: string, module: string): Promise<string> {
  const out = join(work, name);
  await cp(dir, out, { recursive: true });
  const file = join(out, "model.safetensors");
  const text = readFileSync(file, "latin1");
  const { json } = header(file);
  const record = JSON.parse((json.__metadata__ as unknown as Record<string, string>)[CHECKSUMS_METADATA_KEY]);
  const right: string = record.modules[module].weights;
  const wrong = (right[0] === "0" ? "1" : "0") + right.slice(1);
  writeFileSync(file, Buffer.from(text.replace(right, wrong), "latin1")); // same length: offsets stay valid
  return out;
}

describe("checksums recorded by df11 compress", () => {
  it("every file records the df11 version and a checksum of each module's weights and stored tensors, and of each plain tensor", async () => {
    const { json } = header(join(sealed, "model.safetensors"));
    const meta = json.__metadata__ as unknown as Record<string, string>;
    expect(meta["df11.writer"]).toMatch(/^df11 \d+\.\d+\.\d+/);
    const record = JSON.parse(meta[CHECKSUMS_METADATA_KEY]);
    expect(record.algorithm).toBe("df11-sum64");
    expect(Object.keys(record.modules).sort()).toEqual(["lm_head", "model.embed_tokens", "model.layers.0", "model.layers.1"]);
    expect(Object.keys(record.modules["model.layers.0"]).sort()).toEqual(
      ["encoded_exponent", "gaps", "luts", "output_positions", "sign_mantissa", "split_positions", "weights"].sort(),
    );
    expect(Object.keys(record.tensors)).toContain("model.norm.weight");
    const { stdout } = await df11("verify", sealed);
    expect(stdout).toMatch(/Checksums \(df11 [^)]+\): 29 stored tensors and 4 modules' decoded weights match/);
  });

  it("verify names the module tensor with one flipped sign_mantissa bit; decompress refuses and writes nothing; loading refuses", async () => {
    const bad = await withFlippedBit(sealed, "flipped", "model.layers.1.sign_mantissa");
    // Without checksums this corruption decodes fine: only the record catches it.
    await expect(df11("verify", bad)).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/model\.layers\.1\.sign_mantissa: checksum [0-9a-f]{16}, but [0-9a-f]{16} was recorded .* corrupt/),
    });
    const out = join(work, "flipped-out");
    await expect(df11("decompress", bad, "-o", out)).rejects.toMatchObject({ code: 1, stderr: expect.stringMatching(/model\.layers\.1: its decoded weights have checksum/) });
    expect(existsSync(out)).toBe(false);
    expect((await readdir(work)).filter((f) => f.includes("flipped-out"))).toEqual([]);
    await expect(loadCausalLM(bad)).rejects.toBeInstanceOf(ChecksumMismatchError);
    await expect(loadCausalLM(bad)).rejects.toThrow(/model\.layers\.1\.sign_mantissa/);
    await expect(df11("generate", bad, "--device", "cpu", "--input-ids", "1,2,3", "-n", "2")).rejects.toMatchObject({
      stderr: expect.stringMatching(/model\.layers\.1\.sign_mantissa: checksum/),
    });
    // A flipped plain tensor (a norm) is named too.
    const badNorm = await withFlippedBit(sealed, "flipped-norm", "model.norm.weight", 3, 0);
    await expect(df11("verify", badNorm)).rejects.toMatchObject({ stderr: expect.stringMatching(/model\.norm\.weight: checksum/) });
    await expect(df11("decompress", badNorm, "-o", join(work, "flipped-norm-out"))).rejects.toMatchObject({ stderr: expect.stringMatching(/model\.norm\.weight: checksum/) });
  });

  it("--verify-weights checks the decoded weights at load (a stored-tensor check cannot see a wrong encoding)", async () => {
    const wrong = await withWrongWeightsRecord(sealed, "wrong-weights", "model.layers.0");
    (await loadCausalLM(wrong)).dispose(); // stored tensors are fine
    await expect(loadCausalLM(wrong, { verifyWeights: true })).rejects.toThrow(/model\.layers\.0: its decoded weights have checksum/);
    await expect(df11("generate", wrong, "--device", "cpu", "--input-ids", "1,2", "-n", "2", "--verify-weights")).rejects.toMatchObject({
      stderr: expect.stringMatching(/model\.layers\.0: its decoded weights/),
    });
    await expect(verifyModel(wrong)).rejects.toThrow(/model\.layers\.0: its decoded weights/);
  });

  it("--no-checksums writes none; verify says what it could not check; seal adds them after a full check, tensors unchanged", async () => {
    const plain = join(work, "plain");
    await df11("compress", bf16, "-o", plain, "--no-checksums");
    expect(header(join(plain, "model.safetensors")).json.__metadata__).toBeUndefined();
    expect((await df11("verify", plain)).stdout).toMatch(/Checksums: none recorded .*verified by decoding only; df11 seal adds them/);
    const { stdout } = await df11("seal", plain);
    expect(stdout).toMatch(/Sealed .*4 modules decode consistently/);
    // Sealing gives exactly what compress writes with checksums.
    expect(readFileSync(join(plain, "model.safetensors")).equals(readFileSync(join(sealed, "model.safetensors")))).toBe(true);
    expect((await readdir(plain)).filter((f) => f.startsWith("."))).toEqual([]);
  });

  it("seal refuses a model whose recorded checksums fail, leaving its files untouched", async () => {
    const bad = await withFlippedBit(sealed, "flipped-seal", "model.layers.0.encoded_exponent", 5, 1);
    const before = readFileSync(join(bad, "model.safetensors"));
    await expect(sealModel(bad)).rejects.toThrow(/model\.layers\.0\.encoded_exponent: checksum/);
    expect(readFileSync(join(bad, "model.safetensors")).equals(before)).toBe(true);
  });

  it("sharded output: each shard records only its own tensors, and all check", async () => {
    const out = join(work, "sharded");
    await df11("compress", bf16, "-o", out, "--max-shard-size", "100KB");
    await using weights = await SafetensorsCollection.openDirectory(out);
    expect(weights.files.length).toBeGreaterThan(1);
    for (const f of weights.files) {
      const record = JSON.parse(f.metadata[CHECKSUMS_METADATA_KEY]);
      for (const m of Object.keys(record.modules)) expect(f.tensors.has(`${m}.sign_mantissa`), `${f.path}: ${m}`).toBe(true);
      for (const t of Object.keys(record.tensors)) expect(f.tensors.has(t)).toBe(true);
    }
    const report = await verifyModel(out);
    expect(report.checksums.decodedModules).toBe(4);
    expect(report.checksums.uncheckedTensors).toEqual([]);
  });
});

describe.skipIf(fixtureNames.length === 0)(`official fixtures${fixtureNames.length === 0 ? ` (skipped: ${fixturesSkipReason})` : ""}`, () => {
  for (const name of fixtureNames.length ? fixtureNames : ["none"]) {
    it(`${name}: with checksums, every tensor is still byte-identical to the official file; sealing the official file gives ours byte for byte`, async () => {
      const ours = join(work, `${name}-ours`);
      await compressModel(join(fixturesRoot, name, "bf16"), ours);
      const officialDir = join(fixturesRoot, name, "df11");
      await using a = await SafetensorsCollection.openDirectory(ours);
      await using b = await SafetensorsCollection.openDirectory(officialDir);
      expect(a.names()).toEqual(b.names());
      for (const n of b.names()) expect(Buffer.from(await a.read(n)).equals(Buffer.from(await b.read(n))), n).toBe(true);
      const copy = join(work, `${name}-official-sealed`);
      await cp(officialDir, copy, { recursive: true });
      await writeFile(join(copy, "config.json"), readFileSync(join(ours, "config.json")));
      await sealModel(copy);
      expect(readFileSync(join(copy, "model.safetensors")).equals(readFileSync(join(ours, "model.safetensors")))).toBe(true);
    });
  }
});

const python = process.env.DF11_PYTHON;
const pythonSkip = pythonSkipReason(["safetensors", "torch"], "Python safetensors peer test");

describe.skipIf(!!pythonSkip)(`Python safetensors reads checksummed files${pythonSkip ? ` (skipped: ${pythonSkip})` : ""}`, () => {
  it("loads every tensor and sees the metadata as a string map", async () => {
    const script = `
import json, sys
from safetensors import safe_open
with safe_open(sys.argv[1], framework="pt") as f:
    meta = f.metadata()
    print(json.dumps({"keys": sorted(meta.keys()), "algorithm": json.loads(meta["df11.checksums"])["algorithm"], "tensors": len(list(f.keys())), "first": f.get_tensor("model.layers.0.sign_mantissa")[:4].tolist()}))
`;
    const { stdout } = await run(python!, ["-c", script, join(sealed, "model.safetensors")]);
    const seen = JSON.parse(stdout);
    expect(seen.keys).toEqual(["df11.checksums", "df11.writer", "format"]);
    expect(seen.algorithm).toBe("df11-sum64");
    expect(seen.tensors).toBe(29);
    await using w = await SafetensorsCollection.openDirectory(sealed);
    expect(seen.first).toEqual([...(await w.read("model.layers.0.sign_mantissa")).subarray(0, 4)]);
  });
});
