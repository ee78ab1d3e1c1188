import { mkdtemp, readdir, rm, writeFile, readFile, open } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  SafetensorsCollection,
  SafetensorsError,
  SafetensorsFile,
  ShardedSafetensorsWriter,
  writeDirectoryAtomically,
  writeSafetensors,
  copySafetensorsWithMetadata,
} from "../src/index.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "df11-st-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A file with a hand-written header, to feed the reader malformed input. */
async function rawFile(name: string, header: unknown, dataBytes: number, headerLengthOverride?: bigint): Promise<string> {
  const json = Buffer.from(typeof header === "string" ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(headerLengthOverride ?? BigInt(json.length));
  const path = join(dir, name);
  await writeFile(path, Buffer.concat([len, json, Buffer.alloc(dataBytes, 7)]));
  return path;
}

describe("safetensors round trip", () => {
  it("writes and reads tensors of several dtypes with metadata", async () => {
    const path = join(dir, "a.safetensors");
    const bf = new Uint8Array([1, 2, 3, 4, 5, 6]);
    const i64 = new Uint8Array(new BigInt64Array([5n, -1n]).buffer);
    await writeSafetensors(path, [
      { name: "w", dtype: "BF16", shape: [3], data: bf },
      { name: "s", dtype: "I64", shape: [2], data: i64 },
      { name: "e", dtype: "I64", shape: [0], data: new Uint8Array(0) },
    ], { format: "pt" });
    await using f = await SafetensorsFile.open(path);
    expect(f.metadata).toEqual({ format: "pt" });
    expect([...(await f.read("w"))]).toEqual([...bf]);
    expect([...(await f.read("s"))]).toEqual([...i64]);
    expect(f.info("e").shape).toEqual([0]);
    // Reference layout: larger dtypes first, then by name; header padded to 8 bytes.
    const bytes = await readFile(path);
    const headerLength = Number(bytes.readBigUInt64LE(0));
    expect(headerLength % 8).toBe(0);
    const header = bytes.subarray(8, 8 + headerLength).toString();
    expect(header.indexOf('"e"')).toBeLessThan(header.indexOf('"s"'));
    expect(header.indexOf('"s"')).toBeLessThan(header.indexOf('"w"'));
  });

  it("reads tensors at offsets beyond 4 GiB (sparse file)", async () => {
    const path = join(dir, "big.safetensors");
    const big = 4 * 1024 ** 3 + 16;
    const header = Buffer.from(JSON.stringify({ pad: { dtype: "U8", shape: [big], data_offsets: [0, big] }, tail: { dtype: "U8", shape: [4], data_offsets: [big, big + 4] } }));
    const padded = Buffer.concat([header, Buffer.alloc((8 - (header.length % 8)) % 8, 0x20)]);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(padded.length));
    const h = await open(path, "w");
    await h.write(Buffer.concat([len, padded]), 0, 8 + padded.length, 0);
    await h.write(Buffer.from([9, 8, 7, 6]), 0, 4, 8 + padded.length + big);
    await h.close();
    await using f = await SafetensorsFile.open(path);
    expect([...(await f.read("tail"))]).toEqual([9, 8, 7, 6]);
    await rm(path);
  });

  it("shards with an index and reads the directory back as one collection", async () => {
    const out = join(dir, "sharded");
    await writeDirectoryAtomically(out, async (tmp) => {
      const w = new ShardedSafetensorsWriter(tmp, { maxShardBytes: 10 });
      await w.add([{ name: "a", dtype: "U8", shape: [8], data: new Uint8Array(8).fill(1) }]);
      await w.add([{ name: "b", dtype: "U8", shape: [8], data: new Uint8Array(8).fill(2) }]);
      await w.finish();
    });
    expect((await readdir(out)).sort()).toEqual(["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"]);
    await using c = await SafetensorsCollection.openDirectory(out);
    expect([...(await c.read("b"))]).toEqual(new Array(8).fill(2));
  });

  it("past its memory budget a shard goes through a spool file, with the same bytes; metadata can be made per shard", async () => {
    const tensors = Array.from({ length: 12 }, (_, i) => ({
      name: `t${String(i).padStart(2, "0")}`,
      dtype: "U8" as const,
      shape: [1000 + i],
      data: Uint8Array.from({ length: 1000 + i }, (_, j) => (i * 31 + j) & 255),
    }));
    const write = async (name: string, memoryBytes: number) => {
      const out = join(dir, name);
      await writeDirectoryAtomically(out, async (tmp) => {
        await using w = new ShardedSafetensorsWriter(tmp, {
          maxShardBytes: 6500,
          memoryBytes,
          metadata: (layouts) => ({ first: layouts[0].name, count: String(layouts.length) }),
        });
        for (const t of tensors) await w.add([t]);
        await w.finish();
      });
      return out;
    };
    const inMemory = await write("in-memory", 1 << 20);
    const spooled = await write("spooled", 1500); // most tensors go to the spool
    const files = (await readdir(inMemory)).sort();
    expect(files).toEqual((await readdir(spooled)).sort());
    expect(files).toHaveLength(3); // two shards + index
    for (const f of files) expect(readFileSync(join(spooled, f)).equals(readFileSync(join(inMemory, f))), f).toBe(true);
    await using c = await SafetensorsCollection.openDirectory(spooled);
    expect(c.files.map((f) => f.metadata)).toEqual([{ first: "t00", count: "6" }, { first: "t06", count: "6" }]);
    for (const t of tensors) expect(Buffer.from(await c.read(t.name)).equals(Buffer.from(t.data))).toBe(true);

    // A copy with other metadata keeps every tensor byte for byte.
    const copy = join(dir, "copy.safetensors");
    await copySafetensorsWithMetadata(c.files[0].path, copy, { only: "this" });
    await using f = await SafetensorsFile.open(copy);
    expect(f.metadata).toEqual({ only: "this" });
    for (const n of f.names()) expect(Buffer.from(await f.read(n)).equals(Buffer.from(await c.files[0].read(n)))).toBe(true);
  });
});

