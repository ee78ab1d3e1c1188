import type { Address } from "../native.js";
import { DeviceBuffer } from "../runtime/device-buffer.js";
import type { TranscodeMemory } from "./formats/fused.js";

/** Where kept layout arrays come from: a heap packing them back to back (DeviceHeap), or anything with the same call. */
export interface KeptMemory {
  alloc(bytes: number, alignment?: number): Address;
}

/** What {@link LoadMemory} needs of its temporary buffer (a DeviceBuffer). */
export interface TemporaryBuffer {
  readonly address: Address;
  readonly byteLength: number;
  dispose(): void;
}

/**
 * The loader's {@link TranscodeMemory}: one temporary buffer reused by every matrix it transcodes (grown
 * when a larger one is needed, freed with this), and kept arrays from `kept` — a heap when the device has
 * one — or, without it, from `fallback` (cudaMalloc'd buffers the caller owns).
 */
export class LoadMemory implements TranscodeMemory, Disposable {
  private temp: TemporaryBuffer | undefined;

  /** `allocTemporary` is DeviceBuffer.alloc unless a test injects another allocator. */
  constructor(
    private readonly kept: KeptMemory | undefined,
    private readonly fallback: (bytes: number) => Address,
    private readonly allocTemporary: (bytes: number) => TemporaryBuffer = (bytes) => DeviceBuffer.alloc(bytes),
  ) {}

  temporary(bytes: number): Address {
    if (!this.temp || this.temp.byteLength < bytes) {
      const old = this.temp;
      this.temp = undefined; // a failed alloc below must not leave a freed buffer to hand out
      old?.dispose(); // a free waits for the device: the previous user is done
      this.temp = this.allocTemporary(Math.max(bytes, 1));
    }
    return this.temp.address;
  }

  /** Bytes handed out by keep() from `kept` (without its alignment padding). */
  keptBytes = 0;

  keep(bytes: number): Address {
    if (!this.kept) return this.fallback(bytes);
    const address = this.kept.alloc(bytes, 256);
    this.keptBytes += bytes;
    return address;
  }

  dispose(): void {
    this.temp?.dispose();
    this.temp = undefined;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
