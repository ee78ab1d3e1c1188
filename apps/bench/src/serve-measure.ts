/**
 * The serving benchmark's measurement, on any device: `df11 serve`'s server (serveModel, in this process)
 * under waves of concurrent streaming completions from the load generator (`serve-load.ts`) — by default
 * in a process of its own (`serve-client.ts`, forked), as real clients are, so their stream parsing does not
 * share the server's event loop (a GPU step holds it); `client: "same-process"` runs them here, as the
 * benchmark did before. The client says when each wave starts and ends, and the scheduler's step counters
 * are read there, so each wave's steps are its own. Each level is its median wave.
 */
import { fork, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Model } from "@df11/models";
import { serveModel } from "@df11/cli";
import { runWaves, type FromClient, type LoadConfig, type ToClient, type WaveMeasurement } from "./serve-load.js";

export const CLIENT_MODES = ["separate-process", "same-process"] as const;
export type ClientMode = (typeof CLIENT_MODES)[number];

export interface Level {
  readonly concurrency: number;
  readonly aggregateTokensPerSecond: number;
  readonly wallSeconds: number;
  readonly medianTimeToFirstTokenMs: number;
  readonly p95TimeToFirstTokenMs: number;
  readonly medianLatencyMs: number;
  readonly p95LatencyMs: number;
  readonly tokens: number;
  /** Scheduler steps the level took: prefill steps (prompts alone or sharing one) and decode steps. */
  readonly prefillSteps: number;
  readonly decodeSteps: number;
  /** Of the decode steps, those queued before the previous step's tokens were read (pipelined greedy decoding). */
  readonly pipelinedSteps: number;
  /** Every wave's aggregate tokens/s (the level is the median wave). */
  readonly waveTokensPerSecond: number[];
}

export interface MeasureOptions {
  readonly levels: readonly number[];
  readonly repeat: number;
  readonly promptTokens: number;
  readonly newTokens: number;
  /** Default "separate-process". */
  readonly client?: ClientMode;
  /** The forked client's script (default: serve-client.js beside this module, as built in dist/). */
  readonly clientScript?: string;
  /** Told the forked client's process id once it runs (tests: it must be gone afterwards). */
  readonly onClient?: (pid: number) => void;
  readonly log?: (line: string) => void;
}

const median = (v: number[]) => [...v].sort((a, b) => a - b)[v.length >> 1];
const p95 = (v: number[]) => [...v].sort((a, b) => a - b)[Math.min(v.length - 1, Math.floor(v.length * 0.95))];