describe("an output whose parent is a file", () => {
  it("is refused naming the output and the file in the way (not a bare EEXIST/ENOTDIR)", async () => {
    const file = join(dir, "a-file");
    await writeFile(file, "x");
    for (const target of [join(file, "out"), join(file, "sub", "out")]) {
      const e = await writeDirectoryAtomically(target, async () => undefined).catch((x: Error) => x);
      expect(e).toBeInstanceOf(Error);
      expect((e as Error).name).toBe("HubLoaderError");
      expect((e as Error).message).toContain(target);
      expect((e as Error).message).toContain(`${file} is a file, not a directory`);
    }
  });
});

describe("overwrite (--force) of an output that is not a directory", () => {
  it("is refused naming the output, and the file is left as it was", async () => {
    const file = join(dir, "notes.txt");
    await writeFile(file, "precious");
    const e = await writeDirectoryAtomically(file, async () => undefined, { overwrite: true }).catch((x: Error) => x);
    expect((e as Error).name).toBe("HubLoaderError");
    expect((e as Error).message).toBe(`${file} is not a directory: overwrite / --force replaces only a directory`);
    expect(readFileSync(file, "utf8")).toBe("precious");
  });
});

describe.skipIf(process.platform !== "linux")("an output under /proc or /sys", () => {
  it("is refused at once, naming the output (Node's recursive mkdir never returns under /proc)", async () => {
    for (const target of ["/proc/df11-out", "/proc/x/y/model", "/sys/df11-out"]) {
      const e = await writeDirectoryAtomically(target, async () => undefined).catch((x: Error) => x);
      expect((e as Error).name).toBe("HubLoaderError");
      expect((e as Error).message).toMatch(new RegExp(`^${target}: /(proc|sys) is a virtual filesystem the kernel provides`));
    }
  });
});

