import { WeightLayoutError, type RankShard, type WeightSlice } from "@df11/models";
import { call, native, type Address } from "../native.js";
import type { CudaStream } from "../runtime/stream.js";

/** Whether a rank holds the whole tensor (replicated, or a split that happens to cover it all). */
export function isWholeSlice(slice: WeightSlice): boolean {
  if (slice.split === "replicated") return true;
  const n = slice.shape[0];
  const cols = slice.shape.length === 2 ? slice.shape[1] : 0;
  return slice.rows.length === 1 && slice.rows[0][0] === 0 && slice.rows[0][1] === n && slice.columns[0] === 0 && (slice.shape.length === 1 || slice.columns[1] === cols);
}

/** The rank's slice of `name`, or a WeightLayoutError naming the tensor when the plan has no rule for it. */
export function sliceOf(shard: RankShard, name: string, shape: readonly number[]): WeightSlice {
  const slice = shard.slice(name);
  if (slice.shape.length !== shape.length || slice.shape.some((d, i) => d !== shape[i])) {
    throw new WeightLayoutError(name, `shape ${JSON.stringify(shape)}, the tensor-parallel plan expects ${JSON.stringify(slice.shape)} from config.json`);
  }
  return slice;
}

/**
 * Copy the part of a weight's slice that lies in full rows [r0, r1) — BF16, row pitch `shape[1]`, row
 * r0 at `at` — into the rank's local matrix at `local` (row-major, [localShape]), asynchronously on
 * `stream`: one strided copy per row range (a column split is one 2-D copy of every row).
 */
export function copySliceRows(slice: WeightSlice, r0: number, r1: number, at: Address, local: Address, stream: CudaStream): void {
  const cols = slice.shape[1];
  const [c0, c1] = slice.columns;
  const width = c1 - c0;
  let localRow = 0;
  for (const [a, b] of slice.rows) {
    const lo = Math.max(a, r0);
    const hi = Math.min(b, r1);
    if (hi > lo) {
      call(() => native().copy2D(local + (localRow + lo - a) * width * 2, width * 2, at + ((lo - r0) * cols + c0) * 2, cols * 2, width * 2, hi - lo, stream.native));
    }
    localRow += b - a;
  }
}

/**
 * The slice of a vector (norm, bias, or anything 1-D) a rank holds: the plan's, or — for a vector the
 * plan has no rule for (e.g. an old checkpoint's `rotary_emb.inv_freq`, unused here) — all of it.
 */
export function vectorSliceOf(shard: RankShard, name: string, length: number): WeightSlice {
  try {
    return sliceOf(shard, name, [length]);
  } catch (e) {
    if (!(e instanceof WeightLayoutError) || /shape/.test(e.message)) throw e;
    return { name, split: "replicated", shape: [length], rows: [[0, length]], columns: [0, 0], localShape: [length] };
  }
}

/** The float32 vector a rank holds: its rows ranges of the full vector, stacked (empty for another rank's `rank0` bias). */
export function sliceVector(values: Float32Array, slice: WeightSlice): Float32Array {
  if (slice.split === "replicated") return values;
  const out = new Float32Array(slice.localShape[0]);
  let at = 0;
  for (const [a, b] of slice.rows) {
    out.set(values.subarray(a, b), at);
    at += b - a;
  }
  return out;
}
