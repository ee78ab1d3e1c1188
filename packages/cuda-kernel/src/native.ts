import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { CudaError, CudaUnavailableError } from "./errors.js";

/** The raw addon interface (see csrc/addon.cc). */
export interface NativeAddon {
  DeviceBuffer: new (bytes: number) => NativeBuffer;
  Stream: new () => NativeStream;
  Event: new () => NativeEvent;
  Module: new (m: object) => NativeModule;
  deviceCount(): number;
  deviceInfo(index: number): Record<string, unknown>;
  setDevice(index: number): void;
  memInfo(): { free: number; total: number };
  synchronize(): void;
  decode(module: NativeModule, out: NativeBuffer, offsetElements?: number, stream?: NativeStream): void;
  copy(dst: NativeBuffer, src: NativeBuffer, bytes: number, stream?: NativeStream): void;
  cudaRuntimeVersion: number;
}
export interface NativeBuffer {
  upload(src: ArrayBufferView, offset?: number): void;
  download(dst: ArrayBufferView, offset?: number): void;
  fill(value: number): void;
  free(): void;
  readonly byteLength: number;
}
export interface NativeStream {
  synchronize(): void;
  destroy(): void;
}
export interface NativeEvent {
  record(stream?: NativeStream): void;
  synchronize(): void;
  elapsedMs(start: NativeEvent): number;
  destroy(): void;
}
export interface NativeModule {
  free(): void;
  readonly elements: number;
  readonly deviceBytes: number;
}

const here = typeof __dirname === "string" ? __dirname : dirname(fileURLToPath(import.meta.url));
const packageRoot = join(here, "..");

/** Where the binary is looked for, in order; `DF11_CUDA_ADDON` names the only place to look. */
export const addonCandidates = (): string[] =>
  process.env.DF11_CUDA_ADDON
    ? [process.env.DF11_CUDA_ADDON]
    : [
        join(packageRoot, "prebuilds", `${process.platform}-${process.arch}`, "df11_cuda.node"),
        join(packageRoot, "build", "Release", "df11_cuda.node"),
      ];

let addon: NativeAddon | undefined;
let loadError: CudaUnavailableError | undefined;

/** Load the addon once; throws {@link CudaUnavailableError} saying how to get a binary. */
export function native(): NativeAddon {
  if (addon) return addon;
  if (loadError) throw loadError;
  const path = addonCandidates().find((p) => existsSync(p));
  if (!path) {
    loadError = new CudaUnavailableError(
      `no @df11/cuda-kernel binary for ${process.platform}-${process.arch} (looked in ${addonCandidates().join(", ")}). ` +
        `Reinstall the package (it ships a prebuilt binary for linux-x64), or build one from source with nvcc ≥ 12 and cmake ≥ 3.24: ` +
        `\`npm explore @df11/cuda-kernel -- npm run build:native\`. Everything else in df11 works without it.`,
    );
    throw loadError;
  }
  try {
    addon = createRequire(import.meta.url ?? __filename)(path) as NativeAddon;
    return addon;
  } catch (e) {
    loadError = new CudaUnavailableError(`cannot load ${path}: ${(e as Error).message}`);
    throw loadError;
  }
}

/** Run a native call, turning its CUDA failures into {@link CudaError}. */
export function call<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    const err = e as Error & { code?: string; cudaError?: number };
    if (err.code === "CUDA_ERROR") throw new CudaError(err.message, "CUDA_ERROR", err.cudaError);
    throw e;
  }
}
