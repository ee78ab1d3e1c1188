import { freemem } from "node:os";
import type { SafetensorsCollection } from "@df11/hub-loader";
import { formatBytes } from "./format-bytes.js";
import { itemsWithinBudget, type MemoryBudget } from "./ordered-pipeline.js";

/** Default --max-memory: half of the memory the OS reports available. */
export const defaultMaxMemory = (): number => Math.floor(freemem() / 2);

/** Memory that is not per-item work: Node, the worker threads, read buffers (an estimate). */
const BASELINE_BYTES = 256 * 1024 ** 2;
const WORKER_BYTES = 24 * 1024 ** 2;

export interface MemoryPlan<T> {
  /** Bound on the work in flight. */
  readonly budget: MemoryBudget<T>;
  /** Bytes of the open output shard held in memory before the rest is spooled to disk. */
  readonly shardMemoryBytes: number;
  /** Set when the budget allows fewer items in flight than there are threads. */
  readonly note?: string;
}

/**
 * Split `maxMemory` between the items in flight (each costing `cost` bytes) and the output shard buffer,
 * and say when that leaves fewer items in flight than `threads`.
 */
export function planMemory<T>(maxMemory: number, threads: number, items: readonly T[], cost: (item: T) => number): MemoryPlan<T> {
  const shardMemoryBytes = Math.max(16 * 1024 ** 2, Math.min(512 * 1024 ** 2, Math.floor(maxMemory / 8)));
  const workBytes = Math.max(0, maxMemory - shardMemoryBytes - BASELINE_BYTES - threads * WORKER_BYTES);
  const budget = { bytes: workBytes, cost };
  const fits = itemsWithinBudget(items, budget);
  const note =
    fits < Math.min(threads, items.length)
      ? `--max-memory ${formatBytes(maxMemory)}: at most ${fits} of ${threads} threads busy on the largest modules` +
        (fits === 1 && workBytes < Math.max(...items.map(cost)) ? ` (one of them needs ~${formatBytes(Math.max(...items.map(cost)))}; it runs alone and may exceed the budget)` : "")
      : undefined;
  return { budget, shardMemoryBytes, note };
}

/** Tensors checked at once: every thread, as far as the largest tensors (here and copied to a worker) fit the budget. */
export function storedConcurrency(weights: SafetensorsCollection, threads: number, budgetBytes: number): number {
  const largest = Math.max(1, ...weights.names().map((n) => weights.info(n).byteLength));
  return Math.max(1, Math.min(threads, Math.floor(budgetBytes / (2 * largest))));
}
