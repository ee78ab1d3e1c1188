/**
 * @df11/cuda-kernel — DFloat11 on the GPU: a fast decode kernel for compressed BF16 weights, device
 * memory, streams and events, through a Node-API addon (CUDA runtime linked statically: only the
 * NVIDIA driver is needed).
 *
 * @example
 * ```ts
 * import { DeviceModule, DeviceBuffer } from "@df11/cuda-kernel";
 * using gpuModule = DeviceModule.upload(module);           // a DF11Module from @df11/codec, kept resident
 * using weights = DeviceBuffer.alloc(gpuModule.elements * 2);
 * gpuModule.decode(weights);                                // BF16, bit-identical to the original
 * ```
 */
import { validateModule, type DF11Module } from "@df11/codec";
import { CudaUnavailableError, DisposedError } from "./errors.js";
import { call, native, type Address, type NativeBuffer, type NativeEvent, type NativeGraph, type NativeModule, type NativeStream } from "./native.js";

export * from "./errors.js";
export { addonCandidates, type Address } from "./native.js";

/** A CUDA device. */
export interface DeviceInfo {
  readonly index: number;
  readonly name: string;
  readonly computeCapability: string;
  readonly totalMemory: number;
  readonly multiprocessors: number;
  readonly l2CacheBytes: number;
  readonly sharedMemoryPerBlockOptin: number;
}

/** Number of CUDA devices; 0 without a GPU or driver. Throws {@link CudaUnavailableError} without a binary. */
export function deviceCount(): number {
  return call(() => native().deviceCount());
}

/** Whether the addon loads and a CUDA device is present. Never throws. */
export function isCudaAvailable(): boolean {
  try {
    return deviceCount() > 0;
  } catch {
    return false;
  }
}

/** Why CUDA is not usable here, or undefined when it is. */
export function cudaUnavailableReason(): string | undefined {
  try {
    return deviceCount() > 0 ? undefined : "no CUDA device (no GPU, or no NVIDIA driver)";
  } catch (e) {
    return (e as Error).message;
  }
}

function requireDevice(): ReturnType<typeof native> {
  const addon = native();
  if (call(() => addon.deviceCount()) === 0) throw new CudaUnavailableError("no CUDA device found (no GPU, or no NVIDIA driver)");
  return addon;
}

/** All CUDA devices. */
export function devices(): DeviceInfo[] {
  const n = deviceCount();
  return Array.from({ length: n }, (_, i) => call(() => native().deviceInfo(i)) as unknown as DeviceInfo);
}

/** Select the device later calls use. */
export function setDevice(index: number): void {
  call(() => requireDevice().setDevice(index));
}

/** Free and total memory of the current device, in bytes. */
export function memoryInfo(): { free: number; total: number } {
  return call(() => requireDevice().memInfo());
}

/** Wait for all work on the current device. */
export function synchronize(): void {
  call(() => requireDevice().synchronize());
}

/** CUDA runtime version the addon was built with (e.g. 13000). */
export function cudaRuntimeVersion(): number {
  return native().cudaRuntimeVersion;
}

/** Memory on the GPU. Free it with dispose() (or `using`); garbage collection frees it as a last resort. */
export class DeviceBuffer implements Disposable {
  private handle: NativeBuffer | undefined;

  private constructor(handle: NativeBuffer) {
    this.handle = handle;
  }

  /** Allocate `bytes` of device memory (uninitialised). */
  static alloc(bytes: number): DeviceBuffer {
    const addon = requireDevice();
    return new DeviceBuffer(call(() => new addon.DeviceBuffer(bytes)));
  }

  /** Allocate and fill from host memory. */
  static from(data: ArrayBufferView): DeviceBuffer {
    const b = DeviceBuffer.alloc(data.byteLength);
    b.upload(data);
    return b;
  }

  get byteLength(): number {
    return this.native.byteLength;
  }

  /** @internal */
  get native(): NativeBuffer {
    if (!this.handle) throw new DisposedError("DeviceBuffer");
    return this.handle;
  }

  /** The device address of byte 0 (for the kernel launchers; valid until dispose()). */
  get address(): Address {
    return this.native.address;
  }

