import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { CudaError, CudaUnavailableError, OutOfDeviceMemoryError } from "./errors.js";
import { kernelEnvironmentProblems } from "./kernel-environment.js";

/** A device address (exact as a JS number below 2^53); 0 is null. */
export type Address = number;

/** Attention parameters as the addon reads them (see AttentionArgs in csrc/kernels/inference.h). */
export interface NativeAttention {
  rows: number;
  positions: Address;
  slots: Address;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  maxContext: number;
  keys: Address;
  values: Address;
  scale: number;
  softcap: number;
  window: number;
}

/** The raw addon interface (see csrc/addon). Kernel launchers take device addresses; callers check them. */
export interface NativeAddon {
  DeviceBuffer: new (bytes: number) => NativeBuffer;
  /** A heap on the current device reserving `reserveBytes` of addresses (rounded up to the granularity); throws where VMM is not supported. */
  DeviceHeap: new (reserveBytes: number) => NativeDeviceHeap;
  /** Whether the current device supports CUDA virtual memory management (false without a device or driver; never throws). */
  virtualMemorySupported(): boolean;
  Stream: new () => NativeStream;
  Event: new (timing?: boolean) => NativeEvent;
  Module: new (m: object) => NativeModule;
  PinnedBuffer: new (bytes: number) => NativePinnedBuffer;
  deviceCount(): number;
  deviceInfo(index: number): Record<string, unknown>;
  setDevice(index: number): void;
  memInfo(): { free: number; total: number };
  synchronize(): void;
  getDevice(): number;
  programmaticLaunch(device: number): boolean;
  allocationStats(device: number): { allocated: number; peak: number };
  resetPeakAllocation(device: number): void;
  decode(module: NativeModule, out: NativeBuffer, offsetElements?: number, stream?: NativeStream): void;
  copy(dst: NativeBuffer, src: NativeBuffer, bytes: number, stream?: NativeStream): void;
  copyAddress(dst: Address, src: Address, bytes: number, stream?: NativeStream): void;
  /** cudaMemsetAsync of `bytes` at `dst` to `value`, ordered on the stream. */
  fillAddress(dst: Address, value: number, bytes: number, stream?: NativeStream): void;
  /** `bytes` from device address `src` into `target` once the stream's work before it is done (waits). */
  downloadAddress(target: ArrayBufferView, src: Address, bytes: number, stream?: NativeStream): void;
  embedding(table: Address, ids: Address, rows: number, dim: number, scale: number, out: Address, stream?: NativeStream): void;
  gatedActivation(gu: Address, rows: number, inner: number, activation: number, out: Address, stream?: NativeStream): void;
  add(a: Address, b: Address, n: number, stream?: NativeStream): void;
  softcap(x: Address, n: number, cap: number, stream?: NativeStream): void;
  /** `values` (optional): each row's largest value, float32. */
  argmax(x: Address, rows: number, n: number, out: Address, stream?: NativeStream, values?: Address): void;
  /** A strided block device to device: `height` rows of `widthBytes` (cudaMemcpy2DAsync). */
  copy2D(dst: Address, dstPitch: number, src: Address, srcPitch: number, widthBytes: number, height: number, stream?: NativeStream): void;
  sum64(address: Address, bytes: number, firstWord: number, out: Address, stream?: NativeStream): void;
  gatherRows(x: Address, rows: Address, count: number, dim: number, out: Address, stream?: NativeStream): void;
  rmsNorm(x: Address, rows: number, dim: number, weight: Address, eps: number, unitOffset: boolean, out: Address, residual: Address, stream?: NativeStream): void;
  linear(
    weight: Address,
    N: number,
    K: number,
    x: Address,
    ldx: number,
    rows: number,
    bias: Address,
    out: Address,
    ldo: number,
    accumulate: boolean,
    xBf16: Address,
    stream?: NativeStream,
    workspace?: Address,
    workspaceBytes?: number,
    gemm?: boolean,
    /** xBf16 holds x converted for this call: the GEMV reads it instead of x above 8 rows (same bits, half the bytes). */
    gemvReadsXb?: boolean,
  ): void;
  toBf16(x: Address, n: number, out: Address, stream?: NativeStream): void;
  /**
   * Which GEMM kernel linear(…, gemm) runs (tests, benchmarks; process-wide, until set again): `auto` (the
   * Hopper wgmma kernel on compute capability 9.0, with its column tile picked per shape; mma.sync
   * elsewhere), `mma`, `sm90` (Hopper, tile picked per shape), `sm90-128` / `sm90-256` (Hopper, that
   * many columns per tile). Overrides `$DF11_GEMM`. Returns whether the current device now runs the Hopper
   * kernel (false for `mma`, and off compute capability 9.0 whatever is asked). Throws TypeError for another name.
   */
  setGemmVariant(variant: "auto" | "mma" | "sm90" | "sm90-128" | "sm90-256"): boolean;
  qkvPrepare(a: NativeAttention, qkv: Address, qNorm: Address, kNorm: Address, eps: number, unitOffset: boolean, invFreq: Address, rotaryDim: number, qOut: Address, stream?: NativeStream): void;
  attention(a: NativeAttention, q: Address, out: Address, splits: number, partial: Address, stream?: NativeStream): void;
  /**
   * The tensor-core (FlashAttention-2 style) attention of a step whose rows all belong to `slot`, at consecutive
   * positions from `firstPosition` (`a.positions`/`a.slots` are not read). `q`: float32 [a.rows, numHeads · headDim]
   * (16-byte aligned), after qkvPrepare; `out`: float32 [a.rows, numHeads · headDim]; the keys and values of
   * positions 0 … firstPosition + a.rows − 1 must be in the cache (qkvPrepare wrote this step's). Returns false,
   * launching nothing, where the kernel does not take the head size (16, 32, 64, 80, 96, 128, 256), the
   * alignment or the device (then run {@link attention}); throws for a bad slot or a span past a.maxContext.
   */
  prefillAttention(a: NativeAttention, slot: number, firstPosition: number, q: Address, out: Address, stream?: NativeStream): boolean;
  fusedTables(src: Address, rowBegin: number, rows: number, cols: number, tables: Address, stream?: NativeStream): void;
  fusedCounts(src: Address, rowBegin: number, rows: number, view: NativeFusedView, counts: Address, stream?: NativeStream): void;
  exclusiveScanBytes(n: number): number;
  exclusiveScan(counts: Address, offsets: Address, n: number, temp: Address, tempBytes: number, stream?: NativeStream): void;
  fusedWrite(src: Address, rowBegin: number, rows: number, view: NativeFusedView, stream?: NativeStream): void;
  fusedUnpack(view: NativeFusedView, rowBegin: number, rowEnd: number, out: Address, ldo: number, stream?: NativeStream): void;
  fusedUnpackRows(view: NativeFusedView, ids: Address, count: number, out: Address, stream?: NativeStream): void;
  /** xBf16: x rounded to BF16 ([rows, K]) or 0; read instead of x for more than 8 rows. */
  fusedLinear(view: NativeFusedView, x: Address, ldx: number, rows: number, bias: Address, out: Address, ldo: number, accumulate: boolean, stream?: NativeStream, xBf16?: Address): void;
  /**
   * out[rows, view.rows] (+)= x · Wᵀ + bias with W in the fused layout, its tiles decoded inside the Hopper
   * GEMM (wgmma + TMA, compute capability 9.0): bit-identical to `linear(…, gemm)` on the BF16 matrix the
   * view encodes. xBf16: x converted to BF16, [rows, view.cols], 16-byte aligned; out float32 [rows, ldo];
   * workspace: split-K partial sums, as for `linear`. Returns false, launching nothing, where that kernel
   * does not run (another GPU, `DF11_GEMM=mma`, `DF11_FUSED_GEMM=0`, too small a workspace): decode windows
   * of W then and call `linear`; also above 128 rows unless `setFusedGemm("always")` (there windows and
   * the BF16 kernel are faster on the H200). Throws for an inconsistent view.
   */
  fusedGemm(view: NativeFusedView, rows: number, bias: Address, out: Address, ldo: number, accumulate: boolean, xBf16: Address, stream: NativeStream | undefined, workspace: Address, workspaceBytes: number): boolean;
  /**
   * When fusedGemm runs (process-wide; tests, benchmarks; overrides `$DF11_FUSED_GEMM`): `auto` (up to 128
   * rows), `always`, or `off` (it then always returns false). Throws TypeError for another name.
   */
  setFusedGemm(mode: "auto" | "always" | "off"): void;
  cudaRuntimeVersion: number;
}

