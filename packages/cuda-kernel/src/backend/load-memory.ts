import type { Address } from "../native.js";
import { DeviceBuffer } from "../runtime/device-buffer.js";
import type { TranscodeMemory } from "./formats/fused.js";

/** Where kept layout arrays come from: a heap packing them back to back (DeviceHeap), or anything with the same call. */
export interface KeptMemory {
  alloc(bytes: number, alignment?: number): Address;
}

/**
 * The loader's {@link TranscodeMemory}: one temporary buffer reused by every matrix it transcodes (grown
 * when a larger one is needed, freed with this), and kept arrays from `kept` — a heap when the device has
 * one — or, without it, from `fallback` (cudaMalloc'd buffers the caller owns).
 */
export class LoadMemory implements TranscodeMemory, Disposable {
  private temp: DeviceBuffer | undefined;

  constructor(
    private readonly kept: KeptMemory | undefined,
    private readonly fallback: (bytes: number) => Address,
  ) {}

  temporary(bytes: number): Address {
    if (!this.temp || this.temp.byteLength < bytes) {
      this.temp?.dispose(); // a free waits for the device: the previous user is done
      this.temp = DeviceBuffer.alloc(Math.max(bytes, 1 << 20));
    }
    return this.temp.address;
  }

  keep(bytes: number): Address {
    return this.kept ? this.kept.alloc(bytes, 256) : this.fallback(bytes);
  }

  dispose(): void {
    this.temp?.dispose();
    this.temp = undefined;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
