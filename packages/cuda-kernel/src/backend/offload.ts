import type { OffloadReport } from "@df11/models";
import type { Address } from "../native.js";
import { DeviceBuffer } from "../runtime/device-buffer.js";
import type { PinnedBuffer } from "../runtime/pinned-buffer.js";
import { CudaEvent, CudaStream } from "../runtime/stream.js";

/** A decoder layer held in pinned host memory: its matrices' parts packed as they will lie in its slot. */
export interface HostLayer {
  readonly layer: number;
  readonly host: PinnedBuffer;
  /** Bytes used in `host` (and in the slot). */
  readonly bytes: number;
}

/**
 * Decoder layers kept in pinned host memory (CPU offload) and streamed into two device slots, one layer
 * ahead of the compute, on a copy stream of their own. The i-th offloaded layer (in forward order) always
 * lands in slot i % 2, so the matrices reading it have fixed addresses and CUDA graphs recorded once
 * stay valid. Per forward step ({@link beginLayer}):
 * - at layer 0 (the step's start) the copy stream waits for the compute stream (the previous step is
 *   done with both slots) and copies the first two offloaded layers in;
 * - before an offloaded layer's first op, the compute stream waits for its copy (the decode stream, which
 *   decodes windows of it for the GEMM, forks from the compute stream after that wait: CudaBackend);
 * - when offloaded layer i has run (its last matrix op queued: the next layer begins), the copy of layer
 *   i + 2 into its slot is queued behind an event recorded on the compute stream.
 * Every copy is waited on by the compute stream in the same step, so a captured step joins the copy
 * stream back (cudaMemcpyAsync from pinned memory and cross-stream events are capturable).
 */
export class LayerOffload implements Disposable {
  private readonly copyStream = new CudaStream();
  private readonly stepStart = new CudaEvent({ timing: false });
  private readonly copied = [new CudaEvent({ timing: false }), new CudaEvent({ timing: false })];
  private readonly released = [new CudaEvent({ timing: false }), new CudaEvent({ timing: false })];
  /** Offload order of a layer (forward order), by layer index. */
  private readonly order = new Map<number, number>();
  private disposed = false;

  constructor(
    /** Offloaded layers, ascending. */
    readonly layers: readonly HostLayer[],
    /** The device slots (one, or two when more than one layer is offloaded). */
    private readonly slots: readonly DeviceBuffer[],
  ) {
    layers.forEach((l, i) => this.order.set(l.layer, i));
  }

  /** Device slots for `layers` (the largest layer's bytes each; one slot when there is one layer). */
  static allocateSlots(layers: readonly HostLayer[]): DeviceBuffer[] {
    const bytes = Math.max(16, ...layers.map((l) => l.bytes));
    const slots: DeviceBuffer[] = [];
    try {
      for (let i = 0; i < Math.min(2, layers.length); i++) slots.push(DeviceBuffer.alloc(bytes));
    } catch (e) {
      for (const s of slots) s.dispose();
      throw e;
    }
    return slots;
  }

  /** The slot the layer at offload position `index` (forward order) always lands in. */
  static slotIndex(index: number): number {
    return index % 2;
  }

  /** Device address of the slot the layer at offload position `index` lands in. */
  slotAddress(index: number): Address {
    return this.slots[LayerOffload.slotIndex(index)].address;
  }

  /** Whether a layer's matrices live in a slot. */
  has(layer: number): boolean {
    return this.order.has(layer);
  }

  get report(): OffloadReport {
    return {
      layers: this.layers.map((l) => l.layer),
      hostBytes: this.layers.reduce((s, l) => s + l.bytes, 0),
      slotBytes: this.slots.reduce((s, b) => s + b.byteLength, 0),
    };
  }

  /** Queue the copy of the layer at offload position `index` into its slot (after what the copy stream waits for). */
  private copyIn(index: number): void {
    const l = this.layers[index];
    const k = LayerOffload.slotIndex(index);
    l.host.copyToDevice(this.slots[k].address, 0, l.bytes, this.copyStream);
    this.copied[k].record(this.copyStream);
  }

  /**
   * Layer `layer` of a forward step begins (`layer` = the model's layer count: the layers are done).
   * Queues what the schedule above needs on `compute` and the copy stream. Every wait on the copy stream
   * is followed by a copy that `compute` waits for, so a captured step leaves no fork unjoined.
   */
  beginLayer(layer: number, compute: CudaStream): void {
    const n = this.layers.length;
    if (layer === 0) {
      this.stepStart.record(compute);
      this.copyStream.waitEvent(this.stepStart);
      for (let i = 0; i < Math.min(2, n); i++) this.copyIn(i);
    }
    const previous = this.order.get(layer - 1);
    if (previous !== undefined && previous + 2 < n) {
      const k = LayerOffload.slotIndex(previous);
      this.released[k].record(compute);
      this.copyStream.waitEvent(this.released[k]);
      this.copyIn(previous + 2);
    }
    const current = this.order.get(layer);
    if (current !== undefined) compute.waitEvent(this.copied[LayerOffload.slotIndex(current)]);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    try {
      this.copyStream.synchronize();
    } catch {
      // already failed: free what we can
    }
    for (const s of this.slots) s.dispose();
    for (const l of this.layers) l.host.dispose();
    for (const e of [this.stepStart, ...this.copied, ...this.released]) e.dispose();
    this.copyStream.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
