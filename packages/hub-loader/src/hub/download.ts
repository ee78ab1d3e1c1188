import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, rename, rm, stat, truncate } from "node:fs/promises";
import { dirname } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { CorruptDownloadError, HubAuthError, HubError, HubNetworkError, HubNotFoundError } from "../errors.js";

/** What the Hub says a file is: where to get it, its size, and the hash its etag carries. */
export interface RemoteFile {
  readonly repo: string;
  readonly path: string;
  readonly url: string;
  readonly size: number;
  /** LFS files: the sha256 of the content (also their etag). */
  readonly sha256?: string;
  /** Regular git files: the git blob sha1 (also their etag). */
  readonly gitSha1?: string;
}

export interface DownloadContext {
  readonly token?: string;
  readonly fetch?: typeof fetch;
  /** Called with each chunk's byte count. */
  readonly onBytes?: (bytes: number) => void;
  /** Attempts per file; each retry resumes where the last one stopped. */
  readonly attempts?: number;
}

const fileSize = async (path: string) => {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
};

/** sha256 (or git blob sha1) of a file, streamed. */
async function hashFile(path: string, kind: "sha256" | "git-sha1", size: number): Promise<string> {
  const h = createHash(kind === "sha256" ? "sha256" : "sha1");
  if (kind === "git-sha1") h.update(`blob ${size}\0`);
  await pipeline(createReadStream(path), h);
  return h.digest("hex");
}

function httpError(file: RemoteFile, status: number): HubError {
  if (status === 401 || status === 403) return new HubAuthError(file.repo, status);
  if (status === 404) return new HubNotFoundError(file.repo, `${file.path} not found (HTTP 404)`);
  return new HubError(`${file.repo}: ${file.path}: HTTP ${status}`);
}

/**
 * Download `file` into `blobPath` through `blobPath.incomplete`: resumes a partial download with an
 * HTTP Range request (also across runs), retries a cut connection, and checks size and hash before the
 * blob appears under its final name. A mismatch deletes the partial file and throws.
 */
export async function downloadBlob(file: RemoteFile, blobPath: string, ctx: DownloadContext = {}): Promise<void> {
  const doFetch = ctx.fetch ?? fetch;
  const partial = `${blobPath}.incomplete`;
  await mkdir(dirname(blobPath), { recursive: true });
  const attempts = ctx.attempts ?? 4;
  let lastError: unknown;
  for (let attempt = 0; attempt < attempts; attempt++) {
    let have = await fileSize(partial);
    if (have > file.size) {
      await rm(partial, { force: true });
      have = 0;
    }
    if (have < file.size || file.size === 0) {
      let res: Response;
      try {
        res = await doFetch(file.url, {
          headers: {
            ...(ctx.token ? { Authorization: `Bearer ${ctx.token}` } : {}),
            ...(have > 0 ? { Range: `bytes=${have}-` } : {}),
          },
        });
      } catch (e) {
        lastError = new HubNetworkError(`${file.repo}: ${file.path}: cannot reach ${new URL(file.url).origin} (${(e as Error).message})`);
        continue;
      }
      if (res.status === 416 && have === file.size) {
        // Already complete.
      } else if (!res.ok) {
        throw httpError(file, res.status);
      } else {
        if (have > 0 && res.status !== 206) {
          await truncate(partial, 0); // the server ignored the range: start over
          have = 0;
        }
        ctx.onBytes?.(have);
        try {
          const counter = async function* (body: AsyncIterable<Uint8Array>) {
            for await (const chunk of body) {
              ctx.onBytes?.(chunk.byteLength);
              yield chunk;
            }
          };
          await pipeline(Readable.fromWeb(res.body as never), counter, createWriteStream(partial, { flags: "a" }));
        } catch (e) {
          lastError = new HubNetworkError(`${file.repo}: ${file.path}: connection lost after ${await fileSize(partial)} of ${file.size} bytes (${(e as Error).message})`);
          ctx.onBytes?.(-(await fileSize(partial)));
          continue;
        }
      }
    }
    const got = await fileSize(partial);
    if (got !== file.size) {
      lastError = new HubNetworkError(`${file.repo}: ${file.path}: got ${got} of ${file.size} bytes`);
      if (got > file.size) await rm(partial, { force: true });
      ctx.onBytes?.(-got);
      continue;
    }
    const expected = file.sha256 ?? file.gitSha1;
    if (expected) {
      const actual = await hashFile(partial, file.sha256 ? "sha256" : "git-sha1", file.size);
      if (actual !== expected) {
        await rm(partial, { force: true });
        throw new CorruptDownloadError(file.repo, file.path, `${file.sha256 ? "sha256" : "git sha1"} ${actual} ≠ expected ${expected}`);
      }
    }
    await rename(partial, blobPath);
    return;
  }
  throw lastError instanceof Error ? lastError : new HubNetworkError(`${file.repo}: ${file.path}: download failed`);
}
