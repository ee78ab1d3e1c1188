import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isCudaAvailable } from "@df11/cuda-kernel";
import { SafetensorsCollection, writeSafetensors } from "@df11/hub-loader";
import { fixtureNames, fixturesRoot, fixturesSkipReason, repoRoot } from "../../../test-support/fixtures.js";
import { compressModel, decompressModel, inspectModel, verifyModel, writeSyntheticModel, VerificationError, CodecPool } from "../src/index.js";
import { syntheticWeights, encodeModule } from "@df11/codec";
import { parseIds } from "../src/generate-command.js";

const run = promisify(execFile);
const bin = join(repoRoot, "packages", "cli", "dist", "bin.js");
const df11 = (...args: string[]) => run(process.execPath, [bin, ...args]);

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "df11-cli-test-"));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const SMALL = { vocab: 1000, hidden: 64, intermediate: 160, layers: 2, heads: 4, kvHeads: 2 };

describe("df11 on a generated model", () => {
  it("compress → verify --against → decompress is bit-identical, via the real command", async () => {
    const bf16 = join(work, "gen-bf16");
    await writeSyntheticModel(bf16, SMALL, { seed: 3 });
    await writeFile(join(bf16, "tokenizer.json"), "{}");
    const out = join(work, "gen-df11");
    const { stdout } = await df11("compress", bf16, "-o", out, "--threads", "2");
    expect(stdout).toMatch(/Compressed 4 modules \(llama\)/);
    expect(readdirSync(out).sort()).toEqual(["config.json", "generation_config.json", "model.safetensors", "tokenizer.json"]);
    const config = JSON.parse(readFileSync(join(out, "config.json"), "utf8"));
    expect(config.dfloat11_config).toMatchObject({ version: "0.5.0", threads_per_block: [512], bytes_per_thread: 8 });
    expect(Object.keys(config.dfloat11_config.pattern_dict)).toEqual(["lm_head", "model\\.embed_tokens", "model\\.layers\\.\\d+"]);

    const verified = await df11("verify", out, "--against", bf16);
    expect(verified.stdout).toMatch(/OK: 4 modules.*bit-identical/);
    const back = join(work, "gen-back");
    await df11("decompress", out, "-o", back);
    await using a = await SafetensorsCollection.openDirectory(bf16);
    await using b = await SafetensorsCollection.openDirectory(back);
    expect(b.names().sort()).toEqual(a.names().sort());
    for (const n of a.names()) {
      expect(b.info(n).shape).toEqual(a.info(n).shape);
      expect(Buffer.from(await b.read(n)).equals(Buffer.from(await a.read(n))), n).toBe(true);
    }
    const inspected = JSON.parse((await df11("inspect", out, "--json")).stdout);
    expect(inspected.modules).toHaveLength(4);
    expect(inspected.totals.ratio).toBeLessThan(0.72);
  });

  it("shards the output with an index when it exceeds --max-shard-size", async () => {
    const bf16 = join(work, "gen-bf16");
    const out = join(work, "gen-sharded");
    await df11("compress", bf16, "-o", out, "--max-shard-size", "100KB");
    const files = readdirSync(out).filter((f) => f.endsWith(".safetensors"));
    expect(files.length).toBeGreaterThan(1);
    const index = JSON.parse(readFileSync(join(out, "model.safetensors.index.json"), "utf8"));
    expect(Object.values(index.weight_map)).toContain(files[0]);
    await verifyModel(out, { against: bf16 });
  });

  it("keeps a module holding inf as plain BF16 and says so; the model still round-trips", async () => {
    const bf16 = join(work, "inf-bf16");
    await writeSyntheticModel(bf16, SMALL, { seed: 4 });
    const file = join(bf16, "model.safetensors");
    await using model = await SafetensorsCollection.openDirectory(bf16);
    const tensors = await Promise.all(
      model.names().map(async (name) => {
        const info = model.info(name);
        const data = await model.read(name);
        if (name === "model.layers.1.mlp.up_proj.weight") new Uint16Array(data.buffer, data.byteOffset, 4)[3] = 0x7f80;
        return { name, dtype: info.dtype, shape: info.shape, data };
      }),
    );
    await writeSafetensors(file, tensors);
    const warnings: string[] = [];
    const out = join(work, "inf-df11");
    const s = await compressModel(bf16, out, { onWarning: (w) => warnings.push(w) });
    expect(s.keptUncompressed).toEqual(["model.layers.1"]);
    expect(warnings[0]).toMatch(/model\.layers\.1 kept uncompressed.*model\.layers\.1\.mlp\.up_proj\.weight.*element 3/);
    await verifyModel(out, { against: bf16 });
  });

  it("leaves no output behind when compression fails midway", async () => {
    const bf16 = join(work, "bad-bf16");
    await writeSyntheticModel(bf16, SMALL, { seed: 5 });
    // A layer whose mlp weights are F32: the run must refuse it before writing anything.
    await using model = await SafetensorsCollection.openDirectory(bf16);
    const tensors = await Promise.all(
      model.names().map(async (name) => {
        const info = model.info(name);
        const data = await model.read(name);
        if (name === "model.layers.1.mlp.down_proj.weight") {
          return { name, dtype: "F32" as const, shape: [info.shape[0], info.shape[1] / 2], data };
        }
        return { name, dtype: info.dtype, shape: info.shape, data };
      }),
    );
    await writeSafetensors(join(bf16, "model.safetensors"), tensors);
    const out = join(work, "bad-df11");
    await expect(df11("compress", bf16, "-o", out)).rejects.toMatchObject({ stderr: expect.stringMatching(/nothing written: .*down_proj\.weight is F32/) });
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(work).filter((f) => f.includes(".tmp-"))).toEqual([]);
  });

  it("refuses to overwrite an existing output without --force", async () => {
    const out = join(work, "gen-df11");
    await expect(df11("compress", join(work, "gen-bf16"), "-o", out)).rejects.toMatchObject({ stderr: expect.stringMatching(/already exists/) });
  });

  it("verify names the first bad tensor and exits non-zero (without recorded checksums: by decoding and comparing)", async () => {
    const broken = join(work, "broken-df11");
    await compressModel(join(work, "gen-bf16"), broken, { checksums: false });
    const file = join(broken, "model.safetensors");
    const bytes = await readFile(file);
    await using model = await SafetensorsCollection.openDirectory(broken);
    const sm = model.info("model.layers.0.sign_mantissa");
    bytes[sm.fileOffset + 10] ^= 0x01;
    await writeFile(file, bytes);
    await expect(verifyModel(broken, { against: join(work, "gen-bf16") })).rejects.toThrowError(VerificationError);
    await expect(df11("verify", broken, "--against", join(work, "gen-bf16"))).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/model\.layers\.0\.self_attn\.q_proj\.weight: differs from the original/),
    });
    const gapsInfo = model.info("model.layers.0.gaps");
    bytes[gapsInfo.fileOffset + 2] ^= 0x08;
    await writeFile(file, bytes);
    await expect(df11("verify", broken)).rejects.toMatchObject({ stderr: expect.stringMatching(/model\.layers\.0\.(gaps|output_positions): /) });
    // inspect decodes the way the GPU does too, and names the module the same way.
    await expect(df11("inspect", broken)).rejects.toMatchObject({ stderr: expect.stringMatching(/model\.layers\.0\.(gaps|output_positions): /) });
    // A structural error (output_positions out of order) is named wherever the module is read: generate included.
    bytes[gapsInfo.fileOffset + 2] ^= 0x08;
    const op = model.info("model.layers.0.output_positions");
    bytes.set([0xff, 0xff, 0xff, 0x7f], op.fileOffset + 8);
    await writeFile(file, bytes);
    for (const cmd of ["inspect", "verify"]) await expect(df11(cmd, broken)).rejects.toMatchObject({ stderr: expect.stringMatching(/model\.layers\.0\.output_positions: entry 2 = \d+ is out of order/) });
    await expect(df11("generate", broken, "--input-ids", "1,2", "-n", "2", "--device", "cpu")).rejects.toMatchObject({ stderr: expect.stringMatching(/model\.layers\.0\.output_positions: entry 2/) });
  });
});

