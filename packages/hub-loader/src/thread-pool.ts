import { availableParallelism } from "node:os";

/**
 * Give libuv's thread pool (4 threads by default), which runs every positional file read, a thread per
 * core (up to 16) unless UV_THREADPOOL_SIZE is set: loading a model onto the GPU reads each tensor in
 * many pieces at once. Takes effect only when called before the pool starts (the process's first
 * asynchronous file operation); returns the size asked for.
 */
export function sizeThreadPoolForReads(): number {
  process.env.UV_THREADPOOL_SIZE ??= String(Math.max(4, Math.min(16, availableParallelism())));
  return Number(process.env.UV_THREADPOOL_SIZE);
}
