// The serving benchmark's measurement (gpu-serve's waves, factored into serve-measure.ts) on the CPU with the
// official llama-tiny fixture: a real `serveModel`, the load generator in a process of its own (the built
// dist/serve-client.js, forked) and, for comparison, in this one. Every wave's requests get their tokens, the
// scheduler's steps are counted per wave, and the client process is gone afterwards — also when it fails.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, type Model } from "@df11/models";
import { fixturesRoot, repoRoot } from "../../../test-support/fixtures.js";
import { measureServing, type Level } from "../src/serve-measure.js";

const tiny = join(fixturesRoot, "llama-tiny", "bf16");
const present = existsSync(join(tiny, "config.json"));
const skipReason = `llama-tiny fixture not found at ${tiny} (set DF11_FIXTURES or provide ../shared/fixtures)`;
if (!present) console.warn(`[df11 tests] SKIPPING the serving benchmark's CPU test: ${skipReason}`);
const clientScript = join(repoRoot, "apps", "bench", "dist", "serve-client.js");

const PROMPT = 8;
const NEW = 6;
const gone = (pid: number) => {
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "ESRCH";
  }
};

describe.skipIf(!present)(`gpu-serve's waves on the CPU (llama-tiny; ${present ? "fixture found" : skipReason})`, () => {
  let model: Model;
  beforeAll(async () => {
    expect(existsSync(clientScript), `${clientScript} (build apps/bench first)`).toBe(true);
    // As gpu-serve loads it (df11 serve's defaults: shared prefill, a 5 ms gather window).
    model = await loadModel(tiny, { device: "cpu", slots: 4, maxContext: PROMPT + NEW + 8, sharedPrefill: true, prefillGatherMs: 5 });
  });
  afterAll(() => model?.dispose());

  const expectLevels = (levels: Level[], repeat: number) => {
    expect(levels.map((l) => l.concurrency)).toEqual([1, 3]);
    for (const l of levels) {
      expect(l.tokens).toBe(l.concurrency * NEW);
      expect(l.waveTokensPerSecond).toHaveLength(repeat);
      expect(l.aggregateTokensPerSecond).toBeCloseTo(l.tokens / l.wallSeconds, 6);
      // One wave's steps: each prompt prefilled (alone or shared), then NEW − 1 decode steps at least.
      expect(l.prefillSteps).toBeGreaterThanOrEqual(1);
      expect(l.prefillSteps).toBeLessThanOrEqual(l.concurrency);
      expect(l.decodeSteps).toBeGreaterThanOrEqual(NEW - 1);
      expect(l.decodeSteps).toBeLessThanOrEqual(l.concurrency * (NEW - 1));
      expect(l.medianTimeToFirstTokenMs).toBeGreaterThan(0);
      expect(l.medianTimeToFirstTokenMs).toBeLessThanOrEqual(l.medianLatencyMs);
      expect(l.p95LatencyMs).toBeGreaterThanOrEqual(l.medianLatencyMs);
    }
  };

  it("separate process: 1 and 3 concurrent, 2 waves each, every request's tokens; the client has exited", async () => {
    let pid = 0;
    const lines: string[] = [];
    const levels = await measureServing(model, { levels: [1, 3], repeat: 2, promptTokens: PROMPT, newTokens: NEW, clientScript, onClient: (p) => (pid = p), log: (l) => lines.push(l) });
    expect(pid).toBeGreaterThan(0);
    expect(pid).not.toBe(process.pid);
    expect(gone(pid)).toBe(true);
    expectLevels(levels, 2);
    // The scheduler's counters are read per wave (not summed over waves or levels): one request, one prefill.
    expect(levels[0].prefillSteps).toBe(1);
    expect(levels[0].decodeSteps).toBe(NEW - 1);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatch(/^ {2}3 concurrent: \d+ tok\/s aggregate \(median of 2: /);
  });

  it("same process (--client same-process): the same waves", async () => {
    const levels = await measureServing(model, { levels: [1, 3], repeat: 1, promptTokens: PROMPT, newTokens: NEW, client: "same-process" });
    expectLevels(levels, 1);
  });

  it("a client's failure comes back with its message, and the client process is gone", async () => {
    let pid = 0;
    // More new tokens than the model's context holds: the server refuses the requests (HTTP 400).
    const run = measureServing(model, { levels: [1], repeat: 1, promptTokens: PROMPT, newTokens: 10_000, clientScript, onClient: (p) => (pid = p) });
    await expect(run).rejects.toThrow(/^the load client \(separate process\) failed: request 999: HTTP 400/);
    expect(gone(pid)).toBe(true);
    // The model still serves afterwards (the server was closed, nothing left running).
    const levels = await measureServing(model, { levels: [1], repeat: 1, promptTokens: PROMPT, newTokens: NEW, clientScript });
    expect(levels[0].tokens).toBe(NEW);
  });

  it("a missing client script is said, nothing started", async () => {
    await expect(measureServing(model, { levels: [1], repeat: 1, promptTokens: PROMPT, newTokens: NEW, clientScript: join(repoRoot, "apps", "bench", "dist", "no-such-client.js") })).rejects.toThrow(/the load client .*no-such-client\.js is missing \(build apps\/bench/);
  });
});
