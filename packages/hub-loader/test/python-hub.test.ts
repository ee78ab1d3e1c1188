// Python's huggingface_hub as a peer of our Hub cache, both ways, with a revision other than main:
// Python downloads from our loopback fake Hub (HF_ENDPOINT) and df11 then uses that cache offline;
// df11 downloads and Python then reads the cache with HF_HUB_OFFLINE=1 (snapshot_download, scan_cache_dir).
// Needs $DF11_PYTHON with huggingface_hub (.ci/run makes that venv); skipped, saying why, without it.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FakeHub } from "../../../test-support/fake-hub.js";
import { pythonSkipReason } from "../../../test-support/python.js";
import { buildSafetensorsHeader, resolveModel } from "../src/index.js";

const run = promisify(execFile);
const python = process.env.DF11_PYTHON;
const skipReason = pythonSkipReason(["huggingface_hub"], "huggingface_hub peer tests");

const MAIN = "1111111111111111111111111111111111111111";
const V2 = "2222222222222222222222222222222222222222";

function model(seed: number): Record<string, Uint8Array> {
  const weights = new Uint8Array(200_000).map((_, i) => (i * 2654435761 + seed * 977) >>> 24);
  const { header } = buildSafetensorsHeader("model.safetensors", [{ name: "w", dtype: "U8", shape: [weights.length], data: weights }]);
  return {
    "config.json": Buffer.from(JSON.stringify({ model_type: "llama", revision_seed: seed })),
    "model.safetensors": Buffer.concat([header, weights]),
    "tokenizer.json": Buffer.from(`{"seed":${seed}}`),
  };
}

const mainFiles = model(1);
const v2Files = model(2);
let hub: FakeHub;
let work: string;
beforeAll(async () => {
  hub = new FakeHub().add({ id: "org/peer", commit: MAIN, files: mainFiles, revisions: { v2: { commit: V2, files: v2Files } } });
  await hub.start();
  work = await mkdtemp(join(tmpdir(), "df11-pyhub-"));
});
afterAll(async () => {
  await hub?.stop();
  await rm(work, { recursive: true, force: true });
});

/** Run Python with huggingface_hub pointed at `cache` (and at the fake Hub unless offline); prints JSON. */
async function py(script: string, cache: string, offline: boolean): Promise<Record<string, unknown>> {
  const env = { ...process.env, HF_HUB_CACHE: cache, HF_ENDPOINT: hub.endpoint, HF_HUB_OFFLINE: offline ? "1" : "0", HF_HUB_DISABLE_TELEMETRY: "1", HF_HUB_ETAG_TIMEOUT: "5" };
  delete (env as Record<string, string | undefined>).HF_TOKEN;
  const { stdout } = await run(python!, ["-c", `import json, os\nfrom huggingface_hub import snapshot_download, scan_cache_dir\n${script}`], { env });
  return JSON.parse(stdout.trim().split("\n").pop()!);
}

const readAll = (dir: string, files: string[]) => Object.fromEntries(files.map((f) => [f, readFileSync(join(dir, f)).toString("base64")]));
const expected = (files: Record<string, Uint8Array>) => Object.fromEntries(Object.entries(files).map(([f, d]) => [f, Buffer.from(d).toString("base64")]));

describe.skipIf(!!skipReason)(`huggingface_hub as a peer of the cache${skipReason ? ` (skipped: ${skipReason})` : ""}`, () => {
  it("Python downloads revision v2 from our fake Hub; df11 then uses that cache offline and gets v2's files", async () => {
    const cache = join(work, "python-first");
    const seen = await py(`path = snapshot_download("org/peer", revision="v2")\nprint(json.dumps({"path": path}))`, cache, false);
    expect(String(seen.path)).toContain(V2);
    const r = await resolveModel("org/peer@v2", { endpoint: "http://127.0.0.1:9", cacheDir: cache, offline: true });
    expect(r.commit).toBe(V2);
    expect(readAll(r.dir, Object.keys(v2Files))).toEqual(expected(v2Files));
    // main was never downloaded: offline, df11 says so rather than serving v2.
    await expect(resolveModel("org/peer", { endpoint: "http://127.0.0.1:9", cacheDir: cache, offline: true })).rejects.toThrow(/main|offline|never/i);
  });

  it("df11 downloads revision v2; Python reads the cache offline (snapshot_download, scan_cache_dir) and sees the same commit and files", async () => {
    const cache = join(work, "df11-first");
    const r = await resolveModel("org/peer@v2", { endpoint: hub.endpoint, cacheDir: cache, offline: false, token: undefined });
    expect(r.commit).toBe(V2);
    const seen = await py(
      `path = snapshot_download("org/peer", revision="v2")
files = {f: __import__("base64").b64encode(open(os.path.join(path, f), "rb").read()).decode() for f in sorted(os.listdir(path))}
info = scan_cache_dir()
repos = [{"id": r.repo_id, "revisions": sorted((rev.commit_hash, sorted(rev.refs)) for rev in r.revisions), "files": r.nb_files} for r in info.repos]
print(json.dumps({"path": path, "files": files, "repos": repos, "warnings": [str(w) for w in info.warnings]}))`,
      cache,
      true,
    );
    expect(String(seen.path)).toBe(r.dir);
    expect(seen.files).toEqual(expected(v2Files));
    expect(seen.warnings).toEqual([]);
    expect(seen.repos).toEqual([{ id: "org/peer", revisions: [[V2, ["v2"]]], files: 3 }]);
  });
});
