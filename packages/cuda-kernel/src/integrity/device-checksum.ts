import { formatSum64, type Sum64 } from "@df11/codec";
import { DeviceBuffer } from "../runtime/device-buffer.js";
import type { CudaStream } from "../runtime/stream.js";
import { call, native, type Address } from "../native.js";

/**
 * df11-sum64 computed on the GPU (same algorithm and result as @df11/codec's `checksumHex`), summed
 * slice after slice into one pair of device words: the slices may be decode windows of a module, each
 * given the index of its first 32-bit word in the whole stream.
 *
 * @example
 * ```ts
 * using sum = new DeviceChecksum();
 * sum.add(buffer.address, buffer.byteLength);
 * sum.hex(); // === checksumHex(the same bytes on the host)
 * ```
 */
export class DeviceChecksum implements Disposable {
  private readonly lanes = DeviceBuffer.alloc(8);

  constructor() {
    this.reset();
  }

  /** Start again from zero (synchronous). */
  reset(): void {
    this.lanes.fill(0);
  }

  /**
   * Add `bytes` bytes at `address` (16-byte aligned), the first being word `firstWordIndex` of the
   * stream (so a slice starting at byte offset o of the stream has firstWordIndex o / 4). Asynchronous on `stream`.
   */
  add(address: Address, bytes: number, firstWordIndex = 0, stream?: CudaStream): void {
    call(() => native().sum64(address, bytes, firstWordIndex, this.lanes.address, stream?.native));
  }

  /** Wait for `stream` (or the whole device) and read the sum. */
  read(stream?: CudaStream): Sum64 {
    if (stream) stream.synchronize();
    else call(() => native().synchronize());
    const lanes = this.lanes.download(new Uint32Array(2));
    return { a: lanes[0], b: lanes[1] };
  }

  /** Sum one stretch of memory from zero, synchronously: 16 hex digits. */
  hexOf(address: Address, bytes: number, firstWordIndex = 0): string {
    this.reset();
    this.add(address, bytes, firstWordIndex);
    return this.hex();
  }

  /** {@link read} as 16 hex digits. */
  hex(stream?: CudaStream): string {
    return formatSum64(this.read(stream));
  }

  dispose(): void {
    this.lanes.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** df11-sum64 of device memory, as 16 hex digits (synchronous). */
export function deviceChecksumHex(address: Address, bytes: number, firstWordIndex = 0): string {
  using sum = new DeviceChecksum();
  return sum.hexOf(address, bytes, firstWordIndex);
}

/**
 * df11-sum64 of several stretches of device memory at once: each summed into its own slot on `stream`,
 * all read back with one synchronisation (the loader checks a layer's tensors so, not one wait each).
 */
export class DeviceChecksumBatch implements Disposable {
  private readonly lanes: DeviceBuffer;

  constructor(
    readonly slots: number,
    private readonly stream?: CudaStream,
  ) {
    this.lanes = DeviceBuffer.alloc(Math.max(1, slots) * 8);
    this.reset();
  }

  /** Every slot back to zero (asynchronous on the batch's stream), to sum again without a new buffer. */
  reset(): void {
    this.lanes.fill(0, this.stream);
  }

  /** Add `bytes` bytes at `address` (16-byte aligned) into slot `slot`. Asynchronous on the batch's stream. */
  add(slot: number, address: Address, bytes: number, firstWordIndex = 0): void {
    if (slot < 0 || slot >= this.slots) throw new RangeError(`slot ${slot} outside 0…${this.slots - 1}`);
    call(() => native().sum64(address, bytes, firstWordIndex, this.lanes.address + slot * 8, this.stream?.native));
  }

  /** Every slot's sum as 16 hex digits (waits for the stream). */
  hex(): string[] {
    const lanes = this.lanes.download(new Uint32Array(2 * this.slots), 0, this.stream);
    return Array.from({ length: this.slots }, (_, i) => formatSum64({ a: lanes[2 * i], b: lanes[2 * i + 1] }));
  }

  dispose(): void {
    this.lanes.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
