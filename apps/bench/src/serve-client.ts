/**
 * The serving benchmark's load generator as a process of its own, forked by `serve-measure.ts` with an IPC
 * channel: it is sent `{ type: "run", config }`, says `wave-start` before each wave and `wave-end` (with the
 * wave's measurements) after it, waiting for `{ type: "go" }` after each (the server's process reads its
 * scheduler's counters there), then `done`; on a failure it sends `error` and exits 1. It exits when the
 * channel closes (the server's process ended), so it is never left behind.
 */
import { runWaves, type FromClient, type ToClient } from "./serve-load.js";

if (!process.send) {
  console.error("serve-client: run by the serving benchmark (child_process.fork with an IPC channel), not by hand");
  process.exit(2);
}

const send = (m: FromClient) =>
  new Promise<void>((resolve, reject) => {
    process.send!(m, undefined, {}, (e) => (e ? reject(e) : resolve()));
  });

let waiting: (() => void) | undefined;
let finished = false;
const go = () =>
  new Promise<void>((resolve) => {
    waiting = resolve;
  });

process.on("disconnect", () => {
  // Our own disconnect at the end, or the server's process is gone: nothing left to report to.
  process.exit(finished ? (process.exitCode ?? 0) : 3);
});

process.on("message", (m: ToClient) => {
  if (m.type === "go") {
    const w = waiting;
    waiting = undefined;
    w?.();
    return;
  }
  if (m.type !== "run") return;
  runWaves(m.config, {
    async waveStart(concurrency, wave) {
      const ready = go();
      await send({ type: "wave-start", concurrency, wave });
      await ready;
    },
    async waveEnd(measurement) {
      const ready = go();
      await send({ type: "wave-end", measurement });
      await ready;
    },
  })
    .then(() => send({ type: "done" }))
    .then(() => {
      finished = true;
      process.disconnect();
    })
    .catch(async (e: Error) => {
      finished = true;
      process.exitCode = 1;
      // fetch's "fetch failed" says why in its cause
      const cause = e.cause instanceof Error ? ` (${e.cause.message})` : "";
      try {
        await send({ type: "error", message: e.message + cause });
      } catch {
        console.error(`serve-client: ${e.stack ?? e.message}`);
      }
      process.disconnect();
    });
});
