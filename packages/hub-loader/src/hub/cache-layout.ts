import { existsSync } from "node:fs";
import { mkdir, readFile, readdir, readlink, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { chooseIndex, readWeightMap, shardsOf } from "../model-files.js";

/** A model repository and revision, as written `org/name[@revision]`. */
export interface RepoRef {
  readonly id: string;
  readonly revision: string;
}

const REPO_ID = /^[\w.-]+\/[\w.-]+$/;
export const COMMIT_HASH = /^[0-9a-f]{40}$/;

/** Parse `org/name[@revision]`; undefined when `spec` does not look like a repo id. */
export function parseRepoRef(spec: string): RepoRef | undefined {
  const at = spec.indexOf("@");
  const id = at >= 0 ? spec.slice(0, at) : spec;
  const revision = at >= 0 ? spec.slice(at + 1) : "main";
  if (!REPO_ID.test(id) || !revision || id.includes("..")) return undefined;
  return { id, revision };
}

/**
 * Paths of one model repo in the hub cache, laid out exactly as Python's huggingface_hub does:
 * `models--org--name/{blobs/<etag>, refs/<revision> (a commit hash), snapshots/<commit>/<file> → blob}`.
 */
export class RepoCache {
  readonly root: string;
  constructor(
    readonly cacheDir: string,
    readonly repoId: string,
  ) {
    this.root = join(cacheDir, `models--${repoId.split("/").join("--")}`);
  }

  blobPath(etag: string): string {
    return join(this.root, "blobs", etag);
  }

  snapshotDir(commit: string): string {
    return join(this.root, "snapshots", commit);
  }

  /** The commit a revision points to: a commit hash is itself, a branch/tag is read from refs/. */
  async commitOf(revision: string): Promise<string | undefined> {
    if (COMMIT_HASH.test(revision)) return revision;
    try {
      const commit = (await readFile(join(this.root, "refs", revision), "utf8")).trim();
      return COMMIT_HASH.test(commit) ? commit : undefined;
    } catch {
      return undefined;
    }
  }

  async writeRef(revision: string, commit: string): Promise<void> {
    if (revision === commit) return;
    const path = join(this.root, "refs", revision);
    await mkdir(dirname(path), { recursive: true });
    const tmp = `${path}.tmp-${process.pid}`;
    await writeFile(tmp, commit);
    await rename(tmp, path);
  }

  /** Make snapshots/<commit>/<file> a relative symlink to its blob (replacing what was there). */
  async linkSnapshotFile(commit: string, file: string, etag: string): Promise<string> {
    const link = join(this.snapshotDir(commit), file);
    await mkdir(dirname(link), { recursive: true });
    const target = relative(dirname(link), this.blobPath(etag));
    try {
      if ((await readlink(link)) === target) return link;
    } catch {
      // absent, or not a link
    }
    await rm(link, { force: true });
    await symlink(target, link);
    return link;
  }

  /** Files present (and resolvable) in a snapshot, relative paths. */
  async snapshotFiles(commit: string): Promise<string[]> {
    const dir = this.snapshotDir(commit);
    const out: string[] = [];
    const walk = async (d: string) => {
      let entries;
      try {
        entries = await readdir(d, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        const p = join(d, e.name);
        if (e.isDirectory()) await walk(p);
        else if (existsSync(p)) out.push(relative(dir, p));
      }
    };
    await walk(dir);
    return out.sort();
  }

  /**
   * What a snapshot lacks to be a loadable model: config.json, and the shards its index names (or at
   * least one *.safetensors file when there is no index).
   */
  async missingFromSnapshot(commit: string): Promise<string[]> {
    const files = new Set(await this.snapshotFiles(commit));
    const missing: string[] = [];
    if (!files.has("config.json")) missing.push("config.json");
    let index: string | undefined;
    try {
      index = chooseIndex([...files], this.snapshotDir(commit));
    } catch {
      // Several indexes: loading will say so; the snapshot holds what the Hub has.
    }
    if (index) {
      try {
        for (const shard of shardsOf(await readWeightMap(join(this.snapshotDir(commit), index)))) if (!files.has(shard)) missing.push(shard);
      } catch {
        missing.push(`${index} (unreadable)`);
      }
    } else if (![...files].some((f) => f.endsWith(".safetensors"))) {
      missing.push("*.safetensors weights");
    }
    return missing;
  }

  async blobSize(etag: string): Promise<number | undefined> {
    try {
      return (await stat(this.blobPath(etag))).size;
    } catch {
      return undefined;
    }
  }
}
