import cliProgress from "cli-progress";
import { resolveModel, type DownloadProgress, type ResolveOptions } from "@df11/hub-loader";
import { formatBytes } from "./format-bytes.js";

/** A terminal progress bar for downloads (bytes, speed, ETA) on stderr; silent off a terminal. */
export function downloadBar(label: string): { update(p: DownloadProgress): void; stop(): void } {
  if (!process.stderr.isTTY) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {percentage}% | {done} / {all} | {speed}/s | {files} files | ETA {eta_formatted}`,
      stream: process.stderr,
      hideCursor: true,
      etaBuffer: 50,
    },
    cliProgress.Presets.shades_classic,
  );
  const started = performance.now();
  let running = false;
  return {
    update(p) {
      if (p.bytesTotal === 0) return;
      const payload = {
        done: formatBytes(p.bytesDone),
        all: formatBytes(p.bytesTotal),
        speed: formatBytes(p.bytesDone / Math.max(0.001, (performance.now() - started) / 1000)),
        files: `${p.filesDone}/${p.filesTotal}`,
      };
      if (!running) {
        bar.start(p.bytesTotal, 0, payload);
        running = true;
      }
      bar.update(p.bytesDone, payload);
    },
    stop() {
      if (running) bar.stop();
    },
  };
}

/**
 * The directory of a model given as a path or a Hub repo id (`org/name[@revision]`): Hub models come
 * from the shared Hugging Face cache, downloaded there first when needed.
 */
export async function modelDirectory(spec: string, options: ResolveOptions = {}): Promise<string> {
  const bar = downloadBar(`download ${spec}`);
  try {
    return (await resolveModel(spec, { ...options, onProgress: bar.update })).dir;
  } finally {
    bar.stop();
  }
}
