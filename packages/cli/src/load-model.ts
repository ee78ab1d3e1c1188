import "@df11/cuda-kernel"; // registers the CUDA backend with @df11/models
import { loadCausalLM, type CausalLM } from "@df11/models";
import { warnIfGpuWeightsUnused, type GpuWeightsChoice } from "./weights-report.js";
import { asDeviceFlagError, CliError } from "./errors.js";
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
  /** GPU: bytes placed on the device so far. */
  readonly onProgress?: (done: number, total: number) => void;
}

/** Load a BF16 or DF11 model for generation on the chosen device (default: the GPU when present). */
export async function loadModelOn(directory: string, options: LoadOptions = {}): Promise<CausalLM> {
  if (options.device === "cpu" && options.gpuWeights && options.gpuWeights !== "auto")
    throw new CliError(`--gpu-weights ${options.gpuWeights} applies to the GPU, not --device cpu (the CPU runs DF11 as stored)`);
  try {
    const model = await loadCausalLM(directory, { ...options, device: deviceFor(options.device, options.devices) });
    warnIfGpuWeightsUnused(model.device, options.gpuWeights);
    return model;
  } catch (e) {
    throw asDeviceFlagError(e);
  }
}