describe("malformed safetensors raise SafetensorsError naming file and tensor", () => {
  const cases: Array<[string, () => Promise<string>, RegExp]> = [
    ["too short", async () => { const p = join(dir, "short.safetensors"); await writeFile(p, Buffer.alloc(5)); return p; }, /short\.safetensors: file is 5 bytes/],
    ["absurd header length", () => rawFile("absurd.safetensors", {}, 0, 1n << 40n), /absurd\.safetensors: header length \d+ is impossible/],
    ["bad JSON", () => rawFile("json.safetensors", "{not json", 0), /json\.safetensors: header is not valid JSON/],
    ["unknown dtype", () => rawFile("dtype.safetensors", { t: { dtype: "Q4", shape: [1], data_offsets: [0, 1] } }, 1), /tensor t: unknown dtype "Q4"/],
    ["shape vs bytes", () => rawFile("shape.safetensors", { t: { dtype: "BF16", shape: [3], data_offsets: [0, 4] } }, 4), /tensor t: BF16 \[3\] needs 6 bytes but data_offsets span 4/],
    ["out of range (truncated)", () => rawFile("trunc.safetensors", { t: { dtype: "U8", shape: [100], data_offsets: [0, 100] } }, 10), /tensor t: data_offsets \[0, 100\] run past the 10-byte data section/],
    ["overlap", () => rawFile("overlap.safetensors", { a: { dtype: "U8", shape: [8], data_offsets: [0, 8] }, b: { dtype: "U8", shape: [8], data_offsets: [4, 12] } }, 12), /tensor b: data overlaps tensor a/],
    ["negative shape", () => rawFile("neg.safetensors", { t: { dtype: "U8", shape: [-1], data_offsets: [0, 0] } }, 0), /tensor t: shape \[-1\]/],
  ];
  for (const [name, make, message] of cases) {
    it(name, async () => {
      const path = await make();
      const err = await SafetensorsFile.open(path).catch((e) => e);
      expect(err).toBeInstanceOf(SafetensorsError);
      expect(err.message).toMatch(message);
    });
  }

  it("an index that names a missing tensor", async () => {
    const d = join(dir, "bad-index");
    await writeDirectoryAtomically(d, async (tmp) => {
      await writeSafetensors(join(tmp, "model.safetensors"), [{ name: "a", dtype: "U8", shape: [1], data: new Uint8Array(1) }]);
      await writeFile(join(tmp, "model.safetensors.index.json"), JSON.stringify({ weight_map: { a: "model.safetensors", ghost: "model.safetensors" } }));
    });
    await expect(SafetensorsCollection.openDirectory(d)).rejects.toThrowError(/index\.json: tensor ghost: weight_map names/);
  });

  it("a failed atomic write leaves nothing behind", async () => {
    const target = join(dir, "never");
    await expect(
      writeDirectoryAtomically(target, async (tmp) => {
        await writeFile(join(tmp, "half"), "x");
        throw new Error("interrupted");
      }),
    ).rejects.toThrow("interrupted");
    expect((await readdir(dir)).filter((f) => f.includes("never"))).toEqual([]);
    await expect(writeSafetensors(join(dir, "x.safetensors"), [{ name: "t", dtype: "BF16", shape: [2], data: new Uint8Array(3) }])).rejects.toThrow(/tensor t: BF16 \[2\] needs 4 bytes/);
    expect((await readdir(dir)).filter((f) => f.includes("x.safetensors"))).toEqual([]);
  });
});

describe("config.json edits keep the text as written", async () => {
  const { setJsonMember, removeJsonMember } = await import("../src/index.js");
  const python = '{\n  "final_logit_softcapping": 30.0,\n  "rope_theta": 1e6,\n  "name": "a \\"quoted\\" {brace}",\n  "nested": {"x": [1, {"y": "}"}]}\n}\n';
  it("adds a member without touching the others (30.0 stays 30.0)", () => {
    const added = setJsonMember(python, "dfloat11_config", { version: "0.5.0", pattern_dict: { lm_head: [] } });
    expect(added.startsWith(python.slice(0, python.lastIndexOf("}") - 1))).toBe(true);
    expect(added).toContain('"final_logit_softcapping": 30.0,');
    expect(JSON.parse(added).dfloat11_config.pattern_dict).toEqual({ lm_head: [] });
    expect(JSON.parse(added).nested).toEqual({ x: [1, { y: "}" }] });
    expect(JSON.parse(setJsonMember("{}", "a", 1))).toEqual({ a: 1 });
    expect(JSON.parse(setJsonMember(added, "dfloat11_config", 2)).dfloat11_config).toBe(2);
  });
  it("removes a member wherever it stands, and round-trips to the same bytes", () => {
    const added = setJsonMember(python, "dfloat11_config", { version: "0.5.0" });
    expect(removeJsonMember(added, "dfloat11_config")).toBe(python);
    const first = '{"dfloat11_config": {"a": 1}, "b": 2.0}';
    expect(removeJsonMember(first, "dfloat11_config")).toBe('{"b": 2.0}');
    expect(JSON.parse(removeJsonMember('{"only": {"x": 1}}', "only"))).toEqual({});
    expect(removeJsonMember(python, "absent")).toBe(python);
    expect(() => removeJsonMember("[1, 2]", "x", "config.json")).toThrowError(/config\.json: expected a JSON object/);
  });
});