/** Serve `model` on 127.0.0.1 and measure every level; the server is closed and the client gone when this settles. */
export async function measureServing(model: Model, options: MeasureOptions): Promise<Level[]> {
  const log = options.log ?? (() => {});
  const repeat = Math.max(1, options.repeat);
  const server = await serveModel(model, { port: 0, modelId: "bench" });
  try {
    const config: LoadConfig = { url: server.url, levels: options.levels, repeat, promptTokens: options.promptTokens, newTokens: options.newTokens, vocabSize: model.lm.config.vocabSize };
    type Wave = Omit<Level, "waveTokensPerSecond">;
    const waves = new Map<number, Wave[]>(options.levels.map((c) => [c, []]));
    let before: { steps: number; prefillSteps: number; pipelinedSteps: number } | undefined;
    const hooks = {
      waveStart() {
        const { steps, prefillSteps, pipelinedSteps } = model.scheduler.stats;
        before = { steps, prefillSteps, pipelinedSteps };
      },
      waveEnd(m: WaveMeasurement) {
        if (!before) throw new Error(`the load client ended a wave of ${m.concurrency} it did not start`);
        const stats = model.scheduler.stats;
        const tokens = m.tokens.reduce((s, n) => s + n, 0);
        const list = waves.get(m.concurrency);
        if (!list || m.ttftMs.length !== m.concurrency) throw new Error(`the load client reported a wave of ${m.ttftMs.length} requests as level ${m.concurrency} (levels: ${options.levels.join(", ")})`);
        list.push({
          concurrency: m.concurrency,
          aggregateTokensPerSecond: tokens / m.wallSeconds,
          wallSeconds: m.wallSeconds,
          medianTimeToFirstTokenMs: median(m.ttftMs),
          p95TimeToFirstTokenMs: p95(m.ttftMs),
          medianLatencyMs: median(m.latencyMs),
          p95LatencyMs: p95(m.latencyMs),
          tokens,
          prefillSteps: stats.prefillSteps - before.prefillSteps,
          decodeSteps: stats.steps - before.steps,
          pipelinedSteps: stats.pipelinedSteps - before.pipelinedSteps,
        });
        before = undefined;
        if (list.length === repeat) logLevel(levelOf(list));
      },
    };
    const levelOf = (list: Wave[]): Level => {
      // `repeat` waves; the level is the wave with the median aggregate throughput (one wave is ~1 s and
      // varies by ±10 % from run to run on the H200).
      const sorted = [...list].sort((a, b) => a.aggregateTokensPerSecond - b.aggregateTokensPerSecond);
      return { ...sorted[sorted.length >> 1], waveTokensPerSecond: list.map((w) => w.aggregateTokensPerSecond) };
    };
    const logLevel = (level: Level) =>
      log(
        `  ${level.concurrency} concurrent: ${level.aggregateTokensPerSecond.toFixed(0)} tok/s aggregate (median of ${repeat}: ${level.waveTokensPerSecond.map((v) => v.toFixed(0)).join(", ")}), TTFT median ${level.medianTimeToFirstTokenMs.toFixed(0)} ms, latency median ${level.medianLatencyMs.toFixed(0)} ms, ${level.prefillSteps} prefill + ${level.decodeSteps} decode steps (${level.pipelinedSteps} pipelined)`,
      );

    if ((options.client ?? "separate-process") === "same-process") await runWaves(config, hooks);
    else await runClientProcess(options.clientScript ?? fileURLToPath(new URL("./serve-client.js", import.meta.url)), config, hooks, options.onClient);

    return options.levels.map((c) => {
      const list = waves.get(c)!;
      if (list.length !== repeat) throw new Error(`the load client ran ${list.length} of ${repeat} waves at ${c} concurrent`);
      return levelOf(list);
    });
  } finally {
    await server.close();
  }
}

/**
 * Run the load generator in a Node process of its own and relay its wave messages to `hooks`. Settles only
 * once that process has exited: resolves when it finished every wave, rejects with its error (or how it
 * ended) otherwise; on any failure here it is killed first.
 */
function runClientProcess(script: string, config: LoadConfig, hooks: { waveStart(): void; waveEnd(m: WaveMeasurement): void }, onClient?: (pid: number) => void): Promise<void> {
  if (!existsSync(script)) return Promise.reject(new Error(`the load client ${script} is missing (build apps/bench: pnpm build)`));
  return new Promise<void>((resolve, reject) => {
    // No inherited execArgv (a test runner's loaders, an inspector port). Its stdout goes to our stderr: our
    // stdout's last line is the result a benchmark child hands back (runChild).
    const child: ChildProcess = fork(script, [], { execArgv: [], stdio: ["ignore", 2, 2, "ipc"], serialization: "json" });
    let failure: Error | undefined;
    let done = false;
    const fail = (e: Error) => {
      failure ??= e;
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    };
    const send = (m: ToClient) => child.send(m, (e) => e && fail(new Error(`could not reach the load client: ${e.message}`)));
    child.on("spawn", () => onClient?.(child.pid!));
    child.on("error", (e) => fail(new Error(`the load client (${script}): ${e.message}`)));
    child.on("message", (m: FromClient) => {
      if (failure) return;
      try {
        switch (m.type) {
          case "wave-start":
            hooks.waveStart();
            return send({ type: "go" });
          case "wave-end":
            hooks.waveEnd(m.measurement);
            return send({ type: "go" });
          case "done":
            done = true;
            return;
          case "error":
            return fail(new Error(`the load client (separate process) failed: ${m.message}`));
        }
      } catch (e) {
        fail(e as Error);
      }
    });
    child.on("exit", (code, signal) => {
      if (failure) reject(failure);
      else if (done && code === 0) resolve();
      else reject(new Error(`the load client (${script}) exited with ${signal ? `signal ${signal}` : `code ${code}`} before it finished its waves`));
    });
    send({ type: "run", config });
  });
}