/** A matrix in the DF11 fused layout as the addon reads it (see FusedView in csrc/kernels/fused.h). */
export interface NativeFusedView {
  data: Address;
  tables: Address;
  escapeOffsets: Address;
  escapePositions: Address;
  escapeExponents: Address;
  rows: number;
  cols: number;
  groups: number;
  tiles: number;
}
export interface NativeBuffer {
  upload(src: ArrayBufferView, offset?: number, stream?: NativeStream): void;
  download(dst: ArrayBufferView, offset?: number, stream?: NativeStream): void;
  fill(value: number, stream?: NativeStream): void;
  free(): void;
  readonly byteLength: number;
  readonly address: Address;
}
/** See DeviceHeap in csrc/addon/device-heap.h; sizes in bytes. */
export interface NativeDeviceHeap {
  /** Device address of `bytes` bytes aligned to `alignment` (a power of two, default 256); 0 for 0 bytes. Out of memory: an Error with code CUDA_OUT_OF_MEMORY and `neededBytes`. */
  alloc(bytes: number, alignment?: number): Address;
  free(): void;
  readonly mappedBytes: number;
  readonly usedBytes: number;
  readonly reservedBytes: number;
  readonly granularity: number;
  readonly freed: boolean;
}
export interface NativePinnedBuffer {
  readonly buffer: ArrayBuffer;
  readonly byteLength: number;
  free(): void;
  copyFromDevice(byteOffset: number, src: Address, bytes: number, stream?: NativeStream): void;
  copyToDevice(dst: Address, byteOffset: number, bytes: number, stream?: NativeStream): void;
}
export interface NativeStream {
  synchronize(): void;
  destroy(): void;
  beginCapture(): void;
  endCapture(): NativeGraph;
  waitEvent(event: NativeEvent): void;
}
export interface NativeGraph {
  launch(stream?: NativeStream): void;
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
  decodeRange(out: Address, lo: number, hi: number, stream?: NativeStream): void;
  decodeRows(ids: Address, rows: number, rowElements: number, out: Address, stream?: NativeStream): void;
  /** Where the tensors kept as stored lie on the device. */
  stored(): Record<"luts" | "encoded_exponent" | "sign_mantissa" | "gaps", { address: Address; bytes: number }>;
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
    for (const problem of kernelEnvironmentProblems()) process.emitWarning(problem, { code: "DF11_KERNEL_ENV" });
    return addon;
  } catch (e) {
    loadError = new CudaUnavailableError(`cannot load ${path}: ${(e as Error).message}`);
    throw loadError;
  }
}

/** Run a native call, turning its CUDA failures into {@link CudaError} (allocation failures into {@link OutOfDeviceMemoryError}). */
export function call<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    const err = e as Error & { code?: string; cudaError?: number };
    if (err.code === "CUDA_OUT_OF_MEMORY") throw new OutOfDeviceMemoryError(err.message);
    if (err.code === "CUDA_ERROR") throw new CudaError(err.message, "CUDA_ERROR", err.cudaError);
    throw e;
  }
}