describe("CodecPool", () => {
  it("decodes one stream over several workers by block ranges, bit-exactly", async () => {
    const w = syntheticWeights(2_000_003, 12);
    const { module } = encodeModule([w]);
    await using pool = new CodecPool(2);
    const out = await pool.decodeParallel(module, 4);
    expect(Buffer.from(out.buffer).equals(Buffer.from(w.buffer))).toBe(true);
  });
});

describe.skipIf(fixtureNames.length === 0)(`official fixtures through the CLI (${fixtureNames.length ? fixtureNames.join(", ") : fixturesSkipReason})`, () => {
  for (const name of fixtureNames) {
    it(`${name}: our compress of bf16/ (--no-checksums) equals the official df11/ file byte for byte, and round-trips`, async () => {
      const out = join(work, `${name}-df11`);
      await compressModel(join(fixturesRoot, name, "bf16"), out, { checksums: false });
      const ours = readFileSync(join(out, "model.safetensors"));
      const official = readFileSync(join(fixturesRoot, name, "df11", "model.safetensors"));
      expect(ours.equals(official)).toBe(true);
      await verifyModel(join(fixturesRoot, name, "df11"), { against: join(fixturesRoot, name, "bf16") });
      const back = join(work, `${name}-back`);
      await decompressModel(join(fixturesRoot, name, "df11"), back);
      await verifyModel(join(fixturesRoot, name, "df11"), { against: back });
      const report = await inspectModel(join(fixturesRoot, name, "df11"));
      expect(report.modules.length).toBe(2 + 2);
    });
  }
});

