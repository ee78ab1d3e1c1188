import { randomUUID, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Model } from "@df11/models";
import { bestOf, checkTokenizer, ResponseFormat, startCandidates } from "./completions.js";
import { ApiError, parseCompletionRequest, type CompletionRequest, type RequestLimits } from "./openai-protocol.js";
import { weightsReport } from "../weights-report.js";

export interface ServeOptions {
  /** Default 127.0.0.1: reachable from this machine only. */
  readonly host?: string;
  /** Default 8080; 0 picks a free port. */
  readonly port?: number;
  /** When set, every /v1 request needs `Authorization: Bearer <apiKey>`. */
  readonly apiKey?: string;
  /** The id clients name in `model` (default: the model's id). */
  readonly modelId?: string;
  /** Largest request body in bytes (default 1 MiB). */
  readonly maxBodyBytes?: number;
  /** Largest max_tokens a request may ask (default: the model's context). */
  readonly maxTokensLimit?: number;
  readonly log?: (line: string) => void;
}

/** A running server: its URL, close() to stop it at once, shutdown() to stop it gracefully. */
export interface RunningServer {
  readonly url: string;
  readonly server: Server;
  /** Completion requests being answered (their bodies read, generated or sent). */
  readonly inFlight: number;
  /** Stop now: connections close, running generations end. */
  close(): Promise<void>;
  /**
   * Stop gracefully, as production servers drain: from the call on every new request is answered 503 (code
   * `shutting_down`, `Connection: close`) while the port stays open to say so; requests in flight run to their
   * end for up to `timeoutMs` (default 30 s), then those left are cut — their generations end, a stream with a
   * last chunk whose finish_reason is `"abort"` (vLLM's word for a request it ended) and `[DONE]`, usage too
   * when asked, a whole response with what was generated, finish_reason `"abort"` — never a dropped socket.
   * Resolves once every response is sent and the server is closed (the port released). Calling it again
   * returns the same drain.
   */
  shutdown(options?: { readonly timeoutMs?: number }): Promise<ShutdownReport>;
}

/** How a graceful shutdown went. */
export interface ShutdownReport {
  /** Requests in flight when it began. */
  readonly inFlight: number;
  /** Of those, the ones cut at the deadline (finish_reason "abort"). */
  readonly cut: number;
  readonly seconds: number;
}

const send = (res: ServerResponse, status: number, body: object) => {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
};

/** Bodies are read whole up to `limit`; a larger one is drained (up to 64 MiB, so the client can read the 413) and refused. */
async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > 64 << 20) req.destroy();
    else if (size <= limit) chunks.push(chunk as Buffer);
  }
  if (size > limit) throw new ApiError(413, `the request body exceeds ${limit} bytes`, null, "request_too_large");
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch (e) {
    throw new ApiError(400, `the body is not valid JSON: ${(e as Error).message}`, null, "invalid_json");
  }
}

const shuttingDown = () => new ApiError(503, "the server is shutting down: it takes no new requests (those in flight are finishing)", null, "shutting_down");

/** `work`'s outcome, unless `signal` aborts first (a shutdown's deadline while a body is still coming): then a 503. */
function unlessAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(shuttingDown());
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    const settle = (f: () => void) => {
      signal.removeEventListener("abort", onAbort);
      f();
    };
    work.then(
      (v) => settle(() => resolve(v)),
      (e) => settle(() => reject(e)),
    );
  });
}

const authorized = (req: IncomingMessage, key: string): boolean => {
  const given = Buffer.from(/^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1] ?? "");
  const want = Buffer.from(key);
  return given.length === want.length && timingSafeEqual(given, want);
};

/** After a shutdown's deadline, how long the responses it ended get to be sent before every connection closes. */
const CUT_GRACE_MS = 1000;

/**
 * Serve a model over OpenAI's HTTP API: POST /v1/chat/completions and /v1/completions (SSE streaming or
 * not), GET /v1/models, GET /health. Requests share the model's continuous-batching scheduler.
 */
