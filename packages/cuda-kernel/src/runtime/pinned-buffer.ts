// Page-locked host memory.
import { DisposedError } from "../errors.js";
import { call, type Address, type NativePinnedBuffer } from "../native.js";
import { requireDevice } from "./device.js";
import type { CudaStream } from "./stream.js";

/**
 * Page-locked (pinned) host memory, as a Uint8Array: copies from it to the device run as DMA,
 * asynchronously on a stream (DeviceBuffer.upload with a stream), while the host reads the next file
 * piece. Free it with dispose() (or `using`); the view is detached then.
 */
export class PinnedBuffer implements Disposable {
  private handle: NativePinnedBuffer | undefined;
  /** The memory (valid until dispose()). */
  readonly bytes: Uint8Array;

  private constructor(handle: NativePinnedBuffer) {
    this.handle = handle;
    this.bytes = new Uint8Array(handle.buffer);
  }

  /** Allocate `bytes` of pinned host memory. Throws CudaError when the driver cannot. */
  static alloc(bytes: number): PinnedBuffer {
    const addon = requireDevice();
    return new PinnedBuffer(call(() => new addon.PinnedBuffer(bytes)));
  }

  get byteLength(): number {
    if (!this.handle) throw new DisposedError("PinnedBuffer");
    return this.handle.byteLength;
  }

  /** @internal */
  get native(): NativePinnedBuffer {
    if (!this.handle) throw new DisposedError("PinnedBuffer");
    return this.handle;
  }

  /** Copy `bytes` bytes of device memory at `src` into this buffer at `byteOffset`, asynchronously on `stream`. */
  copyFromDevice(byteOffset: number, src: Address, bytes: number, stream: CudaStream): void {
    call(() => this.native.copyFromDevice(byteOffset, src, bytes, stream.native));
  }

  /**
   * Copy `bytes` bytes of this buffer from `byteOffset` to device memory at `dst`, asynchronously on
   * `stream` (a DMA; recorded as a memcpy node when the stream is being captured into a CUDA graph).
   */
  copyToDevice(dst: Address, byteOffset: number, bytes: number, stream: CudaStream): void {
    call(() => this.native.copyToDevice(dst, byteOffset, bytes, stream.native));
  }

  dispose(): void {
    this.handle?.free();
    this.handle = undefined;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