describe("df11 generate", () => {
  it("gives identical tokens from BF16 and DF11, as JSON, and names bad input", async () => {
    const { writeSyntheticModel } = await import("@df11/models");
    const bf16 = join(work, "gen-tok-bf16");
    await writeSyntheticModel(bf16, SMALL, { tokenizer: true, seed: 21 });
    const out = join(work, "gen-tok-df11");
    await df11("compress", bf16, "-o", out);
    const runJson = async (dir: string, ...args: string[]) => JSON.parse((await df11("generate", dir, "--json", "-n", "12", ...args)).stdout);
    const a = await runJson(bf16, "--prompt", "the water is");
    const b = await runJson(out, "--prompt", "the water is");
    expect(a.weights).toBe("bf16");
    expect(b.weights).toBe("df11");
    expect(b.tokenIds).toEqual(a.tokenIds);
    expect(b.text).toBe(a.text);
    expect(b.tokenIds.length).toBeGreaterThan(0);
    expect(b.tokensPerSecond.decode).toBeGreaterThan(0);
    expect(b.peakRssBytes).toBeGreaterThan(1e6);
    // How the weights are held: BF16 as is; DF11 fused on a GPU, as stored on the CPU — and smaller.
    expect(a.weightsInUse).toMatchObject({ format: "bf16", layout: "bf16" });
    expect(b.weightsInUse).toMatchObject({ format: "df11", layout: b.device === "cuda" ? "fused" : "huffman" });
    expect(b.weightsInUse.residentBytes).toBeLessThan(a.weightsInUse.residentBytes);
    expect(b.memory?.peakBytes).toBeGreaterThan(0);
    if (b.device === "cuda") {
      expect(b.weightsInUse.fused.ratioToBf16).toBeLessThan(0.9);
      for (const layout of ["huffman", "bf16"]) {
        const r = await runJson(out, "--prompt", "the water is", "--gpu-weights", layout);
        expect(r.weightsInUse.layout).toBe(layout);
        expect(r.tokenIds).toEqual(b.tokenIds);
      }
    }
    // Flags that would be ignored are refused; seed 0 is a seed.
    await expect(df11("generate", out, "--prompt", "x", "--input-ids", "1,2")).rejects.toMatchObject({ stderr: expect.stringMatching(/give --prompt or --input-ids, not both/) });
    await expect(df11("generate", out, "--input-ids", "1,2", "--chat")).rejects.toMatchObject({ stderr: expect.stringMatching(/--chat wraps a text prompt .* does not apply to --input-ids/) });
    const z1 = await runJson(out, "--prompt", "the water is", "--temperature", "0.9", "--seed", "0");
    expect(z1.settings.sampling.seed).toBe(0);
    await expect(df11("generate", out, "--prompt", "x", "--seed", "-1")).rejects.toMatchObject({ stderr: expect.stringMatching(/--seed.*expected a whole number ≥ 0/) });
    for (const port of ["abc", "99999", "-1"]) await expect(df11("serve", out, "--port", port)).rejects.toMatchObject({ stderr: expect.stringMatching(/--port.*expected a port number from 0 to 65535/) });
    for (const ms of ["abc", "-1", "", "1e9", "0x10"]) await expect(df11("serve", out, "--prefill-gather-ms", ms)).rejects.toMatchObject({ stderr: expect.stringMatching(/--prefill-gather-ms.*expected milliseconds from 0 to 60000/) });
    for (const n of ["0", "0x10", "1e3", " 16", "9007199254740993"]) await expect(df11("serve", out, "--max-batch-tokens", n)).rejects.toMatchObject({ stderr: expect.stringMatching(/--max-batch-tokens.*expected a positive integer/) });
    await expect(df11("serve", out, "--port", "0x4e21")).rejects.toMatchObject({ stderr: expect.stringMatching(/--port.*expected a port number from 0 to 65535/) });
    await expect(df11("generate", out, "--prompt", "x", "--gpu-weights", "int4")).rejects.toMatchObject({ stderr: expect.stringMatching(/--gpu-weights.*expected fused, huffman, bf16 or auto/) });
    await expect(df11("generate", out, "--prompt", "x", "--device", "cpu", "--gpu-weights", "fused")).rejects.toMatchObject({ stderr: expect.stringMatching(/--gpu-weights fused applies to the GPU/) });
    const ids = await runJson(out, "--input-ids", b.promptTokenIds.join(","));
    expect(ids.tokenIds).toEqual(b.tokenIds);
    const s1 = await runJson(out, "--prompt", "the water is", "--temperature", "0.9", "--seed", "5");
    const s2 = await runJson(out, "--prompt", "the water is", "--temperature", "0.9", "--seed", "5");
    expect(s1.tokenIds).toEqual(s2.tokenIds);
    await expect(df11("generate", out)).rejects.toMatchObject({ stderr: expect.stringMatching(/--prompt TEXT or --input-ids/) });
    await expect(df11("generate", out, "--input-ids", "1,x")).rejects.toMatchObject({ stderr: expect.stringMatching(/--input-ids: expected/) });
    await expect(df11("generate", out, "--input-ids", "99999")).rejects.toMatchObject({ stderr: expect.stringMatching(/token id 99999 is outside/) });
    const bare = join(work, "gen-no-tokenizer");
    await writeSyntheticModel(bare, SMALL, { seed: 22 });
    await expect(df11("generate", bare, "--prompt", "hi")).rejects.toMatchObject({ stderr: expect.stringMatching(/no tokenizer\.json: use --input-ids/) });
  });

  it.skipIf(isCudaAvailable())("--device: auto falls back to the CPU without a GPU; cuda says why it cannot run; bad values are refused", async () => {
    const { writeSyntheticModel } = await import("@df11/models");
    const dir = join(work, "gen-device");
    await writeSyntheticModel(dir, SMALL, { seed: 23 });
    const auto = JSON.parse((await df11("generate", dir, "--json", "-n", "3", "--input-ids", "1,5,9")).stdout);
    expect(auto.device).toBe("cpu");
    const cpu = JSON.parse((await df11("generate", dir, "--json", "-n", "3", "--input-ids", "1,5,9", "--device", "cpu")).stdout);
    expect(cpu.tokenIds).toEqual(auto.tokenIds);
    await expect(df11("generate", dir, "--input-ids", "1", "--device", "cuda")).rejects.toMatchObject({ stderr: expect.stringMatching(/--device cuda: (no CUDA device|no @df11\/cuda-kernel binary)/) });
    await expect(df11("generate", dir, "--input-ids", "1", "--device", "tpu")).rejects.toMatchObject({ stderr: expect.stringMatching(/expected cuda, cpu or auto/) });
    // --devices names GPUs: refused on the CPU, malformed lists named, and without a GPU it says why.
    await expect(df11("generate", dir, "--input-ids", "1", "--device", "cpu", "--devices", "0,1")).rejects.toMatchObject({ stderr: expect.stringMatching(/--devices 0,1 names GPUs; it does not apply to --device cpu/) });
    for (const [bad, why] of [["0,0", /lists a GPU twice/], ["0,x", /expected GPU indices separated by commas/], ["", /expected GPU indices/]] as const) {
      await expect(df11("generate", dir, "--input-ids", "1", "--devices", bad)).rejects.toMatchObject({ stderr: expect.stringMatching(why) });
    }
    await expect(df11("serve", dir, "--devices", "0,-1")).rejects.toMatchObject({ stderr: expect.stringMatching(/--devices.*expected GPU indices/) });
    await expect(df11("generate", dir, "--input-ids", "1", "--devices", "0,1")).rejects.toMatchObject({ stderr: expect.stringMatching(/df11: error: --devices 0,1: (no CUDA device|no @df11\/cuda-kernel binary)/) });
    await expect(df11("generate", dir, "--input-ids", "1", "--devices", "99999999999999999999")).rejects.toMatchObject({ stderr: expect.stringMatching(/--devices.*99999999999999999999 is not a GPU index/) });
    await expect(df11("generate", dir, "--input-ids", "1", "--max-gpu-memory", "0.5MB")).rejects.toMatchObject({ stderr: expect.stringMatching(/0\.5MB is 500000 bytes: too little for a model/) });
    // A GPU layout asked for where --device auto finds no GPU: said on stderr, the run goes on on the CPU.
    const fallback = await df11("generate", dir, "--json", "-n", "3", "--input-ids", "1,5,9", "--gpu-weights", "fused");
    expect(fallback.stderr).toMatch(/warning: --gpu-weights fused is ignored: no usable GPU, running on the CPU/);
    expect(JSON.parse(fallback.stdout).tokenIds).toEqual(auto.tokenIds);
    await expect(df11("serve", dir, "--device", "cuda", "--port", "0")).rejects.toMatchObject({ stderr: expect.stringMatching(/--device cuda: (no CUDA device|no @df11\/cuda-kernel binary)/) });
  });

  it("--seed, --stop and --input-ids take what they say: seeds past 2^32 sample apart, one --stop string per use (never empty), no empty or malformed token id", async () => {
    const { writeSyntheticModel } = await import("@df11/models");
    const dir = join(work, "gen-flags");
    await writeSyntheticModel(dir, SMALL, { tokenizer: true, seed: 24 });
    const runJson = async (...args: string[]) => JSON.parse((await df11("generate", ...args, "--json", "-n", "12", "--device", "cpu")).stdout);
    // --seed: 2^32 sampled exactly as 0 (the seed was taken mod 2^32); up to 2^53 − 1 each seed is its own.
    const sampled = ["--prompt", "the water is", "--temperature", "1.5"];
    const zero = await runJson(dir, ...sampled, "--seed", "0");
    const big = await runJson(dir, ...sampled, "--seed", String(2 ** 32));
    expect(big.settings.sampling.seed).toBe(2 ** 32);
    expect(big.tokenIds).not.toEqual(zero.tokenIds);
    expect((await runJson(dir, ...sampled, "--seed", String(Number.MAX_SAFE_INTEGER))).settings.sampling.seed).toBe(Number.MAX_SAFE_INTEGER);
    for (const seed of ["9007199254740992", "-1", "1.5"]) {
      await expect(df11("generate", dir, ...sampled, "--seed", seed)).rejects.toMatchObject({ stderr: expect.stringMatching(/--seed.*expected a whole number ≥ 0, at most 9007199254740991 \(2\^53 − 1\)/) });
    }
    await expect(df11("generate", dir, ...sampled, "-b", "2", "--seed", String(Number.MAX_SAFE_INTEGER))).rejects.toMatchObject({
      stderr: expect.stringMatching(/--seed 9007199254740991 with 2 sequences: sequence i samples with seed \+ i.*give --seed ≤ 9007199254740990/),
    });
    // --stop: one value per use (a variadic --stop swallowed the model argument after it), repeatable; "" is refused as the server refuses it.
    expect((await runJson("--stop", "zzz", dir, "--prompt", "the water is")).settings.stopStrings).toEqual(["zzz"]);
    expect((await runJson(dir, "--prompt", "the water is", "--stop", "a b", "--stop", "\n")).settings.stopStrings).toEqual(["a b", "\n"]);
    await expect(df11("generate", dir, "--prompt", "x", "--stop", "")).rejects.toMatchObject({ stderr: expect.stringMatching(/--stop.*a stop string cannot be empty/) });
    // --input-ids: every entry is a token id; "1,,2" read as [1, 2] before.
    for (const [ids, why] of [
      ["1,,2", /--input-ids: expected comma-separated token ids.*entry 2 of "1,,2" is empty/],
      ["1,2,", /entry 3 of "1,2," is empty/],
      ["1,0x10", /entry 2 of "1,0x10" \("0x10"\) is not a token id/],
    ] as const) {
      await expect(df11("generate", dir, "--device", "cpu", "--input-ids", ids)).rejects.toMatchObject({ stderr: expect.stringMatching(why) });
    }
    expect(parseIds(" 1, 17 ,42 ")).toEqual([1, 17, 42]);
    expect(parseIds("1 17 42")).toEqual([1, 17, 42]);
    for (const bad of ["", ",", "1,,2", ",1", "1.5", "1e3", "-1", "9007199254740993"]) expect(() => parseIds(bad), bad).toThrow(/--input-ids: expected/);
  });
});

