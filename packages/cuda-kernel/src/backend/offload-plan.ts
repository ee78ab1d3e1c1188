import { OptionError } from "@df11/models";
import type { WeightFormat } from "./formats/matrix.js";

/**
 * CPU offload planning (pure): which decoder layers stay in pinned host memory so that the rest fits a
 * device-memory budget. Offloaded layers are copied, one ahead, into two device slots (double
 * buffering), so offloading k layers saves their bytes but costs min(k, 2) slots the size of the largest.
 */

/** Which layers are offloaded and what the device then holds. */
export interface OffloadPlan {
  /** Offloaded decoder layers, ascending (the last ones of the model). */
  readonly layers: readonly number[];
  /** Bytes of one device slot: the largest offloaded layer. */
  readonly slotBytes: number;
  /** Device slots (min(layers, 2)). */
  readonly slots: number;
  /** Bytes of the offloaded layers, held in pinned host memory. */
  readonly hostBytes: number;
  /** Device bytes of the whole plan: everything else + resident layers + slots. */
  readonly deviceBytes: number;
}

/** What a plan starts from, in bytes. */
export interface OffloadPlanInput {
  /** Each decoder layer's matrices (what offloading moves; norms stay resident), by layer index. */
  readonly layerBytes: readonly number[];
  /** Everything else the device holds: embeddings, lm_head, norms, KV cache, working memory, margins. */
  readonly otherBytes: number;
}

/** The plan that offloads the last `count` layers. */
export function offloadLast(input: OffloadPlanInput, count: number): OffloadPlan {
  const n = input.layerBytes.length;
  if (!Number.isInteger(count) || count < 0 || count > n) throw new RangeError(`offloaded layers must be an integer from 0 to ${n}, got ${count}`);
  const layers = Array.from({ length: count }, (_, i) => n - count + i);
  const hostBytes = layers.reduce((s, l) => s + input.layerBytes[l], 0);
  const slotBytes = layers.reduce((m, l) => Math.max(m, input.layerBytes[l]), 0);
  const slots = Math.min(count, 2);
  const all = input.layerBytes.reduce((a, b) => a + b, 0);
  return { layers, slotBytes, slots, hostBytes, deviceBytes: input.otherBytes + all - hostBytes + slots * slotBytes };
}

/**
 * The fewest layers to offload, from the last layer backward, for the device to hold at most `budget`
 * bytes; `fits: false` with the plan that needs least when none does (its `deviceBytes` say how much is
 * needed). Offloading 1 or 2 (equal) layers saves nothing — they take a slot each — so a plan that fits
 * offloads at least 3 when the model does not fit at all.
 */
export function planOffload(input: OffloadPlanInput, budget: number): { fits: boolean; plan: OffloadPlan } {
  let best = offloadLast(input, 0);
  for (let k = 0; k <= input.layerBytes.length; k++) {
    const plan = offloadLast(input, k);
    if (plan.deviceBytes <= budget) return { fits: true, plan };
    if (plan.deviceBytes < best.deviceBytes) best = plan;
  }
  return { fits: false, plan: best };
}

/** What the device would hold with the weights in one layout, in bytes. */
export interface LayoutNeeds {
  readonly weightBytes: number;
  /** The part of `weightBytes` each decoder layer's matrices take, by layer index. */
  readonly layerBytes: readonly number[];
  readonly kvBytes: number;
  /** Activations, scratch windows and margins. */
  readonly workingBytes: number;
}

const totalOf = (n: LayoutNeeds) => n.weightBytes + n.kvBytes + n.workingBytes;
const offloadInputOf = (n: LayoutNeeds): OffloadPlanInput => {
  const layers = n.layerBytes.reduce((a, b) => a + b, 0);
  return { layerBytes: n.layerBytes, otherBytes: totalOf(n) - layers };
};

/** Where the weights go: a layout, and the layers offloaded (none: `plan` undefined). */
export interface Placement {
  readonly layout: WeightFormat;
  readonly plan?: OffloadPlan;
}

/** The inputs of {@link choosePlacement}. */
export interface PlacementRequest {
  /** Layouts in order of preference (`auto`'s list, or the one asked for). */
  readonly candidates: readonly WeightFormat[];
  readonly needs: (layout: WeightFormat) => LayoutNeeds;
  /** Free device memory. */
  readonly free: number;
  /** `maxGpuMemory`, when given. */
  readonly budget?: number;
  /** Testing: offload exactly this many of the last layers. */
  readonly offloadLayers?: number;
  /** For the error message: the model directory, KV slots and positions, DF11 or not; maxRows: rows per step when above the default (the message then suggests fewer). */
  readonly describe: { readonly directory: string; readonly slots: number; readonly maxContext: number; readonly maxRows?: number; readonly df11: boolean };
}

/** Thrown by {@link choosePlacement} when nothing fits: the message says what would; CudaBackend makes it an OutOfDeviceMemoryError. */
export class PlacementShortfall extends Error {
  override name = "PlacementShortfall";
  constructor(
    message: string,
    readonly neededBytes: number,
    readonly availableBytes: number,
  ) {
    super(message);
  }
}

