/**
 * The serving benchmark's load generator: waves of concurrent streaming completions against a `df11 serve`
 * server over HTTP. Node built-ins only, so it runs as its own process (`serve-client.ts`, as real clients
 * are other processes) or, for comparison, in the server's process (`gpu-serve --client same-process`).
 */

/** What the load generator is told: where the server is and what to send. */
export interface LoadConfig {
  readonly url: string;
  /** Concurrent requests of each level, in order. */
  readonly levels: readonly number[];
  /** Waves per level. */
  readonly repeat: number;
  readonly promptTokens: number;
  readonly newTokens: number;
  /** The model's vocabulary: prompt ids stay below it (and below 128,000, so the 8B-shaped prompts are those of earlier runs). */
  readonly vocabSize: number;
}

/** One wave as the client measured it: every request's time to first token, latency and tokens. */
export interface WaveMeasurement {
  readonly concurrency: number;
  /** 0 … repeat − 1 within its level. */
  readonly wave: number;
  /** From sending the first request to the end of the last response. */
  readonly wallSeconds: number;
  readonly ttftMs: number[];
  readonly latencyMs: number[];
  readonly tokens: number[];
}

/** Called around each wave: the server's side reads the scheduler's counters there (the next wave waits for both). */
export interface WaveHooks {
  waveStart(concurrency: number, wave: number): Promise<void> | void;
  waveEnd(measurement: WaveMeasurement): Promise<void> | void;
}

/** One streaming completion (greedy, `newTokens` tokens, EOS ignored); returns (first token ms, total ms, tokens). */
export async function request(config: LoadConfig, seed: number): Promise<{ ttft: number; total: number; tokens: number }> {
  const vocab = Math.min(128000, config.vocabSize);
  const prompt = Array.from({ length: config.promptTokens }, (_, i) => (i * 7919 + seed * 104729 + 13) % vocab);
  const t0 = performance.now();
  const res = await fetch(`${config.url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "bench", prompt, max_tokens: config.newTokens, temperature: 0, stream: true, ignore_eos: true, stream_options: { include_usage: true } }),
  });
  if (!res.ok || !res.body) throw new Error(`request ${seed}: HTTP ${res.status}: ${await res.text()}`);
  let ttft = 0;
  let tokens: number | undefined;
  let done = false;
  let pending = ""; // an event not yet complete (events end with a blank line)
  const decoder = new TextDecoder();
  for await (const part of res.body) {
    pending += decoder.decode(part as Uint8Array, { stream: true });
    const events = pending.split("\n\n");
    pending = events.pop()!;
    for (const event of events) {
      if (!event.startsWith("data: ")) continue;
      const data = event.slice(6);
      if (data === "[DONE]") {
        done = true;
        continue;
      }
      const chunk = JSON.parse(data) as { choices?: { text?: string; token_ids?: number[] }[]; usage?: { completion_tokens: number } };
      // The first token's event: text, or token ids (a model without a tokenizer). Not the opening event a
      // model without a tokenizer sends before its first token (the prompt's ids, empty text).
      const choice = chunk.choices?.[0];
      if (!ttft && choice && (choice.text || (choice.token_ids?.length ?? 0) > 0)) ttft = performance.now() - t0;
      if (chunk.usage) tokens = chunk.usage.completion_tokens;
    }
  }
  if (!done || tokens === undefined) throw new Error(`request ${seed}: the stream ended without ${tokens === undefined ? "its usage" : "[DONE]"}`);
  return { ttft, total: performance.now() - t0, tokens };
}

/** A warm-up request (graphs, allocations; not measured), then `repeat` waves of each level, each between its hooks. */
export async function runWaves(config: LoadConfig, hooks: WaveHooks): Promise<void> {
  await request(config, 999);
  for (const concurrency of config.levels) {
    for (let wave = 0; wave < config.repeat; wave++) {
      await hooks.waveStart(concurrency, wave);
      const t0 = performance.now();
      const results = await Promise.all(Array.from({ length: concurrency }, (_, i) => request(config, i)));
      const wallSeconds = (performance.now() - t0) / 1000;
      await hooks.waveEnd({ concurrency, wave, wallSeconds, ttftMs: results.map((r) => r.ttft), latencyMs: results.map((r) => r.total), tokens: results.map((r) => r.tokens) });
    }
  }
}

/** Messages between the server's process and the client's (`serve-client.ts`), over the fork's IPC channel. */
export type ToClient = { readonly type: "run"; readonly config: LoadConfig } | { readonly type: "go" };
export type FromClient =
  | { readonly type: "wave-start"; readonly concurrency: number; readonly wave: number }
  | { readonly type: "wave-end"; readonly measurement: WaveMeasurement }
  | { readonly type: "done" }
  | { readonly type: "error"; readonly message: string };
