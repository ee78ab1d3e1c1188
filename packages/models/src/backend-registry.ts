import type { Backend } from "./backend.js";

/** Options a GPU backend loader takes. */
export interface BackendLoadOptions {
  /** Positions per sequence (KV cache). */
  readonly maxContext?: number;
  /** Sequences decoded together. */
  readonly slots?: number;
  /**
   * Rows (tokens) one forward step takes at most: a prompt chunk, or the prompts prefilled together in a
   * shared step. The GPU's working memory is sized for it (about 0.4 MB per row on an 8B model: 0.8 GB at 2048); a
   * DF11 model in the fused layout unpacks its weights once per prefill step, so larger steps mean fewer
   * unpackings. Default 512 (the CPU has no such limit).
   */
  readonly maxRows?: number;
  /** Bytes of weights placed on the device so far. */
  readonly onProgress?: (done: number, total: number) => void;
  /**
   * Check the stored tensors against the checksums recorded in the files (default true; cheap: on the
   * GPU, summed where they were uploaded). A mismatch throws {@link ChecksumMismatchError}.
   */
  readonly checkStored?: boolean;
  /** Also decode every DF11 module once at load and check its weights' recorded checksum. */
  readonly verifyWeights?: boolean;
  /**
   * How a GPU holds the weights: `fused` (the DF11 fused layout, decoded inside the matrix kernels: DF11's
   * memory at BF16's speed or better), `huffman` (DF11 modules as stored, decoded window by window: least
   * memory), `bf16` (plain BF16), or `auto` (default: fused (bf16 for tiny models, where its padding costs more), or huffman when that would not fit).
   * Only a GPU uses it: with `device: "cpu"` a value other than auto is refused (OptionError); with
   * `device: "auto"` and no usable GPU the model runs on the CPU and a `GpuOptionsIgnoredWarning` says it
   * was ignored. Several `devices` refuse `huffman`.
   */
  readonly gpuWeights?: "auto" | "fused" | "huffman" | "bf16";
  /**
   * CUDA device indices. One: run on that GPU. Several: tensor parallelism over them (attention heads,
   * MLP features and lm_head's vocabulary split across the GPUs, NCCL all-reduces between; see
   * `tensorParallelPlan`). Default: the current device. Given, they ask for the GPU: with no usable GPU
   * the load fails (never a quiet CPU run), and `device: "cpu"` refuses them (OptionError).
   */
  readonly devices?: readonly number[];
  /**
   * Bytes of device memory (per GPU; 1 GB = 1e9 bytes) the backend may allocate for weights, KV cache and
   * working memory (not the CUDA context). Default: what is free. When the weights do not fit, the last
   * decoder layers stay in pinned host memory — DF11 in the fused layout (~71 % of BF16), BF16 as BF16 —
   * and are copied in just ahead of use (CPU offload): bit-identical outputs, slower steps. See
   * `WeightsInfo.offload` for what was offloaded. Only a GPU uses it: with `device: "cpu"` it is refused
   * (OptionError); with `device: "auto"` and no usable GPU the model runs on the CPU and a
   * `GpuOptionsIgnoredWarning` (`process.emitWarning`) says it was ignored. With several `devices`
   * (tensor parallelism) it is each GPU's budget: each offloads the same last layers' slices.
   */
  readonly maxGpuMemory?: number;
}

/** A device backend that another package provides (the CUDA one lives in @df11/cuda-kernel). */
export interface BackendProvider {
  /** Why the device cannot be used here, or undefined when it can. */
  unavailableReason(): string | undefined;
  load(directory: string, options: BackendLoadOptions): Promise<Backend>;
}

const providers = new Map<string, BackendProvider>();

/** Called by device packages when they are imported (e.g. `import "@df11/cuda-kernel"`). */
export function registerBackend(device: "cuda", provider: BackendProvider): void {
  providers.set(device, provider);
}

/**
 * The provider for a device: registered already, or found by importing its package when installed
 * (@df11/models does not depend on it, so it installs and runs without the addon).
 */
export async function backendProvider(device: "cuda"): Promise<BackendProvider | undefined> {
  if (!providers.has(device)) {
    const specifier = "@df11/cuda-kernel";
    try {
      await import(specifier);
    } catch {
      // not installed: the caller says what to do
    }
  }
  return providers.get(device);
}
