import { CausalLM, loadCausalLM } from "@df11/models";
import { CliError } from "./errors.js";

/** Where generation runs: a CUDA GPU, the CPU, or (auto) the GPU when one is present. */
export type DeviceChoice = "auto" | "cpu" | "cuda";

export interface LoadOptions {
  readonly device?: DeviceChoice;
  /** GPU: positions the KV cache holds per sequence. */
  readonly maxContext?: number;
  /** GPU: sequences decoded together. */
  readonly slots?: number;
  /** GPU: bytes placed on the device so far. */
  readonly onProgress?: (done: number, total: number) => void;
}

/**
 * Load a BF16 or DF11 model for generation on the chosen device. The CUDA backend is imported only when
 * used, so the CPU path never touches the addon.
 */
export async function loadModelOn(directory: string, options: LoadOptions = {}): Promise<CausalLM> {
  const device = options.device ?? "auto";
  if (device === "cpu") return loadCausalLM(directory);
  const cuda = await import("@df11/cuda-kernel");
  const reason = cuda.cudaUnavailableReason();
  if (reason) {
    if (device === "auto") return loadCausalLM(directory);
    throw new CliError(`--device cuda: ${reason}`);
  }
  const backend = await cuda.CudaBackend.load(directory, { maxContext: options.maxContext, slots: options.slots, onProgress: options.onProgress });
  return new CausalLM(backend.config, backend);
}
