import "@df11/cuda-kernel"; // registers the CUDA backend with @df11/models
import { checkGpuOptions, loadCausalLM, type CausalLM } from "@df11/models";
import { refuseGpuFlagsOnCpu, type GpuWeightsChoice } from "./weights-report.js";
import { asDeviceFlagError } from "./errors.js";
import { deviceFor } from "./devices-option.js";

export type { DeviceChoice } from "./devices-option.js";
import type { DeviceChoice } from "./devices-option.js";

export interface LoadOptions {
  readonly device?: DeviceChoice;
  /** GPU: positions the KV cache holds per sequence. */
  readonly maxContext?: number;
  /** GPU: sequences decoded together. */
  readonly slots?: number;
  /** Decode every DF11 module once at load and check its weights' recorded checksum (--verify-weights). */
  readonly verifyWeights?: boolean;
  /** GPU: how the weights are held (--gpu-weights; default auto). */
  readonly gpuWeights?: GpuWeightsChoice;
  /** GPU indices: one picks that GPU, several run the model tensor parallel over them (--devices). */
  readonly devices?: readonly number[];
  /** GPU: bytes of device memory df11 may use (--max-gpu-memory); layers that do not fit are offloaded to pinned host memory. */
  readonly maxGpuMemory?: number;
  /** GPU: bytes placed on the device so far. */
  readonly onProgress?: (done: number, total: number) => void;
}

/** The device-choosing flags of a command that loads a model (`--device`, `--devices`, `--gpu-weights`, `--max-gpu-memory`). */
export type DeviceFlags = Pick<LoadOptions, "device" | "devices" | "gpuWeights" | "maxGpuMemory">;

/**
 * Check the device flags before anything else happens (no model resolved or downloaded, no file read,
 * no GPU looked for): GPU-only flags with `--device cpu`, `--devices` with `--device cpu`, and flags
 * that do not combine (`--devices 0,1` with `--gpu-weights huffman`) throw
 * {@link CliError} naming the flags. Returns the device to ask for.
 */
export function checkDeviceFlags(options: DeviceFlags): DeviceChoice {
  refuseGpuFlagsOnCpu(options.device, options);
  const device = deviceFor(options.device, options.devices);
  try {
    checkGpuOptions({ ...options, device });
  } catch (e) {
    throw asDeviceFlagError(e);
  }
  return device;
}

/**
 * Load a BF16 or DF11 model for generation on the chosen device (default: the GPU when present). The
 * flags are checked first ({@link checkDeviceFlags}). With `--device auto` and no GPU, GPU-only flags
 * given are reported by the library's GpuOptionsIgnoredWarning (bin.ts prints it as the flags).
 */
export async function loadModelOn(directory: string, options: LoadOptions = {}): Promise<CausalLM> {
  const device = checkDeviceFlags(options);
  try {
    return await loadCausalLM(directory, { ...options, device });
  } catch (e) {
    throw asDeviceFlagError(e);
  }
}