describe("repo ids everywhere, through a local Hub", () => {
  it("df11 download / generate / inspect / ls take org/name, share the cache, and work offline afterwards", async () => {
    const { readdir, readFile } = await import("node:fs/promises");
    const { FakeHub } = await import("../../../test-support/fake-hub.js");
    const { writeSyntheticModel } = await import("@df11/models");
    const local = join(work, "hub-src");
    await writeSyntheticModel(join(local, "bf16"), SMALL, { tokenizer: true, seed: 31 });
    await compressModel(join(local, "bf16"), join(local, "df11"));
    const files: Record<string, Uint8Array> = {};
    for (const f of await readdir(join(local, "df11"))) files[f] = await readFile(join(local, "df11", f));
    const hub = new FakeHub().add({ id: "DFloat11/Tiny-DF11", commit: "a".repeat(40), files });
    await hub.start();
    const env = { ...process.env, HF_ENDPOINT: hub.endpoint, HF_HUB_CACHE: join(work, "hf-cache"), HF_TOKEN: "" };
    const cli = (...args: string[]) => run(process.execPath, [bin, ...args], { env });
    try {
      const dl = await cli("download", "DFloat11/Tiny-DF11");
      expect(dl.stdout).toMatch(/downloaded \d+ files/);
      const viaHub = JSON.parse((await cli("generate", "DFloat11/Tiny-DF11", "--prompt", "the water is", "-n", "8", "--json")).stdout);
      const viaDir = JSON.parse((await df11("generate", join(local, "df11"), "--prompt", "the water is", "-n", "8", "--json")).stdout);
      expect(viaHub.tokenIds).toEqual(viaDir.tokenIds);
      expect(viaHub.weights).toBe("df11");
      const inspected = JSON.parse((await cli("inspect", "DFloat11/Tiny-DF11", "--json")).stdout);
      expect(inspected.modules.length).toBe(4);
      const ls = (await cli("ls")).stdout;
      expect(ls).toMatch(/DFloat11\/Tiny-DF11\s+df11/);
      await hub.stop();
      const offline = await run(process.execPath, [bin, "generate", "DFloat11/Tiny-DF11", "--prompt", "the water is", "-n", "8", "--json"], { env: { ...env, HF_HUB_OFFLINE: "1" } });
      expect(JSON.parse(offline.stdout).tokenIds).toEqual(viaDir.tokenIds);
      await expect(run(process.execPath, [bin, "inspect", "DFloat11/Other-DF11"], { env: { ...env, HF_HUB_OFFLINE: "1" } })).rejects.toMatchObject({
        stderr: expect.stringMatching(/offline mode \(HF_HUB_OFFLINE=1\).*refs\/main/),
      });
    } finally {
      await hub.stop();
    }
  });
});

