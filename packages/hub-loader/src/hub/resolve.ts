import { existsSync } from "node:fs";
import { resolve as resolvePath } from "node:path";
import { HubAuthError, HubError, HubLoaderError, HubNetworkError, HubNotFoundError, OfflineCacheMissError } from "../errors.js";
import { isSideFile } from "../model-directory.js";
import { chooseIndex, readWeightMap, shardsOf } from "../model-files.js";
import { parseRepoRef, RepoCache, type RepoRef } from "./cache-layout.js";
import { downloadBlob, type RemoteFile } from "./download.js";
import { hubEnvironment, type HubEnvironment } from "./environment.js";

/** Progress over all files of a model download. */
export interface DownloadProgress {
  readonly filesDone: number;
  readonly filesTotal: number;
  readonly bytesDone: number;
  readonly bytesTotal: number;
}

export interface ResolveOptions extends Partial<HubEnvironment> {
  /** Ask the Hub for the revision's current commit even when the cache already holds a complete snapshot. */
  readonly refresh?: boolean;
  readonly onProgress?: (p: DownloadProgress) => void;
  /** Parallel file downloads (default 4). */
  readonly concurrency?: number;
  readonly fetch?: typeof fetch;
}

/** Where a model lives on disk, and how it got there. */
export interface ResolvedModel {
  readonly dir: string;
  readonly repo?: RepoRef;
  readonly commit?: string;
  /** Files fetched from the Hub by this call (0 when the cache served it). */
  readonly downloadedFiles: number;
}

/** Files a model needs: config, weights and their index, tokenizer/generation/chat-template files (hidden files never). */
export const isNeededModelFile = (path: string): boolean =>
  !path.includes("/") && !path.startsWith(".") && (path === "config.json" || path.endsWith(".safetensors") || path.endsWith(".safetensors.index.json") || isSideFile(path));

function hubError(e: unknown, repo: RepoRef): Error {
  const err = e as { statusCode?: number; message?: string; cause?: unknown };
  if (err.statusCode === 401 || err.statusCode === 403) return new HubAuthError(repo.id, err.statusCode);
  if (err.statusCode === 404) return new HubNotFoundError(repo.id, `repository or revision "${repo.revision}" not found on the Hub (HTTP 404)`);
  if (err.statusCode) return new HubError(`${repo.id}: the Hub answered HTTP ${err.statusCode} (${err.message})`);
  if (e instanceof HubLoaderError) return e;
  return new HubNetworkError(`${repo.id}: cannot reach the Hub (${err.message ?? String(e)}); set HF_ENDPOINT for a mirror, or HF_HUB_OFFLINE=1 to use the cache only`);
}

/** Run `work` over items, at most `limit` at once. */
async function eachLimited<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await work(items[next++]);
    }),
  );
}

/**
 * A model directory for `spec`: a local path as is, or `org/name[@revision]` from the Hugging Face
 * cache — shared with Python's huggingface_hub, same layout both ways — downloading what is missing.
 * A complete cached snapshot is used without any request; HF_HUB_OFFLINE=1 never touches the network.
 */
export async function resolveModel(spec: string, options: ResolveOptions = {}): Promise<ResolvedModel> {
  if (existsSync(spec)) return { dir: resolvePath(spec), downloadedFiles: 0 };
  const repo = parseRepoRef(spec);
  if (!repo) throw new HubLoaderError(`${spec}: no such directory, and not a Hub repo id (org/name[@revision])`);
  const env = { ...hubEnvironment(), ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) } as HubEnvironment & ResolveOptions;
  const cache = new RepoCache(env.cacheDir, repo.id);

  // A complete cached snapshot serves without a request (offline mode also ignores `refresh`).
  const cachedCommit = await cache.commitOf(repo.revision);
  const missing = cachedCommit ? await cache.missingFromSnapshot(cachedCommit) : [`refs/${repo.revision} (the revision was never downloaded)`];
  if (cachedCommit && missing.length === 0 && (!options.refresh || env.offline)) {
    return { dir: cache.snapshotDir(cachedCommit), repo, commit: cachedCommit, downloadedFiles: 0 };
  }
  if (env.offline) throw new OfflineCacheMissError(repo.id, missing, env.cacheDir);

  // Loaded only when the Hub is needed: local models and the safetensors code never pay for it.
  const { listFiles, modelInfo } = await import("@huggingface/hub");
  const credentials = { hubUrl: env.endpoint, accessToken: env.token, fetch: options.fetch };
  let commit: string;
  let remote: RemoteFile[] = [];
  try {
    const info = (await modelInfo({ name: repo.id, revision: repo.revision, additionalFields: ["sha"], ...credentials })) as { sha?: string };
    if (!info.sha) throw new HubError(`${repo.id}: the Hub did not say which commit "${repo.revision}" is`);
    commit = info.sha;
    for await (const f of listFiles({ repo: { type: "model", name: repo.id }, revision: commit, recursive: true, ...credentials })) {
      if (f.type !== "file" || !isNeededModelFile(f.path)) continue;
      remote.push({
        repo: repo.id,
        path: f.path,
        url: `${env.endpoint}/${repo.id}/resolve/${commit}/${f.path.split("/").map(encodeURIComponent).join("/")}`,
        size: f.lfs?.size ?? f.size,
        sha256: f.lfs?.oid,
        gitSha1: f.lfs ? undefined : f.oid,
      });
    }
  } catch (e) {
    throw hubError(e, repo);
  }
  if (!remote.some((f) => f.path === "config.json")) throw new HubNotFoundError(repo.id, `revision ${repo.revision} has no config.json`);

  const etagOf = (f: RemoteFile) => (f.sha256 ?? f.gitSha1)!;
  const fetchOne = (f: RemoteFile, onBytes?: (n: number) => void) => downloadBlob(f, cache.blobPath(etagOf(f)), { token: env.token, fetch: options.fetch, onBytes });
  // The same rule as loading: with an index, exactly the shards it names (not a consolidated.safetensors beside them).
  let index: string | undefined;
  try {
    index = chooseIndex(remote.map((f) => f.path), repo.id);
  } catch {
    // several indexes: fetch them all; loading names the ambiguity
  }
  let fetchedFirst = 0;
  if (index) {
    const indexFile = remote.find((f) => f.path === index)!;
    if ((await cache.blobSize(etagOf(indexFile))) !== indexFile.size) {
      await fetchOne(indexFile);
      fetchedFirst++;
    }
    const shards = new Set(shardsOf(await readWeightMap(cache.blobPath(etagOf(indexFile)))));
    remote = remote.filter((f) => !f.path.endsWith(".safetensors") || shards.has(f.path));
  }
  const todo: RemoteFile[] = [];
  for (const f of remote) if ((await cache.blobSize(etagOf(f))) !== f.size) todo.push(f);
  const bytesTotal = todo.reduce((s, f) => s + f.size, 0);
  let bytesDone = 0;
  let filesDone = 0;
  const report = () => options.onProgress?.({ filesDone, filesTotal: todo.length, bytesDone, bytesTotal });
  report();
  await eachLimited(todo, options.concurrency ?? 4, async (f) => {
    await fetchOne(f, (n) => {
      bytesDone += n;
      report();
    });
    filesDone++;
    report();
  });
  for (const f of remote) await cache.linkSnapshotFile(commit, f.path, etagOf(f));
  await cache.writeRef(repo.revision, commit);
  return { dir: cache.snapshotDir(commit), repo, commit, downloadedFiles: fetchedFirst + todo.length };
}
