import { existsSync, readlinkSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { FakeHub, gitSha1, sha256 } from "../../../test-support/fake-hub.js";
import {
  buildSafetensorsHeader,
  CorruptDownloadError,
  hubEnvironment,
  HubAuthError,
  HubNetworkError,
  HubNotFoundError,
  listCachedModels,
  OfflineCacheMissError,
  parseRepoRef,
  resolveModel,
  SafetensorsCollection,
} from "../src/index.js";

const COMMIT = "0123456789abcdef0123456789abcdef01234567";

/** A small model: config, a 300 KB safetensors file (LFS), tokenizer files and a stray file we must not fetch. */
function modelFiles(): Record<string, Uint8Array> {
  const weights = new Uint8Array(300_000).map((_, i) => (i * 2654435761) >>> 24);
  const { header } = buildSafetensorsHeader("model.safetensors", [{ name: "w", dtype: "U8", shape: [weights.length], data: weights }]);
  return {
    "config.json": Buffer.from(JSON.stringify({ model_type: "llama", dfloat11_config: { version: "0.5.0" } })),
    "model.safetensors": Buffer.concat([header, weights]),
    "tokenizer.json": Buffer.from('{"model":{}}'),
    "generation_config.json": Buffer.from("{}"),
    "README.md": Buffer.from("# not needed"),
    "original/consolidated.pth": Buffer.from("not needed either"),
  };
}

let hub: FakeHub;
let cacheDir: string;
const opts = () => ({ endpoint: hub.endpoint, cacheDir, offline: false, token: undefined as string | undefined });

beforeAll(async () => {
  hub = new FakeHub().add({ id: "org/model", commit: COMMIT, files: modelFiles() });
  hub.add({ id: "org/gated", commit: COMMIT, files: modelFiles(), token: "hf_secret" });
  await hub.start();
});
afterAll(async () => {
  await hub.stop();
});
beforeEach(async () => {
  cacheDir = await mkdtemp(join(tmpdir(), "df11-hfcache-"));
  hub.log.length = 0;
});
afterEach(async () => {
  await rm(cacheDir, { recursive: true, force: true });
});

describe("Hub downloads into the shared cache", () => {
  it("downloads only the needed files, in Python's cache layout, verified, and loads them", async () => {
    const progress: number[] = [];
    const r = await resolveModel("org/model", { ...opts(), onProgress: (p) => progress.push(p.bytesDone) });
    const root = join(cacheDir, "models--org--model");
    expect(r.dir).toBe(join(root, "snapshots", COMMIT));
    expect(r.downloadedFiles).toBe(4);
    expect((await readdir(r.dir)).sort()).toEqual(["config.json", "generation_config.json", "model.safetensors", "tokenizer.json"]);
    expect(readFileSync(join(root, "refs", "main"), "utf8")).toBe(COMMIT);
    const files = modelFiles();
    expect(readlinkSync(join(r.dir, "model.safetensors"))).toBe(`../../blobs/${sha256(files["model.safetensors"])}`);
    expect(readlinkSync(join(r.dir, "config.json"))).toBe(`../../blobs/${gitSha1(files["config.json"])}`);
    expect(progress.at(-1)).toBe(Object.entries(files).filter(([p]) => !p.includes("/") && p !== "README.md").reduce((s, [, d]) => s + d.length, 0));
    await using st = await SafetensorsCollection.openDirectory(r.dir);
    expect(st.names()).toEqual(["w"]);
    expect(hub.log.some((l) => l.includes("README"))).toBe(false);
  });

  it("a sharded repo: fetches exactly the shards its index names, not a consolidated.safetensors or a hidden file beside them", async () => {
    const shard = (name: string, value: number) => {
      const data = new Uint8Array(1000).fill(value);
      return Buffer.concat([buildSafetensorsHeader(name, [{ name: `t${value}`, dtype: "U8", shape: [data.length], data }]).header, data]);
    };
    hub.add({
      id: "org/sharded",
      commit: COMMIT,
      files: {
        "config.json": Buffer.from(JSON.stringify({ model_type: "mistral" })),
        "model-00001-of-00002.safetensors": shard("a", 1),
        "model-00002-of-00002.safetensors": shard("b", 2),
        "model.safetensors.index.json": Buffer.from(JSON.stringify({ weight_map: { t1: "model-00001-of-00002.safetensors", t2: "model-00002-of-00002.safetensors" } })),
        "consolidated.safetensors": shard("c", 3),
        "._model-00001-of-00002.safetensors": Buffer.alloc(4096),
      },
    });
    const r = await resolveModel("org/sharded", opts());
    expect((await readdir(r.dir)).sort()).toEqual(["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"]);
    expect(r.downloadedFiles).toBe(4);
    expect(hub.log.some((l) => l.includes("consolidated") || l.includes("._model"))).toBe(false);
    const again = await resolveModel("org/sharded", opts());
    expect(again.downloadedFiles).toBe(0); // the snapshot is complete without consolidated.safetensors
  });

  it("reuses a complete cached snapshot without any request, and refreshes on demand", async () => {
    await resolveModel("org/model", opts());
    const before = hub.log.length;
    const again = await resolveModel("org/model", opts());
    expect(again.downloadedFiles).toBe(0);
    expect(hub.log.length).toBe(before);
    const refreshed = await resolveModel("org/model", { ...opts(), refresh: true });
    expect(refreshed.downloadedFiles).toBe(0); // asked the Hub, but every blob was already there
    expect(hub.log.length).toBeGreaterThan(before);
    expect(hub.log.slice(before).some((l) => l.includes("/resolve/"))).toBe(false);
  });

  it("works offline from the cache, and names what is missing when it cannot", async () => {
    await resolveModel("org/model", opts());
    const before = hub.log.length;
    const r = await resolveModel("org/model", { ...opts(), offline: true });
    expect(r.commit).toBe(COMMIT);
    expect(hub.log.length).toBe(before);
    await expect(resolveModel("org/other", { ...opts(), offline: true })).rejects.toThrowError(OfflineCacheMissError);
    await rm(join(cacheDir, "models--org--model", "snapshots", COMMIT, "model.safetensors"));
    await expect(resolveModel("org/model", { ...opts(), offline: true })).rejects.toThrowError(/lacks \*\.safetensors weights/);
    expect(hub.log.length).toBe(before);
  });

  it("resumes a download cut mid-file with a Range request", async () => {
    hub.cutOnce.set("model.safetensors", 120_000);
    const r = await resolveModel("org/model", opts());
    expect(hub.log.some((l) => /GET \/cdn\/.*model\.safetensors bytes=120000-/.test(l))).toBe(true);
    await using st = await SafetensorsCollection.openDirectory(r.dir);
    const w = await st.read("w");
    expect(w[123_456]).toBe((123_456 * 2654435761) >>> 24 & 0xff);
  });

  it("refuses a corrupted file: nothing enters the cache", async () => {
    hub.corrupt.add("model.safetensors");
    try {
      await expect(resolveModel("org/model", opts())).rejects.toThrowError(CorruptDownloadError);
      const blobs = await readdir(join(cacheDir, "models--org--model", "blobs"));
      expect(blobs.some((b) => b === sha256(modelFiles()["model.safetensors"]) || b.endsWith(".incomplete"))).toBe(false);
      expect(existsSync(join(cacheDir, "models--org--model", "refs", "main"))).toBe(false);
    } finally {
      hub.corrupt.clear();
    }
  });

  it("gated repos need HF_TOKEN; unknown repos and unreachable hosts give typed errors", async () => {
    const err = await resolveModel("org/gated", opts()).catch((e) => e);
    expect(err).toBeInstanceOf(HubAuthError);
    expect(err.message).toMatch(/HF_TOKEN/);
    const ok = await resolveModel("org/gated", { ...opts(), token: "hf_secret" });
    expect(ok.downloadedFiles).toBe(4);
    await expect(resolveModel("org/missing", opts())).rejects.toThrowError(HubNotFoundError);
    await expect(resolveModel("org/model@v9", opts())).rejects.toThrowError(/revision "v9" not found/);
    await expect(resolveModel("org/model", { ...opts(), endpoint: "http://127.0.0.1:9" })).rejects.toThrowError(HubNetworkError);
    await expect(resolveModel("not a repo!", opts())).rejects.toThrowError(/not a Hub repo id/);
  });

  it("finds a model that Python's huggingface_hub put in the cache, offline", async () => {
    // Exactly what Python writes: blobs named by etag, refs/main holding the commit, relative symlinks.
    const root = join(cacheDir, "models--org--python-model");
    const files = modelFiles();
    await mkdir(join(root, "blobs"), { recursive: true });
    await mkdir(join(root, "refs"), { recursive: true });
    await mkdir(join(root, "snapshots", COMMIT), { recursive: true });
    await writeFile(join(root, "refs", "main"), COMMIT);
    for (const name of ["config.json", "model.safetensors"]) {
      const etag = name.endsWith(".safetensors") ? sha256(files[name]) : gitSha1(files[name]);
      await writeFile(join(root, "blobs", etag), files[name]);
      await symlink(`../../blobs/${etag}`, join(root, "snapshots", COMMIT, name));
    }
    const r = await resolveModel("org/python-model", { ...opts(), offline: true });
    expect(r.dir).toBe(join(root, "snapshots", COMMIT));
    expect(hub.log.length).toBe(0);
    const cached = await listCachedModels(cacheDir);
    expect(cached.map((m) => [m.id, m.format, m.revisions[0].refs])).toEqual([["org/python-model", "df11", ["main"]]]);
    expect(await listCachedModels(join(cacheDir, "never-created"))).toEqual([]); // a machine that downloaded nothing yet
  });
});

describe("environment", () => {
  it("follows HF_HOME, HF_HUB_CACHE, HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE", () => {
    expect(hubEnvironment({ HF_HOME: "/h" })).toMatchObject({ cacheDir: "/h/hub", endpoint: "https://huggingface.co", offline: false });
    expect(hubEnvironment({ HF_HOME: "/h", HF_HUB_CACHE: "/c", HF_ENDPOINT: "https://mirror/", HF_TOKEN: "t", HF_HUB_OFFLINE: "1" })).toEqual({
      cacheDir: "/c",
      endpoint: "https://mirror",
      token: "t",
      offline: true,
    });
    expect(parseRepoRef("DFloat11/Qwen3-8B-DF11@v1")).toEqual({ id: "DFloat11/Qwen3-8B-DF11", revision: "v1" });
    expect(parseRepoRef("./local/dir")).toBeUndefined();
  });
});
