// `df11 serve` stopped by Ctrl-C (SIGINT) or SIGTERM drains as production servers do: new requests get 503
// `shutting_down`, requests in flight (a stream, a body still being uploaded) finish within --shutdown-timeout,
// streams still running at the deadline end with finish_reason "abort" and [DONE] rather than a dropped
// socket, and the process exits 0; a second Ctrl-C exits at once (130). The built command serves an official
// fixture model (qwen3-tiny, no tokenizer: token-id prompts) on the CPU.
import { spawn, type ChildProcess } from "node:child_process";
import { request as httpRequest } from "node:http";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { fixtureNames, fixturesRoot, fixturesSkipReason } from "../../../test-support/fixtures.js";
import { bin } from "./helpers.js";

const MODEL = "qwen3-tiny";
const available = fixtureNames.includes(MODEL);
/** 8 choices of 250 tokens: about 1.5 s on a 2-core host's CPU, long enough to be in flight when the signal comes. */
const LONG = { model: "m", prompt: [1, 2, 3], max_tokens: 250, n: 8, temperature: 0, ignore_eos: true, stream: true, stream_options: { include_usage: true } };
const SHORT = JSON.stringify({ model: "m", prompt: [4, 5, 6], max_tokens: 4, temperature: 0, ignore_eos: true });

interface Served {
  readonly child: ChildProcess;
  readonly url: string;
  stderr(): string;
  /** Resolves when stderr has a line matching `pattern`. */
  until(pattern: RegExp): Promise<void>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
});