describe("generic models", () => {
  it("an unknown architecture compresses every BF16 matrix alone, keeps the rest, and round-trips with shapes", async () => {
    const { syntheticWeights } = await import("@df11/codec");
    const { bytesOf } = await import("@df11/models");
    const dir = join(work, "generic-bf16");
    const { mkdir } = await import("node:fs/promises");
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "config.json"), JSON.stringify({ _class_name: "FluxTransformer2DModel", architectures: ["FluxTransformer2DModel"] }));
    await writeSafetensors(join(dir, "diffusion_pytorch_model.safetensors"), [
      { name: "transformer_blocks.0.attn.to_q.weight", dtype: "BF16", shape: [96, 64], data: bytesOf(syntheticWeights(96 * 64, 1)) },
      { name: "transformer_blocks.1.attn.to_q.weight", dtype: "BF16", shape: [96, 64], data: bytesOf(syntheticWeights(96 * 64, 2)) },
      { name: "proj_out.weight", dtype: "BF16", shape: [3, 5, 64], data: bytesOf(syntheticWeights(3 * 5 * 64, 3)) },
      { name: "proj_out.bias", dtype: "F32", shape: [4], data: new Uint8Array(16) },
    ]);
    const out = join(work, "generic-df11");
    const s = await compressModel(dir, out);
    expect(s.architecture).toBe("generic");
    expect(s.modules).toBe(2);
    const config = JSON.parse(readFileSync(join(out, "config.json"), "utf8"));
    expect(config.dfloat11_config.pattern_dict).toEqual({ "transformer_blocks\\.\\d+\\.attn\\.to_q": [] });
    await verifyModel(out, { against: dir });
    const back = join(work, "generic-back");
    await decompressModel(out, back);
    await using a = await SafetensorsCollection.openDirectory(dir);
    await using b = await SafetensorsCollection.openDirectory(back);
    for (const n of a.names()) {
      expect(b.info(n).shape, n).toEqual(a.info(n).shape);
      expect(Buffer.from(await b.read(n)).equals(Buffer.from(await a.read(n))), n).toBe(true);
    }
    await expect(compressModel(dir, dir, { overwrite: true })).rejects.toThrow(/must not be the input/);
  });
});

