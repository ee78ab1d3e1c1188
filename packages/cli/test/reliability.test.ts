// Bad input and hostile conditions: a config whose shapes disagree with the tensors, a sharded index naming
// a missing shard, a full disk during compress / decompress, and a memory budget smaller than the work.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { cp, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoRoot } from "../../../test-support/fixtures.js";
import { compressModel, writeSyntheticModel } from "../src/index.js";

import { bin, df11, run, SMALL } from "./helpers.js";

let work: string;
let bf16: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "df11-reliability-"));
  bf16 = join(work, "bf16");
  await writeSyntheticModel(bf16, SMALL, { seed: 21 });
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A copy of the model with config.json edited. */
async function withConfig(name: string, edit: (c: Record<string, unknown>) => void): Promise<string> {
  const dir = join(work, name);
  await cp(bf16, dir, { recursive: true });
  const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
  edit(config);
  writeFileSync(join(dir, "config.json"), JSON.stringify(config));
  return dir;
}

describe("inputs that contradict themselves", () => {
  it("a config whose shapes disagree with the tensors: compress and generate name the tensor and the config; nothing is written", async () => {
    const bad = await withConfig("shape-mismatch", (c) => (c.intermediate_size = 128));
    const out = join(work, "shape-mismatch-df11");
    await expect(df11("compress", bad, "-o", out)).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/model\.layers\.0\.mlp\.gate_proj\.weight: shape \[160,64\] contradicts config\.json \(llama\), which gives \[128,64\]/),
    });
    expect(existsSync(out)).toBe(false);
    await expect(df11("generate", bad, "--device", "cpu", "--input-ids", "1,2", "-n", "2")).rejects.toMatchObject({
      stderr: expect.stringMatching(/mlp\.gate_proj\.weight: shape \[160,64\] does not fit the config's \[128, 64\]/),
    });
    const heads = await withConfig("heads-mismatch", (c) => (c.num_key_value_heads = 4));
    await expect(df11("compress", heads, "-o", join(work, "heads-df11"))).rejects.toMatchObject({ stderr: expect.stringMatching(/self_attn\.k_proj\.weight: shape .* contradicts config\.json/) });
  });

  it("a sharded index naming a missing shard: verify, decompress and generate say which shard is missing", async () => {
    const sharded = join(work, "sharded");
    await compressModel(bf16, sharded, { maxShardBytes: 100_000 });
    const shards = readdirSync(sharded).filter((f) => f.endsWith(".safetensors")).sort();
    expect(shards.length).toBeGreaterThan(2);
    await rm(join(sharded, shards[1]));
    const message = new RegExp(`model\\.safetensors\\.index\\.json: tensor .*: weight_map puts it in the shard ${shards[1].replace(/\./g, "\\.")}, which is missing`);
    for (const args of [["verify", sharded], ["decompress", sharded, "-o", join(work, "sharded-out")], ["generate", sharded, "--device", "cpu", "--input-ids", "1", "-n", "1"]]) {
      await expect(df11(...args), args[0]).rejects.toMatchObject({ code: 1, stderr: expect.stringMatching(message) });
    }
    expect(existsSync(join(work, "sharded-out"))).toBe(false);
  });
});

/** Can this machine give us a tiny filesystem (a user + mount namespace with a tmpfs)? */
const tinyDiskSkip = (() => {
  try {
    execFileSync("unshare", ["-rm", "sh", "-c", "mount -t tmpfs -o size=64k none /mnt && true"], { stdio: "ignore" });
    return undefined;
  } catch {
    return "cannot mount a small tmpfs here (unshare -rm + mount); the disk-full case needs one";
  }
})();
if (tinyDiskSkip) console.warn(`[df11 tests] SKIPPING disk-full tests: ${tinyDiskSkip}`);

describe.skipIf(!!tinyDiskSkip)(`a full disk${tinyDiskSkip ? ` (skipped: ${tinyDiskSkip})` : ""}`, () => {
  it("compress and decompress onto a disk too small: ENOSPC named with the output, nothing left behind", async () => {
    const df11Dir = join(work, "for-disk-full");
    await compressModel(bf16, df11Dir);
    const disk = join(work, "disk");
    await mkdir(disk);
    for (const [cmd, input] of [["compress", bf16], ["decompress", df11Dir]]) {
      // 150 KB holds part of the output (~290 KB compressed, ~420 KB decompressed), not all of it.
      const script = `mount -t tmpfs -o size=150k none '${disk}' && '${process.execPath}' '${bin}' ${cmd} '${input}' -o '${disk}/out'; rc=$?; ls -A '${disk}'; exit $rc`;
      const r = await run("unshare", ["-rm", "sh", "-c", script]).then(
        () => ({ code: 0, stdout: "", stderr: "" }),
        (e: { code: number; stdout: string; stderr: string }) => e,
      );
      expect(r.code, cmd).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`${disk.replace(/[/.]/g, "\\$&")}/out: the disk is full \\(ENOSPC\\) while writing; the model needs about .*Nothing was written`));
      expect(r.stdout.trim(), `${cmd}: left on the full disk`).toBe("");
    }
  });
});

describe("a memory budget smaller than the work", () => {
  it("--max-memory says it limits the modules in flight, and the output is byte-identical to an unbounded run", async () => {
    const free = join(work, "unbounded");
    const tight = join(work, "tight");
    await df11("compress", bf16, "-o", free);
    const { stderr } = await df11("compress", bf16, "-o", tight, "--max-memory", "300MB", "--threads", "4");
    expect(stderr).toMatch(/warning: --max-memory .*: at most \d of 4 threads busy on the largest modules/);
    for (const f of readdirSync(free)) expect(readFileSync(join(tight, f)).equals(readFileSync(join(free, f))), f).toBe(true);
    const back = join(work, "tight-back");
    await df11("decompress", tight, "-o", back, "--max-memory", "300MB");
    expect(readFileSync(join(back, "model.safetensors")).equals(readFileSync(join(bf16, "model.safetensors")))).toBe(true);
  });
});