const gb = (x: number) => `${(x / 1e9).toFixed(2)} GB`;
/** Bytes as a --max-gpu-memory value (GB = 1e9, one decimal), rounded down or up. */
export const maxGpuMemoryFlag = (bytes: number, round: "floor" | "ceil"): string => `${(round === "floor" ? Math.floor(bytes / 1e8) : Math.ceil(bytes / 1e8)) / 10}GB`;

/**
 * Choose where the weights go before anything is allocated: the first candidate layout that fits
 * resident in min(free, budget); else, with a budget, the first offloadable layout (fused or bf16; huffman
 * cannot be split per layer) with as few of the last layers offloaded as fit. Throws
 * {@link PlacementShortfall} saying how much is needed and which options would fit, and OptionError
 * when only huffman was asked for and offloading is needed.
 */
export function choosePlacement(r: PlacementRequest): Placement {
  const available = Math.min(r.free, r.budget ?? Infinity);
  const offloadable = r.candidates.find((l) => l !== "huffman");
  const forced = r.offloadLayers ?? 0;
  if ((forced > 0 || r.budget !== undefined) && !offloadable && !(forced === 0 && totalOf(r.needs(r.candidates[0])) <= available)) {
    throw new OptionError("gpuWeights", `huffman keeps DF11 modules as stored and cannot be offloaded to the host${r.budget !== undefined ? ` (--max-gpu-memory ${maxGpuMemoryFlag(r.budget, "floor")})` : ""}: use fused or bf16`, "--gpu-weights");
  }
  if (forced > 0) {
    const plan = offloadLast(offloadInputOf(r.needs(offloadable!)), forced);
    if (plan.deviceBytes <= available) return { layout: offloadable!, plan };
    throw shortfall(r, available, offloadable, plan);
  }
  const resident = r.candidates.find((l) => totalOf(r.needs(l)) <= available);
  if (resident) return { layout: resident };
  if (r.budget !== undefined && offloadable) {
    const { fits, plan } = planOffload(offloadInputOf(r.needs(offloadable)), available);
    if (fits) return { layout: offloadable, plan };
    throw shortfall(r, available, offloadable, plan);
  }
  throw shortfall(r, available, offloadable, undefined);
}

/** The error when nothing fits: what the first candidate needs, and the options that would make it fit. */
function shortfall(r: PlacementRequest, available: number, offloadable: WeightFormat | undefined, tried: OffloadPlan | undefined): PlacementShortfall {
  const first = r.candidates[0];
  const n = r.needs(first);
  const { directory, slots, maxContext, maxRows, df11 } = r.describe;
  const tries: string[] = [];
  if (df11 && !r.candidates.includes("huffman")) tries.push(`--gpu-weights huffman (needs ${gb(totalOf(r.needs("huffman")))})`);
  let note = "";
  if (offloadable && !tried) {
    // No budget given: say what offloading would do with what is free.
    const atFree = planOffload(offloadInputOf(r.needs(offloadable)), r.free);
    if (atFree.fits) tries.push(`--max-gpu-memory ${maxGpuMemoryFlag(r.free, "floor")} (keeps ${atFree.plan.layers.length} of ${n.layerBytes.length} layers in pinned host memory, copied in before use: slower)`);
  } else if (offloadable && tried) {
    const least = planOffload(offloadInputOf(r.needs(offloadable)), 0).plan;
    note = ` Offloading layers to pinned host memory (${offloadable} layout) needs at least ${gb(least.deviceBytes)} (${least.layers.length} of ${n.layerBytes.length} layers offloaded, ${least.slots} slot${least.slots === 1 ? "" : "s"} of ${gb(least.slotBytes)}).`;
    if (r.budget !== undefined && least.deviceBytes <= r.free) tries.push(`--max-gpu-memory ${maxGpuMemoryFlag(least.deviceBytes, "ceil")} or more`);
  }
  tries.push(`a smaller --max-context (the KV cache takes ${gb(n.kvBytes)})`);
  // Steps larger than the default hold activations per row (df11 serve --max-batch-tokens, loadModel's maxRows).
  if (maxRows !== undefined) tries.push(`fewer tokens per step (--max-batch-tokens / maxRows: steps of ${maxRows} tokens; working buffers ${gb(n.workingBytes)})`);
  if (!df11) tries.push("a DF11 model (df11 compress)");
  const allowed = r.budget !== undefined ? ` and --max-gpu-memory allows ${gb(r.budget)}` : "";
  return new PlacementShortfall(
    `${directory} needs ${gb(totalOf(n))} of GPU memory with ${first} weights (weights ${gb(n.weightBytes)}, KV cache ${gb(n.kvBytes)} for ${slots} × ${maxContext} positions, working ${gb(n.workingBytes)}); ${gb(r.free)} is free${allowed}.${note} ` +
      `Try ${tries.join(", ")}, or --device cpu.`,
    tried ? tried.deviceBytes : totalOf(n),
    available,
  );
}
