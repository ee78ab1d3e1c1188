import { InvalidArgumentError } from "commander";
import type { GpuOptionsIgnoredWarning, OffloadReport, WeightsInfo } from "@df11/models";
import { CliError } from "./errors.js";
import { parseBytes } from "./format-bytes.js";

/**
 * How a GPU holds the weights (`--gpu-weights`): `fused` (DF11's fused layout, decoded inside the
 * matrix kernels), `huffman` (DF11 modules as stored, decoded window by window: least memory, slowest),
 * `bf16` (plain BF16: most memory), `auto` (fused — bf16 for tiny models, where fused padding makes it
 * larger — or huffman when that would not fit).
 */
export type GpuWeightsChoice = "auto" | "fused" | "huffman" | "bf16";

/** Commander parser for `--gpu-weights`. */
export function gpuWeightsOption(v: string): GpuWeightsChoice {
  if (v !== "auto" && v !== "fused" && v !== "huffman" && v !== "bf16") throw new InvalidArgumentError("expected fused, huffman, bf16 or auto");
  return v;
}

/**
 * Commander parser for `--max-gpu-memory`: a size such as `12GB` (1e9 bytes), `12GiB` (2^30) or `12000MB`.
 * A bare number is bytes, so values under 1 MB (a forgotten unit) are refused.
 */
export function maxGpuMemoryOption(v: string): number {
  let bytes: number;
  try {
    bytes = parseBytes(v);
  } catch {
    bytes = NaN;
  }
  if (!Number.isFinite(bytes) || bytes <= 0) throw new InvalidArgumentError(`expected a size such as 12GB, 12GiB or 12000MB, got "${v}"`);
  if (bytes < 1e6) throw new InvalidArgumentError(/^[\d.]+$/.test(v.trim()) ? `${v} is ${bytes} bytes: give a unit, e.g. ${v}GB` : `${v} is ${bytes} bytes: too little for a model (at least 1MB)`);
  return bytes;
}

/** The GPU-only flags a command was given (`--gpu-weights`, `--max-gpu-memory`). */
export interface GpuFlags {
  readonly gpuWeights?: GpuWeightsChoice;
  readonly maxGpuMemory?: number;
}

/** The GPU-only flags given (as typed), for messages: e.g. `--gpu-weights fused`, `--max-gpu-memory`. */
function gpuFlagsGiven(f: GpuFlags): string[] {
  return [...(f.gpuWeights && f.gpuWeights !== "auto" ? [`--gpu-weights ${f.gpuWeights}`] : []), ...(f.maxGpuMemory !== undefined ? ["--max-gpu-memory"] : [])];
}

/** Refuse GPU-only flags with `--device cpu` (the CPU runs DF11 as stored, in host memory). */
export function refuseGpuFlagsOnCpu(device: string | undefined, f: GpuFlags): void {
  const given = gpuFlagsGiven(f);
  if (device === "cpu" && given.length > 0) throw new CliError(`${given.join(" and ")} ${given.length > 1 ? "apply" : "applies"} to the GPU, not --device cpu (the CPU runs DF11 as stored)`);
}

/**
 * The library's warning that `device: "auto"` found no GPU and dropped GPU-only options, worded as the
 * flags the user typed: `--gpu-weights fused and --max-gpu-memory are ignored: no usable GPU, running on
 * the CPU: <reason>`. Any other warning: its message.
 */
export function warningText(w: Error): string {
  if (!isGpuOptionsIgnored(w)) return w.message;
  const flags = w.ignored.map((o) => (o.option === "gpuWeights" ? `${o.flag} ${o.value}` : o.flag));
  return `${flags.join(" and ")} ${flags.length > 1 ? "are" : "is"} ignored: no usable GPU, running on the CPU: ${w.reason}`;
}

/** By name: the warning may come from another copy of @df11/models than the one this module imports. */
const isGpuOptionsIgnored = (w: Error): w is GpuOptionsIgnoredWarning => w.name === "GpuOptionsIgnoredWarning" && Array.isArray((w as GpuOptionsIgnoredWarning).ignored);

/** The weights as `--json` and `/health` report them: checkpoint format, layout in use, resident bytes, fused cost. */
export interface WeightsReport {
  /** The checkpoint's format. */
  readonly format: "bf16" | "df11";
  /** How they are held while running (see {@link GpuWeightsChoice}; the CPU keeps DF11 as `huffman`). */
  readonly layout: "bf16" | "huffman" | "fused";
  /** Bytes of weights resident (on the GPU for cuda). */
  readonly residentBytes: number;
  /** The fused layout's cost when it is used: escapes, bits per weight, ratio to BF16. */
  readonly fused?: WeightsInfo["fused"];
  /** CPU offload (--max-gpu-memory): the layers kept in pinned host memory, its bytes, the device slots' bytes. */
  readonly offload?: OffloadReport;
}

export function weightsReport(w: WeightsInfo): WeightsReport {
  return { format: w.kind, layout: w.layout ?? (w.kind === "df11" ? "huffman" : "bf16"), residentBytes: w.residentBytes, ...(w.fused ? { fused: w.fused } : {}), ...(w.offload ? { offload: w.offload } : {}) };
}
