// A small Hugging Face Hub stand-in on 127.0.0.1 for tests: the endpoints @huggingface/hub and df11
// use (model info, file tree, resolve with redirects to a CDN path, ETags, Range requests), plus
// fault injection (connection cut mid-file, corrupted content) and a request log.
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface FakeRepo {
  readonly id: string;
  readonly commit: string;
  readonly files: Record<string, Uint8Array>;
  /** When set, requests need `Authorization: Bearer <token>`. */
  readonly token?: string;
  /** Other branches or tags: name → its commit and files (`main` is `commit` / `files`). */
  readonly revisions?: Record<string, { readonly commit: string; readonly files: Record<string, Uint8Array> }>;
}

/** The commit and files a revision (main, a branch or tag name, or a commit hash) names, if any. */
function revisionOf(repo: FakeRepo, revision: string): { commit: string; files: Record<string, Uint8Array> } | undefined {
  if (revision === "main" || revision === repo.commit) return { commit: repo.commit, files: repo.files };
  const named = repo.revisions?.[revision];
  if (named) return named;
  return Object.values(repo.revisions ?? {}).find((r) => r.commit === revision);
}

const isLfs = (path: string) => path.endsWith(".safetensors");
export const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
export const gitSha1 = (b: Uint8Array) => createHash("sha1").update(`blob ${b.length}\0`).update(b).digest("hex");

export class FakeHub {
  private server?: Server;
  private cdn?: Server;
  readonly repos = new Map<string, FakeRepo>();
  /** Every request: "METHOD path [range]". */
  readonly log: string[] = [];
  /** Cut the connection after this many bytes, once, for the file at this path. */
  readonly cutOnce = new Map<string, number>();
  /** Serve these paths with one byte flipped. */
  readonly corrupt = new Set<string>();
  endpoint = "";
  /** Where LFS files are redirected: another loopback host, as the Hub's CDN is another host (clients do not follow such redirects on HEAD). */
  cdnEndpoint = "";

  add(repo: FakeRepo): this {
    this.repos.set(repo.id, repo);
    return this;
  }

