import "@df11/cuda-kernel"; // registers the CUDA backend with @df11/models
import { loadCausalLM, type CausalLM } from "@df11/models";
import { refuseGpuFlagsOnCpu, warnIfGpuFlagsUnused, type GpuWeightsChoice } from "./weights-report.js";
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

/** Load a BF16 or DF11 model for generation on the chosen device (default: the GPU when present). */
export async function loadModelOn(directory: string, options: LoadOptions = {}): Promise<CausalLM> {
  refuseGpuFlagsOnCpu(options.device, options);
  try {
    const model = await loadCausalLM(directory, { ...options, device: deviceFor(options.device, options.devices) });
    warnIfGpuFlagsUnused(model.device, options);
    return model;
  } catch (e) {
    throw asDeviceFlagError(e);
  }
}
