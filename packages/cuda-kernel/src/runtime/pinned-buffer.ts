// Page-locked host memory.
import { DisposedError } from "../errors.js";
import { call, type NativePinnedBuffer } from "../native.js";
import { requireDevice } from "./device.js";

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

  dispose(): void {
    this.handle?.free();
    this.handle = undefined;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
