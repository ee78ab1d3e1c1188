// The serving benchmark's request (serve-load.ts) against a scripted SSE server: time to first token is the
// first token's event — not the opening event a model without a tokenizer sends at once (its prompt's ids) —
// events split across network chunks are read whole, and a stream without its usage is an error. And the
// forked client (dist/serve-client.js) exits when the server's process goes away mid-request: no orphan.
import { fork } from "node:child_process";
import { join } from "node:path";
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoRoot } from "../../../test-support/fixtures.js";
import { request, type LoadConfig } from "../src/serve-load.js";

let server: Server;
let url = "";
/** What the next response does: written to the response, with waits between. */
let script: (res: ServerResponse) => Promise<void>;
let received = () => {};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const chunk = (choice: object, usage?: object) => `data: ${JSON.stringify({ object: "text_completion", choices: usage ? [] : [{ index: 0, ...choice }], ...(usage ? { usage } : {}) })}\n\n`;

beforeAll(async () => {
  server = createServer(async (req, res) => {
    for await (const _ of req); // the body
    received();
    res.writeHead(200, { "content-type": "text/event-stream" });
    await script(res);
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

const config = (): LoadConfig => ({ url, levels: [1], repeat: 1, promptTokens: 4, newTokens: 2, vocabSize: 512 });

describe("serve-load request", () => {
  it("times the first token's event, not the opening one; reads an event split over chunks; tokens from the usage", async () => {
    script = async (res) => {
      res.write(chunk({ text: "", prompt_token_ids: [1, 2, 3, 4] })); // at once, before any token
      await sleep(150);
      const first = chunk({ text: "", token_ids: [7] });
      res.write(first.slice(0, 20));
      await sleep(30);
      res.write(first.slice(20));
      res.write(chunk({ text: "", token_ids: [8] }));
      const usage = chunk({}, { prompt_tokens: 4, completion_tokens: 2, total_tokens: 6 });
      res.write(usage.slice(0, usage.indexOf("completion_tokens") + 5)); // the usage split inside its number's key
      await sleep(10);
      res.write(usage.slice(usage.indexOf("completion_tokens") + 5) + "data: [DONE]\n\n");
    };
    const r = await request(config(), 0);
    expect(r.ttft).toBeGreaterThanOrEqual(170);
    expect(r.total).toBeGreaterThanOrEqual(r.ttft);
    expect(r.tokens).toBe(2);
  });

  it("text deltas (a model with a tokenizer) count as tokens too", async () => {
    script = async (res) => {
      await sleep(50);
      res.write(chunk({ text: " the" }) + chunk({}, { prompt_tokens: 4, completion_tokens: 1, total_tokens: 5 }) + "data: [DONE]\n\n");
    };
    const r = await request(config(), 0);
    expect(r.ttft).toBeGreaterThanOrEqual(45);
    expect(r.tokens).toBe(1);
  });

  it("a stream that ends without its usage or [DONE] is an error", async () => {
    script = async (res) => void res.write(chunk({ text: "", token_ids: [7] }));
    await expect(request(config(), 3)).rejects.toThrow("request 3: the stream ended without its usage");
    script = async (res) => void res.write(chunk({}, { prompt_tokens: 4, completion_tokens: 0, total_tokens: 4 }));
    await expect(request(config(), 4)).rejects.toThrow("request 4: the stream ended without [DONE]");
  });
});

describe("serve-client (forked)", () => {
  it("exits when the server's process lets go of it mid-request (as when that process dies)", async () => {
    script = () => new Promise(() => {}); // the response never ends
    const arrived = new Promise<void>((r) => (received = r));
    const child = fork(join(repoRoot, "apps", "bench", "dist", "serve-client.js"), [], { execArgv: [], stdio: ["ignore", "inherit", "inherit", "ipc"] });
    const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
    child.send({ type: "run", config: config() });
    await arrived; // its warm-up request is in flight
    child.disconnect();
    expect(await exited).toBe(3);
  });
});