async function serve(...args: string[]): Promise<Served> {
  const child = spawn(process.execPath, [bin, "serve", join(fixturesRoot, MODEL, "bf16"), "--device", "cpu", "--port", "0", "--model-id", "m", ...args], { stdio: ["ignore", "ignore", "pipe"] });
  children.push(child);
  let stderr = "";
  const waiters: Array<{ pattern: RegExp; resolve: () => void }> = [];
  child.stderr!.on("data", (d) => {
    stderr += d;
    for (const w of waiters.filter((w) => w.pattern.test(stderr))) w.resolve();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  const until = (pattern: RegExp) =>
    new Promise<void>((resolve, reject) => {
      if (pattern.test(stderr)) return resolve();
      waiters.push({ pattern, resolve });
      void exited.then(() => (pattern.test(stderr) ? resolve() : reject(new Error(`df11 serve exited without printing ${pattern}:\n${stderr}`))));
    });
  await until(/ at (http:\/\/\S+)\/v1\n/);
  return { child, url: / at (http:\/\/\S+)\/v1\n/.exec(stderr)![1], stderr: () => stderr, until, exited };
}

/** A streaming completion: resolves `first` at its first event; `events` are the parsed `data:` payloads, `[DONE]` as the string. */
function stream(url: string, body: object) {
  let first!: () => void;
  const started = new Promise<void>((resolve) => (first = resolve));
  const done = (async () => {
    const res = await fetch(`${url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    expect(res.status).toBe(200);
    let text = "";
    try {
      for await (const chunk of res.body!) {
        text += Buffer.from(chunk).toString("utf8");
        first();
      }
    } catch {
      // a dropped connection: the events so far say how far it got
    }
    return text
      .split("\n\n")
      .filter((e) => e.startsWith("data: "))
      .map((e) => (e === "data: [DONE]" ? "[DONE]" : JSON.parse(e.slice(6))));
  })();
  return { started, done };
}

/** A request whose body comes in two parts: the first now, the rest when `finish()` is called (never, to hold it open). */
function uploading(url: string, body: string) {
  const req = httpRequest(`${url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } });
  const response = new Promise<{ status: number; json: { choices?: Array<{ finish_reason: string }>; error?: { code: string } } }>((resolve, reject) => {
    req.on("response", (res) => {
      let text = "";
      res.on("data", (d) => (text += d));
      res.on("end", () => resolve({ status: res.statusCode!, json: JSON.parse(text) }));
    });
    req.on("error", reject);
  });
  const half = Math.floor(body.length / 2);
  const sent = new Promise<void>((resolve) => req.write(body.slice(0, half), () => resolve()));
  return { sent, response, finish: () => req.end(body.slice(half)) };
}

const finishReasons = (events: Array<string | { choices: Array<{ finish_reason: string | null }> }>) =>
  events.flatMap((e) => (typeof e === "string" ? [] : e.choices.map((c) => c.finish_reason))).filter((r) => r !== null);

describe.skipIf(!available)(`df11 serve: graceful shutdown (${available ? `${MODEL} fixture on the CPU` : fixturesSkipReason})`, () => {
  it("Ctrl-C: new requests get 503 while the stream in flight and a request still uploading its body finish whole; then it exits 0", async () => {
    const s = await serve();
    const slow = uploading(s.url, SHORT);
    await slow.sent;
    const long = stream(s.url, LONG);
    await long.started;
    s.child.kill("SIGINT");
    await s.until(/draining: new requests get 503; 2 requests in flight, given up to 30 s to finish/);
    const refused = await fetch(`${s.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: SHORT });
    expect(refused.status).toBe(503);
    expect(refused.headers.get("connection")).toBe("close");
    expect(((await refused.json()) as { error: object }).error).toMatchObject({ code: "shutting_down", type: "server_error", message: expect.stringMatching(/shutting down/) });
    expect((await fetch(`${s.url}/health`)).status).toBe(503);
    slow.finish(); // the body it began before the signal: answered as any other
    expect(await slow.response).toMatchObject({ status: 200, json: { choices: [{ finish_reason: "length" }] } });
    const events = await long.done;
    expect(events.at(-1)).toBe("[DONE]");
    expect(finishReasons(events)).toEqual(Array(8).fill("length"));
    expect((events.at(-2) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(8 * 250);
    expect(await s.exited).toEqual({ code: 0, signal: null });
    expect(s.stderr()).toMatch(/SIGINT: shutting down \(Ctrl-C again exits at once\)\n/);
    expect(s.stderr()).toMatch(/stopped after [\d.]+ s: 2 of 2 requests in flight finished\n$/);
  });

  it("SIGTERM with --shutdown-timeout 0.3: at the deadline the stream ends with finish_reason \"abort\" and [DONE], a body still uploading gets 503; exit 0", async () => {
    const s = await serve("--shutdown-timeout", "0.3");
    const stuck = uploading(s.url, SHORT); // never finished
    await stuck.sent;
    const long = stream(s.url, LONG);
    await long.started;
    const t0 = performance.now();
    s.child.kill("SIGTERM");
    const events = await long.done;
    expect(events.at(-1)).toBe("[DONE]");
    expect(finishReasons(events)).toEqual(Array(8).fill("abort"));
    expect((events.at(-2) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBeLessThan(8 * 250);
    expect(await stuck.response).toMatchObject({ status: 503, json: { error: { code: "shutting_down" } } });
    expect(await s.exited).toEqual({ code: 0, signal: null });
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(s.stderr()).toMatch(/shutdown deadline \(0\.3 s\) reached: ending 2 requests still in flight \(finish_reason "abort"\)\n/);
    expect(s.stderr()).toMatch(/stopped after [\d.]+ s: 0 of 2 requests in flight finished, 2 ended at the deadline\n$/);
  });

  it("a second Ctrl-C exits at once (130), dropping what is in flight", async () => {
    const s = await serve();
    const long = stream(s.url, { ...LONG, max_tokens: 256 - 3, n: 16 });
    await long.started;
    s.child.kill("SIGINT");
    await s.until(/draining: /);
    s.child.kill("SIGINT");
    expect(await s.exited).toEqual({ code: 130, signal: null });
    expect(s.stderr()).toMatch(/SIGINT again: exiting now, dropping 1 request in flight\n$/);
    expect((await long.done).at(-1)).not.toBe("[DONE]");
  });
});
