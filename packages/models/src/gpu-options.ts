// The GPU-only load options (devices, gpuWeights, maxGpuMemory): checked before anything is read or any
// device is chosen, and a warning when `device: "auto"` finds no GPU and would otherwise drop them quietly.
import type { BackendLoadOptions } from "./backend-registry.js";
import { OptionError } from "./errors.js";

/** Why tensor parallelism refuses the huffman layout (`gpuWeights: "huffman"` with several `devices`). */
export const TP_HUFFMAN = "huffman keeps DF11 modules whole, and tensor parallelism holds a slice of each matrix per GPU: use fused (the default) or bf16";

const LAYOUTS = ["auto", "fused", "huffman", "bf16"] as const;

/** The options {@link checkGpuOptions} looks at: the backend's GPU options and the device asked for. */
export interface GpuOptions extends Pick<BackendLoadOptions, "devices" | "gpuWeights" | "maxGpuMemory"> {
  /** The device asked for; undefined: not decided here (a backend checking its own options). */
  readonly device?: "auto" | "cpu" | "cuda";
}

/** A load option that only means something on a GPU, as given. */
export interface GpuOnlyOption {
  /** The option as the library names it. */
  readonly option: "gpuWeights" | "maxGpuMemory";
  /** The CLI flag behind it. */
  readonly flag: "--gpu-weights" | "--max-gpu-memory";
  /** Its value as the user would type it (`fused`; bytes for maxGpuMemory). */
  readonly value: string;
}

/**
 * The GPU-only options given: `gpuWeights` other than `auto`, and `maxGpuMemory`. (`devices` is not one
 * of them: GPU indices make the load ask for the GPU, so they are never dropped.)
 */
export function gpuOnlyOptions(options: GpuOptions): GpuOnlyOption[] {
  const given: GpuOnlyOption[] = [];
  if (options.gpuWeights !== undefined && options.gpuWeights !== "auto") given.push({ option: "gpuWeights", flag: "--gpu-weights", value: options.gpuWeights });
  if (options.maxGpuMemory !== undefined) given.push({ option: "maxGpuMemory", flag: "--max-gpu-memory", value: String(options.maxGpuMemory) });
  return given;
}

/**
 * Refuse GPU options that are malformed or do not combine, before any file is read or device chosen
 * (OptionError naming the option and its flag): `devices` must be distinct CUDA indices and cannot go
 * with `device: "cpu"`; `maxGpuMemory` must be a positive number of bytes; `gpuWeights` one of auto,
 * fused, huffman, bf16; several `devices` (tensor parallelism) do not take `gpuWeights: "huffman"` (with
 * them `maxGpuMemory` is each GPU's budget); with `device: "cpu"`, `gpuWeights` (other than auto) and
 * `maxGpuMemory` are refused rather than ignored.
 */
export function checkGpuOptions(options: GpuOptions): void {
  const { devices, maxGpuMemory, gpuWeights } = options;
  if (devices) {
    if (!Array.isArray(devices) || devices.length === 0) throw new OptionError("devices", "give at least one GPU index", "--devices");
    const bad = devices.find((d) => !Number.isSafeInteger(d) || d < 0);
    if (bad !== undefined) throw new OptionError("devices", `${bad} is not a GPU index (0, 1, …)`, "--devices");
    if (new Set(devices).size !== devices.length) throw new OptionError("devices", `${devices.join(",")} lists a GPU twice`, "--devices");
    if (options.device === "cpu") throw new OptionError("devices", `${devices.join(",")} names GPUs; it does not apply to device cpu`, "--devices");
  }
  if (maxGpuMemory !== undefined && !(Number.isFinite(maxGpuMemory) && maxGpuMemory > 0)) {
    throw new OptionError("maxGpuMemory", `must be a positive number of bytes, got ${maxGpuMemory}`, "--max-gpu-memory");
  }
  if (gpuWeights !== undefined && !LAYOUTS.includes(gpuWeights)) throw new OptionError("gpuWeights", `must be auto, fused, huffman or bf16, got ${JSON.stringify(gpuWeights)}`, "--gpu-weights");
  if (devices && devices.length > 1 && gpuWeights === "huffman") throw new OptionError("gpuWeights", TP_HUFFMAN, "--gpu-weights");
  if (options.device === "cpu") {
    const [first] = gpuOnlyOptions(options);
    if (first) throw new OptionError(first.option, `${first.option === "gpuWeights" ? first.value : "a device-memory budget"} applies to the GPU; it does not apply to device cpu (the CPU runs DF11 as stored)`, first.flag);
  }
}

/**
 * Emitted (`process.emitWarning`, as the other library warnings; the `warning` event receives it) when
 * `device: "auto"` finds no usable GPU and the model loads on the CPU although GPU-only options were
 * given: they are ignored, and this says so.
 */
export class GpuOptionsIgnoredWarning extends Error {
  override name = "GpuOptionsIgnoredWarning";
  /** The warning's code, as `process.emitWarning` reports it. */
  readonly code = "DF11_GPU_OPTIONS_IGNORED";
  constructor(
    /** The ignored options. */
    readonly ignored: readonly GpuOnlyOption[],
    /** Why no GPU was used (e.g. `no CUDA device …`). */
    readonly reason: string,
  ) {
    super(`${ignored.map((o) => `${o.option} (${o.flag})`).join(" and ")} ${ignored.length > 1 ? "are" : "is"} ignored: the model runs on the CPU (device auto found no usable GPU: ${reason})`);
  }
}

/** Emit a {@link GpuOptionsIgnoredWarning} when GPU-only options were given (nothing otherwise). */
export function warnGpuOptionsIgnored(options: GpuOptions, reason: string): void {
  const ignored = gpuOnlyOptions(options);
  if (ignored.length > 0) process.emitWarning(new GpuOptionsIgnoredWarning(ignored, reason));
}
