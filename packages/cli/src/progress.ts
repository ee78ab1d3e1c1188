import cliProgress from "cli-progress";
import type { DownloadProgress } from "@df11/hub-loader";
import { formatBytes } from "./format-bytes.js";

/** Progress of a model-wide job, in modules and in bytes. */
export interface Progress {
  readonly modulesDone: number;
  readonly modulesTotal: number;
  readonly bytesDone: number;
  readonly bytesTotal: number;
}

/** A progress bar fed with updates of type P. */
export interface Bar<P> {
  update(p: P): void;
  stop(): void;
}

/**
 * A terminal bar on stderr, started at the first update that has a total; silent when stderr is not a
 * terminal. `measure` maps an update to the bar's position, total and the format's named fields.
 */
function terminalBar<P>(format: string, etaBuffer: number, measure: (p: P) => { value: number; total: number; fields: object }): Bar<P> {
  if (!process.stderr.isTTY) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar({ format, stream: process.stderr, hideCursor: true, etaBuffer }, cliProgress.Presets.shades_classic);
  let running = false;
  return {
    update(p) {
      const { value, total, fields } = measure(p);
      if (total === 0) return;
      if (!running) {
        bar.start(total, 0, fields);
        running = true;
      }
      bar.update(value, fields);
    },
    stop() {
      if (running) bar.stop();
    },
  };
}

/** Bar for compress/decompress/verify: modules, bytes, ETA. */
export function progressBar(label: string): Bar<Progress> {
  return terminalBar(`${label} [{bar}] {percentage}% | {value}/{total} modules | {done} / {all} | ETA {eta_formatted}`, 20, (p: Progress) => ({
    value: p.modulesDone,
    total: p.modulesTotal,
    fields: { done: formatBytes(p.bytesDone), all: formatBytes(p.bytesTotal) },
  }));
}

/** Bar for downloads: bytes, speed, files, ETA. */
export function downloadBar(label: string): Bar<DownloadProgress> {
  const started = performance.now();
  return terminalBar(`${label} [{bar}] {percentage}% | {done} / {all} | {speed}/s | {files} files | ETA {eta_formatted}`, 50, (p: DownloadProgress) => ({
    value: p.bytesDone,
    total: p.bytesTotal,
    fields: {
      done: formatBytes(p.bytesDone),
      all: formatBytes(p.bytesTotal),
      speed: formatBytes(p.bytesDone / Math.max(0.001, (performance.now() - started) / 1000)),
      files: `${p.filesDone}/${p.filesTotal}`,
    },
  }));
}
