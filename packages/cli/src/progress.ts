import cliProgress from "cli-progress";
import { formatBytes } from "./format-bytes.js";

/** Progress of a model-wide job, in modules and in bytes. */
export interface Progress {
  readonly modulesDone: number;
  readonly modulesTotal: number;
  readonly bytesDone: number;
  readonly bytesTotal: number;
}

/** A terminal progress bar (modules, bytes, ETA) on stderr; silent when stderr is not a terminal. */
export function progressBar(label: string): { update(p: Progress): void; stop(): void } {
  if (!process.stderr.isTTY) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {percentage}% | {value}/{total} modules | {done} / {all} | ETA {eta_formatted}`,
      stream: process.stderr,
      hideCursor: true,
      etaBuffer: 20,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(p) {
      if (!started) {
        bar.start(p.modulesTotal, 0, { done: formatBytes(0), all: formatBytes(p.bytesTotal) });
        started = true;
      }
      bar.update(p.modulesDone, { done: formatBytes(p.bytesDone), all: formatBytes(p.bytesTotal) });
    },
    stop() {
      if (started) bar.stop();
    },
  };
}
