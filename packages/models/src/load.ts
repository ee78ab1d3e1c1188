import { readModelConfig, SafetensorsCollection } from "@df11/hub-loader";
import { backendProvider, type BackendLoadOptions } from "./backend-registry.js";
import { CausalLM } from "./causal-lm.js";
import { CpuBackend } from "./cpu-backend.js";
import { parseTextModelConfig } from "./config.js";
import { ModelsError } from "./errors.js";
import { checkGpuOptions, warnGpuOptionsIgnored, type GpuOptionsIgnoredWarning } from "./gpu-options.js";
import { dfloat11ConfigOf } from "./dfloat11-config.js";
import { languageModelOf } from "./language-model.js";
import { Bf16WeightStore, Df11WeightStore } from "./weight-store.js";
import { checksumHex, decodeModule } from "@df11/codec";
import { compressedModulesOf, readDF11Module } from "./df11-checkpoint.js";
import { checkDecodedWeights, checkStoredTensors, readRecordedChecksums } from "./integrity.js";
import { readGenerationConfig } from "./generation-config.js";
import type { TextModelConfig } from "./config.js";

/** The config with generation_config.json's end-of-sequence ids added to config.json's (transformers stops on either). */
async function withGenerationEos(directory: string, config: TextModelConfig): Promise<TextModelConfig> {
  const generation = await readGenerationConfig(directory);
  if (!generation) return config;
  return { ...config, eosTokenIds: [...new Set([...config.eosTokenIds, ...generation.eosTokenIds])] };
}

export interface LoadCausalLMOptions extends BackendLoadOptions {
  /** cpu (default here), cuda, or auto: the GPU when @df11/cuda-kernel is installed and a GPU is usable. */
  readonly device?: "auto" | "cpu" | "cuda";
}

/**
 * Load a causal LM from a model directory, BF16 or DFloat11 (detected by `dfloat11_config`; every
 * layout the DFloat11 releases use since 0.2.0). A multimodal checkpoint (gemma-3) loads its language
 * model and leaves the vision parts out (see {@link languageModelOf}). On the CPU
 * only a DF11 model's compressed modules are held, each decoded just before use; `device: "cuda"` runs
 * it on the GPU through @df11/cuda-kernel (which must be installed). Stored tensors are checked against
 * the checksums the files record (if any) unless `checkStored` is false; `verifyWeights` also decodes
 * every module once and checks its weights. A mismatch throws {@link ChecksumMismatchError}. The
 * model's `config.eosTokenIds` are config.json's and generation_config.json's together.
 *
 * GPU options are checked first, before the directory is read or a device looked for
 * ({@link checkGpuOptions}: OptionError for malformed values and options that do not combine, such as
 * several `devices` with `gpuWeights: "huffman"`, or `gpuWeights`/`maxGpuMemory` with `device: "cpu"`, the
 * default here). With `device: "auto"` and no usable GPU the model loads on the CPU, and GPU-only
 * options given (`gpuWeights` other than auto, `maxGpuMemory`) are reported ignored through a
 * {@link GpuOptionsIgnoredWarning} (`process.emitWarning`); `devices` asks for the GPU, so it fails instead.
 */
export async function loadCausalLM(directory: string, options: LoadCausalLMOptions = {}): Promise<CausalLM> {
  // GPU indices mean the GPU: no quiet fallback to the CPU.
  const device = options.devices ? "cuda" : (options.device ?? "cpu");
  // Options that do not combine are said before anything is read or any device is looked for.
  checkGpuOptions({ ...options, device: options.devices ? options.device : device });
  // Formats df11 does not read (DFloat11 0.1.0) are named the same way whichever device runs the model.
  const raw = await readModelConfig(directory);
  const df11 = dfloat11ConfigOf(raw, directory);
  if (device !== "cpu") {
    const provider = await backendProvider("cuda");
    const reason = provider ? provider.unavailableReason() : "@df11/cuda-kernel is not installed (npm install @df11/cuda-kernel)";
    if (!reason) {
      // Not `device` ("cuda" here): a backend's own `device` option is a GPU index.
      const { device: _device, ...backendOptions } = options;
      const backend = await provider!.load(directory, backendOptions);
      try {
        return new CausalLM(await withGenerationEos(directory, backend.config), backend);
      } catch (e) {
        backend.dispose();
        throw e;
      }
    }
    if (device === "cuda") throw new ModelsError(options.devices ? `devices ${options.devices.join(",")}: ${reason}` : `device cuda: ${reason}`);
    // device auto, no usable GPU: the model runs on the CPU, and GPU-only options given are said to be ignored.
    warnGpuOptionsIgnored(options, reason);
  }
  const config = await withGenerationEos(directory, parseTextModelConfig(raw));
  await using files = await SafetensorsCollection.openDirectory(directory);
  // A multimodal checkpoint's language model under the usual names; a causal LM as it is.
  const { weights, patternDict } = languageModelOf(files, df11?.patternDict);
  const recorded = readRecordedChecksums(weights);
  if (options.checkStored !== false) await checkStoredTensors(weights, recorded);
  if (options.verifyWeights && df11) {
    for (const path of compressedModulesOf(weights.names())) {
      checkDecodedWeights(path, recorded, checksumHex(decodeModule(await readDF11Module(weights, path))));
    }
  }
  const store = patternDict ? await Df11WeightStore.load(weights, patternDict) : await Bf16WeightStore.load(weights);
  return new CausalLM(config, new CpuBackend(config, store, options.maxContext));
}
