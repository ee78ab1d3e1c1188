// Device memory.
import { DisposedError } from "../errors.js";
import { call, native, type Address, type NativeBuffer } from "../native.js";
import { requireDevice } from "./device.js";
import type { CudaStream } from "./stream.js";

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

  /** Set every byte to `value`: ordered on `stream` when given, else complete when this returns. */
  fill(value: number, stream?: CudaStream): void {
    call(() => this.native.fill(value, stream?.native));
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

/** Device-to-device copy of `bytes` bytes. */
export function copyDeviceToDevice(dst: DeviceBuffer, src: DeviceBuffer, bytes: number, stream?: CudaStream): void {
  call(() => native().copy(dst.native, src.native, bytes, stream?.native));
}

