import { InvalidArgumentError } from "commander";
import type { WeightsInfo } from "@df11/models";

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

/** `--gpu-weights` chose a GPU layout but `--device auto` found no GPU: say so on stderr (the run goes on, on the CPU). */
export function warnIfGpuWeightsUnused(device: "cpu" | "cuda", gpuWeights: GpuWeightsChoice | undefined): void {
  if (device === "cpu" && gpuWeights && gpuWeights !== "auto") process.stderr.write(`warning: --gpu-weights ${gpuWeights} is ignored: no usable GPU, running on the CPU\n`);
}

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
}

export function weightsReport(w: WeightsInfo): WeightsReport {
  return { format: w.kind, layout: w.layout ?? (w.kind === "df11" ? "huffman" : "bf16"), residentBytes: w.residentBytes, ...(w.fused ? { fused: w.fused } : {}) };
}
