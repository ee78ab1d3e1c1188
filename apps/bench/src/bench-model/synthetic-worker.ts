/**
 * Worker side of {@link SyntheticTensors}: draws one tensor's BF16 values (CPU-bound) and moves them to
 * the caller without a copy.
 */
import { Piscina } from "piscina";
import { drawNormWeights, drawWeights } from "./normal.js";

export interface GenerateTask {
  readonly count: number;
  readonly seed: number;
  /** Column count of a matrix (std 0.5/√cols, as tools/make_bench_model.py); absent for a norm. */
  readonly cols?: number;
}

export default function generate(task: GenerateTask): Uint16Array {
  const out = new Uint16Array(task.count);
  if (task.cols) drawWeights(out, task.seed, 0.5 / Math.sqrt(task.cols));
  else drawNormWeights(out, task.seed);
  return Piscina.move(out) as unknown as Uint16Array;
}
