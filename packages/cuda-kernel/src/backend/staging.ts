import { availableParallelism } from "node:os";
import type { SafetensorsCollection } from "@df11/hub-loader";
import { PinnedBuffer } from "../runtime/pinned-buffer.js";
import type { CudaEvent } from "../runtime/stream.js";

const align = (n: number, to: number) => Math.ceil(n / to) * to;

/** Tensors read into pinned memory: each one's bytes (8-byte-aligned views, valid until the unit is released). */
export interface StagedUnit {
  readonly bytes: ReadonlyMap<string, Uint8Array>;
  /** Once the copies from this unit to the device are queued: the unit's memory is reused after `done` completes. */
  release(done?: CudaEvent): void;
}

/**
 * Reads a checkpoint's tensors for the GPU loader, one unit (a module, a layer's matrices) at a time,
 * into two regions of pinned host memory taken in turn: while one unit's bytes are copied to the device
 * (DMA, asynchronous on a stream) and checked and transcoded there, the next unit's are read — each
 * tensor in several positional reads at once. Regions grow to the largest unit.
 */
export class PinnedStaging implements Disposable {
  private readonly regions: Array<{ buffer?: PinnedBuffer; busy?: CudaEvent; inUse: boolean }> = [{ inUse: false }, { inUse: false }];
  private turn = 0;
  private readonly concurrency = Math.max(4, Math.min(16, availableParallelism()));

  constructor(private readonly weights: SafetensorsCollection) {}

  /** Bytes a unit of these tensors takes in a region. */
  private bytesOf(names: readonly string[]): number {
    return names.reduce((n, name) => n + align(this.weights.info(name).byteLength, 256), 0);
  }

  /**
   * Start reading `names` into the next region (waiting for the copies of the unit that used it before).
   * The returned promise resolves once every byte is in pinned memory.
   */
  async read(names: readonly string[]): Promise<StagedUnit> {
    const index = this.turn++ % 2;
    const region = this.regions[index];
    if (region.inUse) throw new Error("PinnedStaging: a unit was not released before its region came round again");
    region.inUse = true;
    region.busy?.synchronize();
    region.busy = undefined;
    const need = this.bytesOf(names);
    if (!region.buffer || region.buffer.byteLength < need) {
      region.buffer?.dispose();
      region.buffer = PinnedBuffer.alloc(Math.max(need, 64 << 20));
    }
    const memory = region.buffer.bytes;
    const bytes = new Map<string, Uint8Array>();
    let offset = 0;
    await Promise.all(
      names.map((name) => {
        const length = this.weights.info(name).byteLength;
        const view = memory.subarray(offset, offset + length);
        offset += align(length, 256);
        bytes.set(name, view);
        return this.weights.readInto(name, view, this.concurrency);
      }),
    );
    return {
      bytes,
      release: (done?: CudaEvent) => {
        region.busy = done;
        region.inUse = false;
      },
    };
  }

  dispose(): void {
    for (const r of this.regions) {
      r.busy?.synchronize();
      r.buffer?.dispose();
      r.buffer = undefined;
    }
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
