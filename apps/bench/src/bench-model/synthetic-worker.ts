/**
 * Worker side of {@link SyntheticTensors}: draws one tensor's BF16 values (CPU-bound) and moves them to
 * the caller without a copy.
 */
import { Piscina } from "piscina";
import { syntheticNormWeights, syntheticWeights } from "@df11/codec";

export interface GenerateTask {
  readonly count: number;
  readonly seed: number;
  /** Column count of a matrix (std 0.5/√cols); absent for a norm. */
  readonly cols?: number;
}

export default function generate(task: GenerateTask): Uint16Array {
  const values = task.cols ? syntheticWeights(task.count, task.seed, 0.5 / Math.sqrt(task.cols)) : syntheticNormWeights(task.count, task.seed);
  return Piscina.move(values) as unknown as Uint16Array;
}