  /** Copy host bytes into the buffer at `byteOffset`; with a stream, ordered after the work queued on it. */
  upload(data: ArrayBufferView, byteOffset = 0, stream?: CudaStream): void {
    call(() => this.native.upload(data, byteOffset, stream?.native));
  }

  /**
   * Copy the buffer (from `byteOffset`) into `target`, or into a new Uint8Array of the whole buffer; with
   * a stream, after the work queued on it. Returns when the bytes are there.
   */
  download<T extends ArrayBufferView = Uint8Array>(target?: T, byteOffset = 0, stream?: CudaStream): T {
    const out = target ?? (new Uint8Array(this.byteLength - byteOffset) as unknown as T);
    call(() => this.native.download(out, byteOffset, stream?.native));
    return out;
  }

  /** Set every byte to `value`. */
  fill(value: number): void {
    call(() => this.native.fill(value));
  }

  get disposed(): boolean {
    return !this.handle;
  }

  dispose(): void {
    this.handle?.free();
    this.handle = undefined;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** A CUDA stream: work queued on it runs in order, concurrently with other streams. */
export class CudaStream implements Disposable {
  private handle: NativeStream | undefined;
  constructor() {
    const addon = requireDevice();
    this.handle = call(() => new addon.Stream());
  }
  /** @internal */
  get native(): NativeStream {
    if (!this.handle) throw new DisposedError("CudaStream");
    return this.handle;
  }
  synchronize(): void {
    call(() => this.native.synchronize());
  }
  /**
   * Record instead of run: work queued on this stream until {@link endCapture} becomes a CUDA graph,
   * replayed later with one launch (no host round trip per kernel).
   */
  beginCapture(): void {
    call(() => this.native.beginCapture());
  }
  /** Later work on this stream waits for the work recorded by `event` (on any stream). */
  waitEvent(event: CudaEvent): void {
    call(() => this.native.waitEvent(event.native));
  }
  /** Stop recording; the recorded work as an instantiated graph. */
  endCapture(): CudaGraph {
    return new CudaGraph(call(() => this.native.endCapture()));
  }
  dispose(): void {
    this.handle?.destroy();
    this.handle = undefined;
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** A recorded sequence of GPU work (from {@link CudaStream.endCapture}), replayed by `launch`. */
export class CudaGraph implements Disposable {
  private handle: NativeGraph | undefined;
  /** @internal */
  constructor(handle: NativeGraph) {
    this.handle = handle;
  }
  /** Replay the graph on `stream`. */
  launch(stream: CudaStream): void {
    if (!this.handle) throw new DisposedError("CudaGraph");
    call(() => this.handle!.launch(stream.native));
  }
  dispose(): void {
    this.handle?.destroy();
    this.handle = undefined;
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** A CUDA event, for timing work on the GPU or ordering it across streams. */
export class CudaEvent implements Disposable {
  private handle: NativeEvent | undefined;
  /** `timing: false` makes an event that only orders work (cheaper). */
  constructor(options: { timing?: boolean } = {}) {
    const addon = requireDevice();
    this.handle = call(() => new addon.Event(options.timing ?? true));
  }
  /** @internal */
  get native(): NativeEvent {
    if (!this.handle) throw new DisposedError("CudaEvent");
    return this.handle;
  }
  record(stream?: CudaStream): void {
    call(() => this.native.record(stream?.native));
  }
  synchronize(): void {
    call(() => this.native.synchronize());
  }
  /** Milliseconds from `start` to this event (both recorded and complete). */
  elapsedSince(start: CudaEvent): number {
    return call(() => this.native.elapsedMs(start.native));
  }
  dispose(): void {
    this.handle?.destroy();
    this.handle = undefined;
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

export interface DecodeOptions {
  /** Element offset into `out` (a multiple of 8), to decode several modules into one buffer. */
  readonly offset?: number;
  readonly stream?: CudaStream;
}

/**
 * A DF11 module resident on the GPU: its tensors uploaded once (validated first), plus the kernel's
 * first-level decode table. Decoding it writes BF16 into a device buffer.
 */
export class DeviceModule implements Disposable {
  private handle: NativeModule | undefined;
  /** Elements (BF16 weights) the module decodes to. */
  readonly elements: number;
  /** Bytes of device memory the module holds. */
  readonly deviceBytes: number;
  readonly splitPositions: readonly number[];

  private constructor(handle: NativeModule, splitPositions: readonly number[]) {
    this.handle = handle;
    this.elements = handle.elements;
    this.deviceBytes = handle.deviceBytes;
    this.splitPositions = splitPositions;
  }

  /** Validate a module (throws InvalidModuleError from @df11/codec) and upload it. */
  static upload(module: DF11Module): DeviceModule {
    validateModule(module);
    const addon = requireDevice();
    return new DeviceModule(call(() => new addon.Module(module)), module.splitPositions);
  }

  /** @internal */
  get native(): NativeModule {
    if (!this.handle) throw new DisposedError("DeviceModule");
    return this.handle;
  }

  /** Decode into `out` (asynchronous on the given stream; `synchronize` or an event to wait). */
  decode(out: DeviceBuffer, options: DecodeOptions = {}): void {
    decode(this, out, options);
  }

  /**
   * Decode only elements [lo, hi) into device memory at `out` (elements lo… land at out[0…]): only the
   * blocks holding them run. `lo` must be a multiple of 8 and `out` 16-byte aligned.
   */
  decodeRange(out: Address, lo: number, hi: number, stream?: CudaStream): void {
    call(() => this.native.decodeRange(out, lo, hi, stream?.native));
  }

  /**
   * Decode rows of the module seen as a [*, rowElements] matrix, the row indices read on the device from
   * `ids` (Int32, `rows` of them): out[r] = row ids[r]. Works inside CUDA graphs (embedding lookup).
   */
  decodeRows(ids: Address, rows: number, rowElements: number, out: Address, stream?: CudaStream): void {
    call(() => this.native.decodeRows(ids, rows, rowElements, out, stream?.native));
  }

  /**
   * df11-sum64 checksums of the tensors kept on the device exactly as stored (luts, encoded_exponent,
   * sign_mantissa, gaps), computed where they lie: what the loader compares with the recorded ones.
   * `sum` may be one the caller already holds.
   */
  storedChecksums(sum?: DeviceChecksum): Record<"luts" | "encoded_exponent" | "sign_mantissa" | "gaps", string> {
    const where = call(() => this.native.stored());
    using own = sum ? undefined : new DeviceChecksum();
    const summer = (sum ?? own)!;
    const out = {} as Record<keyof typeof where, string>;
    for (const name of Object.keys(where) as Array<keyof typeof where>) out[name] = summer.hexOf(where[name].address, where[name].bytes);
    return out;
  }

  dispose(): void {
    this.handle?.free();
    this.handle = undefined;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Decode a resident module into a device buffer as BF16 bit patterns (2 bytes per element). */
export function decode(module: DeviceModule, out: DeviceBuffer, options: DecodeOptions = {}): void {
  call(() => native().decode(module.native, out.native, options.offset ?? 0, options.stream?.native));
}

/** Device-to-device copy of `bytes` bytes. */
export function copyDeviceToDevice(dst: DeviceBuffer, src: DeviceBuffer, bytes: number, stream?: CudaStream): void {
  call(() => native().copy(dst.native, src.native, bytes, stream?.native));
}

export { CudaBackend, type CudaBackendOptions, type CudaTensor } from "./backend/cuda-backend.js";
export { DeviceChecksum, deviceChecksumHex } from "./integrity/device-checksum.js";
import { DeviceChecksum } from "./integrity/device-checksum.js";
import { registerBackend } from "@df11/models";
import { CudaBackend as Backend } from "./backend/cuda-backend.js";

// Importing this package makes `device: "cuda"` available to @df11/models' loadModel / loadCausalLM.
registerBackend("cuda", { unavailableReason: () => cudaUnavailableReason(), load: (dir, options) => Backend.load(dir, options) });
export { DeviceWeights, type MatrixSource, type LoadProgress, type LoadChecks, type LoadCheckReport } from "./backend/device-weights.js";

/**
 * The addon's raw entry points (kernel launchers taking device addresses). For tests and tools that
 * exercise single kernels; nothing checks the addresses — prefer {@link CudaBackend}.
 * @internal
 */
export function nativeAddon() {
  requireDevice();
  return native();
}
export { OpProfile, type OpTime } from "./backend/op-profile.js";