describe("interrupted writes", () => {
  it("compress and decompress stopped by SIGINT / SIGTERM leave nothing behind and exit 130 / 143", async () => {
    const { spawn } = await import("node:child_process");
    const { writeSyntheticModel } = await import("@df11/models");
    const dir = join(work, "interrupt");
    const bf16 = join(dir, "bf16");
    await writeSyntheticModel(bf16, { vocab: 8192, hidden: 512, intermediate: 1536, layers: 6, heads: 8, kvHeads: 2 }, { seed: 77 });
    await df11("compress", bf16, "-o", join(dir, "df11"));
    const jobs: Array<[string, string, NodeJS.Signals, number]> = [
      ["compress", bf16, "SIGINT", 130],
      ["compress", bf16, "SIGTERM", 143],
      ["decompress", join(dir, "df11"), "SIGTERM", 143],
    ];
    for (const [command, input, signal, code] of jobs) {
      const out = join(dir, `out-${command}-${signal}`);
      const child = spawn(process.execPath, [bin, command, input, "-o", out, "-t", "1"], { stdio: ["ignore", "ignore", "pipe"] });
      let stderr = "";
      child.stderr.on("data", (d) => (stderr += d));
      const exited = new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
      // Signal as soon as the temporary output directory exists: the job is mid-way then.
      const temporary = () => readdirSync(dir).some((f) => f.startsWith(`.out-${command}-${signal}.tmp-`));
      for (let i = 0; i < 500 && !temporary(); i++) await new Promise((r) => setTimeout(r, 5));
      expect(temporary(), `${command}: no temporary directory appeared`).toBe(true);
      child.kill(signal);
      expect(await exited, stderr).toBe(code);
      expect(stderr).toMatch(/nothing was written/);
      expect(readdirSync(dir).filter((f) => f.includes(`out-${command}-${signal}`))).toEqual([]);
    }
  });
});

