import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { hubEnvironment } from "./environment.js";

/** A model in the local Hugging Face cache. */
export interface CachedModel {
  readonly id: string;
  readonly sizeBytes: number;
  /** Snapshots, newest first: commit and the refs (branches/tags) pointing at it. */
  readonly revisions: ReadonlyArray<{ readonly commit: string; readonly refs: readonly string[]; readonly path: string }>;
  /** Format of the newest snapshot's weights. */
  readonly format: "df11" | "bf16" | "unknown";
}

/** Every model repo in the cache (Python's and ours are the same cache); none when the cache does not exist yet. */
export async function listCachedModels(cacheDir = hubEnvironment().cacheDir): Promise<CachedModel[]> {
  if (!existsSync(cacheDir)) return [];
  const { scanCacheDir } = await import("@huggingface/hub");
  const info = await scanCacheDir(cacheDir);
  const models: CachedModel[] = [];
  for (const repo of info.repos) {
    if (repo.id.type !== "model") continue;
    const revisions = [...repo.revisions]
      .sort((a, b) => b.lastModifiedAt.getTime() - a.lastModifiedAt.getTime())
      .map((r) => ({ commit: r.commitOid, refs: r.refs, path: r.path }));
    let format: CachedModel["format"] = "unknown";
    if (revisions[0]) {
      try {
        const config = JSON.parse(await readFile(join(revisions[0].path, "config.json"), "utf8"));
        format = config.dfloat11_config || config.dfloat11_version ? "df11" : config.torch_dtype === "bfloat16" || config.dtype === "bfloat16" ? "bf16" : "unknown";
      } catch {
        // no config in this snapshot
      }
    }
    models.push({ id: repo.id.name, sizeBytes: repo.size, revisions, format });
  }
  return models.sort((a, b) => a.id.localeCompare(b.id));
}