export async function serveModel(model: Model, options: ServeOptions = {}): Promise<RunningServer> {
  const modelId = options.modelId ?? model.id;
  const maxBody = options.maxBodyBytes ?? 1 << 20;
  const maxTokensLimit = options.maxTokensLimit ?? model.lm.maxContext;
  const created = Math.floor(Date.now() / 1000);
  const log = options.log ?? (() => {});

  const limits: RequestLimits = {
    maxTokens: maxTokensLimit,
    vocabSize: model.lm.config.vocabSize,
    templateReads: (variable) => new RegExp(`\\b${variable}\\b`).test(model.tokenizer?.chatTemplate() ?? ""),
  };
  const chunkOf = (id: string, chat: boolean, choices: object[], usage?: object, extra?: object) => ({
    id,
    object: chat ? "chat.completion.chunk" : "text_completion",
    created: Math.floor(Date.now() / 1000),
    model: modelId,
    choices,
    ...(usage ? { usage } : {}),
    ...extra,
  });

  // Completion requests in flight, each by the controller that ends its generations: a client that goes away
  // ends them (its slots are free at the next token), and so does a graceful shutdown's deadline (see shutdown()).
  const inFlight = new Set<AbortController>();
  let draining = false;
  let onIdle: (() => void) | undefined;

  const complete = async (req: IncomingMessage, res: ServerResponse, chat: boolean) => {
    const abort = new AbortController();
    let gone = false; // the client went away: nothing more is sent
    inFlight.add(abort);
    // "close" comes once the response is handed to the system (or the connection dropped): only then is it no longer in flight.
    res.on("close", () => {
      gone = !res.writableFinished;
      abort.abort();
      inFlight.delete(abort);
      if (inFlight.size === 0) onIdle?.();
    });
    const request: CompletionRequest = parseCompletionRequest(await unlessAborted(readJson(req, maxBody), abort.signal), chat, limits);
    if (request.model !== modelId) throw new ApiError(404, `The model \`${request.model}\` does not exist (this server serves \`${modelId}\`)`, "model", "model_not_found");
    checkTokenizer(model, request, modelId);
    const candidates = startCandidates(model, request, abort);
    const id = `${chat ? "chatcmpl" : "cmpl"}-${randomUUID()}`;
    const promptTokens = candidates.filter((c) => c.first).reduce((n, c) => n + c.generation.promptTokens, 0);
    const usage = (completion: number) => ({ prompt_tokens: promptTokens, completion_tokens: completion, total_tokens: promptTokens + completion });
    // Token ids when asked for (vLLM's return_token_ids), and always without a tokenizer: they are the whole answer then.
    const format = new ResponseFormat(model, chat, request.logprobs !== undefined, request.returnTokenIds || !model.tokenizer);
    // Chat: the prompt's ids once, on the response (streamed: on its first chunk), as vLLM puts them.
    const chatPromptIds = chat ? format.promptTokenIds(candidates[0]) : {};

    if (!request.stream) {
      const results = await Promise.all(candidates.map(async (c) => ({ c, r: await c.generation.result() })));
      if (gone) return;
      const choices = bestOf(results, request).map(({ c, r }, index) => format.choice(index, c, r));
      const completion = results.reduce((n, { r }) => n + r.tokenIds.length, 0);
      return send(res, 200, { id, object: chat ? "chat.completion" : "text_completion", created: Math.floor(Date.now() / 1000), model: modelId, choices, usage: usage(completion), ...chatPromptIds });
    }

    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
    const event = (data: object | string) => res.write(`data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`);
    let completion = 0;
    await Promise.all(
      candidates.map(async (c, index) => {
        for (const delta of format.opening(index, c)) event(chunkOf(id, chat, [delta], undefined, index === 0 ? chatPromptIds : undefined));
        let reason = "aborted";
        for await (const t of c.generation) {
          if (t.id >= 0) completion++;
          // Nothing when there is nothing to show (a character or a possible stop string is incomplete) and no token ids are sent.
          const delta = format.delta(index, t);
          if (delta) event(chunkOf(id, chat, [delta]));
        }
        reason = c.generation.finishReason ?? reason;
        if (!gone) event(chunkOf(id, chat, [format.closing(index, reason)]));
      }),
    );
    if (gone) return res.end();
    if (request.includeUsage) event(chunkOf(id, chat, [], usage(completion)));
    event("[DONE]");
    res.end();
  };

  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    try {
      if (draining) {
        res.setHeader("connection", "close");
        throw shuttingDown();
      }
      if (url.pathname === "/health" && req.method === "GET") {
        // Tensor parallel: the GPUs the model is split over.
        const gpus = model.lm.backend.memory?.().devices?.map((d) => d.device);
        return send(res, 200, { status: "ok", model: modelId, device: model.device, ...(gpus ? { devices: gpus } : {}), weights: weightsReport(model.lm.weights), active: model.scheduler.active, queued: model.scheduler.queued });
      }
      if (!url.pathname.startsWith("/v1/")) throw new ApiError(404, `no route ${req.method} ${url.pathname}`, null, "not_found");
      if (options.apiKey && !authorized(req, options.apiKey)) throw new ApiError(401, "Incorrect or missing API key: send Authorization: Bearer <key>", null, "invalid_api_key");
      if (url.pathname === "/v1/models" && req.method === "GET") {
        return send(res, 200, { object: "list", data: [{ id: modelId, object: "model", created, owned_by: "df11" }] });
      }
      if (req.method === "POST" && url.pathname === "/v1/chat/completions") return await complete(req, res, true);
      if (req.method === "POST" && url.pathname === "/v1/completions") return await complete(req, res, false);
      throw new ApiError(404, `no route ${req.method} ${url.pathname}`, null, "not_found");
    } catch (e) {
      const err = e instanceof ApiError ? e : new ApiError(500, `internal error: ${(e as Error).message}`);
      if (err.status === 500) log(`500 ${req.method} ${url.pathname}: ${(e as Error).stack ?? e}`);
      if (!res.headersSent) send(res, err.status, err.body());
      else res.end();
    }
  });
  server.requestTimeout = 0; // generations may stream for long; bodies are bounded by size instead
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 8080, options.host ?? "127.0.0.1", () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  let shutdown: Promise<ShutdownReport> | undefined;
  const drain = async (timeoutMs: number): Promise<ShutdownReport> => {
    const t0 = performance.now();
    draining = true;
    server.closeIdleConnections(); // kept-alive connections with nothing in flight
    const count = inFlight.size;
    const idle = new Promise<void>((resolve) => (inFlight.size === 0 ? resolve() : (onIdle = resolve)));
    log(`draining: new requests get 503; ${count === 1 ? "1 request" : `${count} requests`} in flight, given up to ${timeoutMs / 1000} s to finish`);
    let timer: NodeJS.Timeout | undefined;
    const late = await Promise.race([idle.then(() => false), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs)))]);
    clearTimeout(timer);
    const cut = late ? inFlight.size : 0;
    if (late) {
      log(`shutdown deadline (${timeoutMs / 1000} s) reached: ending ${cut === 1 ? "1 request" : `${cut} requests`} still in flight (finish_reason "abort")`);
      for (const a of inFlight) a.abort();
      // Their last events go out at once; a client that reads nothing more could hold a response open: close() ends it after this.
      await Promise.race([idle, new Promise((resolve) => setTimeout(resolve, CUT_GRACE_MS).unref())]);
    }
    await close();
    return { inFlight: count, cut, seconds: (performance.now() - t0) / 1000 };
  };
  return {
    url: `http://${host}:${address.port}`,
    server,
    get inFlight() {
      return inFlight.size;
    },
    close,
    shutdown: (o = {}) => (shutdown ??= drain(o.timeoutMs ?? 30_000)),
  };
}