describe("mixed-dtype checkpoints", () => {
  it("F32 and F16 norms load exactly (same logits as BF16), survive compress/decompress; an F32 matrix is refused by name", async () => {
    const { writeSyntheticModel, loadCausalLM } = await import("@df11/models");
    const dir = join(work, "mixed");
    const bf16 = join(dir, "bf16");
    await writeSyntheticModel(bf16, SMALL, { seed: 88 });
    const source = await SafetensorsCollection.openDirectory(bf16);
    const f32 = new Float32Array(1);
    const u32 = new Uint32Array(f32.buffer);
    /** BF16 bits → F16 bits, for values F16 holds exactly (norms near 1). */
    const toF16 = (b: number) => {
      u32[0] = b << 16;
      const e = ((u32[0] >>> 23) & 0xff) - 127 + 15;
      return ((u32[0] >>> 16) & 0x8000) | (e << 10) | ((u32[0] >>> 13) & 0x3ff);
    };
    const tensors = [];
    for (const name of source.names()) {
      const info = source.info(name);
      const words = await source.readU16(name);
      if (name === "model.norm.weight") tensors.push({ name, dtype: "F16" as const, shape: info.shape, data: new Uint8Array(Uint16Array.from(words, toF16).buffer) });
      else if (name.endsWith("layernorm.weight")) tensors.push({ name, dtype: "F32" as const, shape: info.shape, data: new Uint8Array(Uint32Array.from(words, (w) => w << 16).buffer) });
      else tensors.push({ name, dtype: "BF16" as const, shape: info.shape, data: await source.read(name) });
    }
    await source.close();
    const mixed = join(dir, "mixed");
    await cp(bf16, mixed, { recursive: true });
    await writeSafetensors(join(mixed, "model.safetensors"), tensors, { format: "pt" });

    const ids = [1, 5, 9, 200, 17];
    const logitsOf = async (d: string) => {
      const m = await loadCausalLM(d);
      const l = m.forward(ids, { allLogits: true });
      m.dispose();
      return Buffer.from(l.buffer);
    };
    const reference = await logitsOf(bf16);
    expect((await logitsOf(mixed)).equals(reference)).toBe(true);
    await df11("compress", mixed, "-o", join(dir, "df11"));
    expect((await logitsOf(join(dir, "df11"))).equals(reference)).toBe(true);
    await df11("decompress", join(dir, "df11"), "-o", join(dir, "back"));
    await df11("verify", join(dir, "df11"), "--against", mixed);
    const back = await SafetensorsCollection.openDirectory(join(dir, "back"));
    expect(back.info("model.norm.weight").dtype).toBe("F16");
    expect(back.info("model.layers.0.input_layernorm.weight").dtype).toBe("F32");
    await back.close();

    const badMatrix = tensors.map((t) => (t.name === "model.layers.1.mlp.down_proj.weight" ? { ...t, dtype: "F32" as const, data: new Uint8Array(Uint32Array.from(new Uint16Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 2), (w) => w << 16).buffer) } : t));
    const bad = join(dir, "bad");
    await cp(bf16, bad, { recursive: true });
    await writeSafetensors(join(bad, "model.safetensors"), badMatrix, { format: "pt" });
    await expect(loadCausalLM(bad)).rejects.toThrowError(/model\.layers\.1\.mlp\.down_proj\.weight: dtype F32; df11 runs BF16/);
  });
});