  async start(): Promise<string> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((r) => this.server!.listen(0, "127.0.0.1", r));
    this.endpoint = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    this.cdn = createServer((req, res) => this.handle(req, res));
    try {
      await new Promise<void>((resolve, reject) => {
        this.cdn!.once("error", reject);
        this.cdn!.listen(0, "127.0.0.2", resolve);
      });
      this.cdnEndpoint = `http://127.0.0.2:${(this.cdn.address() as AddressInfo).port}`;
    } catch {
      this.cdn = undefined; // not Linux: the CDN shares the Hub's host
      this.cdnEndpoint = this.endpoint;
    }
    return this.endpoint;
  }

  async stop(): Promise<void> {
    for (const s of [this.server, this.cdn]) {
      await new Promise<void>((r) => (s ? s.close(() => r()) : r()));
      s?.closeAllConnections?.();
    }
  }

  private json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
    res.writeHead(status, { "Content-Type": "application/json", ...headers });
    res.end(JSON.stringify(body));
  }

  private authorized(repo: FakeRepo, req: IncomingMessage): boolean {
    return !repo.token || req.headers.authorization === `Bearer ${repo.token}`;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url!, "http://x");
    this.log.push(`${req.method} ${url.pathname}${req.headers.range ? ` ${req.headers.range}` : ""}`);
    let m = /^\/api\/models\/([^/]+\/[^/]+)\/(revision|tree)\/([^/]+)(\/.*)?$/.exec(url.pathname);
    if (m) {
      const repo = this.repos.get(m[1]);
      if (!repo) return this.json(res, 404, { error: "Repository not found" }, { "X-Error-Code": "RepoNotFound" });
      if (!this.authorized(repo, req)) return this.json(res, 401, { error: "Access to this model is restricted" }, { "X-Error-Code": "GatedRepo" });
      const rev = revisionOf(repo, decodeURIComponent(m[3]));
      if (!rev) return this.json(res, 404, { error: "Revision not found" }, { "X-Error-Code": "RevisionNotFound" });
      if (m[2] === "revision") {
        return this.json(res, 200, { id: repo.id, modelId: repo.id, sha: rev.commit, private: false, siblings: Object.keys(rev.files).map((rfilename) => ({ rfilename })) });
      }
      return this.json(
        res,
        200,
        Object.entries(rev.files).map(([path, data]) => ({
          type: "file",
          path,
          size: isLfs(path) ? 134 : data.length,
          oid: isLfs(path) ? sha256(Buffer.from(`pointer ${path}`)).slice(0, 40) : gitSha1(data),
          ...(isLfs(path) ? { lfs: { oid: sha256(data), size: data.length, pointerSize: 134 } } : {}),
        })),
      );
    }
    m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (m) {
      const repo = this.repos.get(m[1]);
      if (!repo) return this.json(res, 404, { error: "Repository not found" }, { "X-Error-Code": "RepoNotFound" });
      if (!this.authorized(repo, req)) return this.json(res, 401, { error: "Access restricted" }, { "X-Error-Code": "GatedRepo" });
      const rev = revisionOf(repo, decodeURIComponent(m[2]));
      if (!rev) return this.json(res, 404, { error: "Revision not found" }, { "X-Error-Code": "RevisionNotFound" });
      const path = decodeURIComponent(m[3]);
      const data = rev.files[path];
      if (!data) return this.json(res, 404, { error: "Entry not found" }, { "X-Error-Code": "EntryNotFound" });
      const common = { "X-Repo-Commit": rev.commit, "X-Linked-Size": String(data.length) };
      if (isLfs(path)) {
        // Absolute, as the Hub's CDN; the content is found by its sha256, whatever the revision.
        res.writeHead(302, { ...common, "X-Linked-Etag": `"${sha256(data)}"`, Location: `${this.cdnEndpoint}/cdn/${encodeURIComponent(repo.id)}/${sha256(data)}/${encodeURIComponent(path)}` });
        return void res.end();
      }
      return this.serve(req, res, path, data, { ...common, ETag: `"${gitSha1(data)}"` });
    }
    m = /^\/cdn\/([^/]+)\/([0-9a-f]{64})\/(.+)$/.exec(url.pathname);
    if (m) {
      const repo = this.repos.get(decodeURIComponent(m[1]));
      const oid = decodeURIComponent(m[2]);
      const all = repo ? [repo.files, ...Object.values(repo.revisions ?? {}).map((r) => r.files)] : [];
      const found = all.flatMap((files) => Object.entries(files)).find(([, d]) => sha256(d) === oid);
      if (!found) return this.json(res, 404, { error: "not found" });
      return this.serve(req, res, found[0], found[1], { ETag: `"${oid}"` });
    }
    this.json(res, 404, { error: `no route ${url.pathname}` });
  }

  /** Serve bytes with Range support and the configured faults. */
  private serve(req: IncomingMessage, res: ServerResponse, path: string, data: Uint8Array, headers: Record<string, string>): void {
    let body = Buffer.from(data);
    if (this.corrupt.has(path)) {
      body = Buffer.from(body);
      body[body.length >> 1] ^= 0xff;
    }
    let start = 0;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
    if (range) {
      start = Number(range[1]);
      const end = range[2] ? Number(range[2]) + 1 : body.length;
      if (start >= body.length) {
        res.writeHead(416, { "Content-Range": `bytes */${body.length}` });
        return void res.end();
      }
      res.writeHead(206, { ...headers, "Content-Length": String(end - start), "Content-Range": `bytes ${start}-${end - 1}/${body.length}` });
      body = body.subarray(start, end);
    } else {
      res.writeHead(200, { ...headers, "Content-Length": String(body.length) });
    }
    const cut = this.cutOnce.get(path);
    if (cut !== undefined && cut > start) {
      this.cutOnce.delete(path);
      res.write(body.subarray(0, cut - start), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    res.end(body);
  }
}
