// A step's inputs up and its greedy tokens down, through pinned host memory on the backend's stream, so
// that the host can queue step N + 1 before step N's tokens are back (pipelined greedy decoding).
import type { PendingArgmax } from "@df11/models";
import type { Address } from "../native.js";
import { PinnedBuffer } from "../runtime/pinned-buffer.js";
import { CudaEvent, type CudaStream } from "../runtime/stream.js";

/**
 * Two pinned buffers used in turn, each with an event marking the end of the last copy queued from or
 * into it: a buffer is written (or re-filled) only once that copy is done, so the host never overwrites
 * bytes a queued DMA has yet to read.
 */
class PinnedPair implements Disposable {
  private readonly buffers: PinnedBuffer[];
  private readonly copied = [new CudaEvent({ timing: false }), new CudaEvent({ timing: false })];
  private next = 0;

  constructor(bytes: number) {
    this.buffers = [PinnedBuffer.alloc(bytes), PinnedBuffer.alloc(bytes)];
  }

  /** Index of the buffer take() hands out next. */
  get upcoming(): number {
    return this.next;
  }

  /** The buffer to use next (its last copy waited for). */
  take(): { index: number; buffer: PinnedBuffer } {
    const index = this.next;
    this.next ^= 1;
    this.copied[index].synchronize();
    return { index, buffer: this.buffers[index] };
  }

  /** Mark the copy just queued on `stream` from or into buffer `index`. */
  queued(index: number, stream: CudaStream): void {
    this.copied[index].record(stream);
  }

  /** Wait for buffer `index`'s last copy. */
  wait(index: number): void {
    this.copied[index].synchronize();
  }

  dispose(): void {
    for (const b of this.buffers) b.dispose();
    for (const e of this.copied) e.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** An argmax whose indices are on their way to a pinned buffer (see StepIo.argmaxQueued). */
class QueuedArgmax implements PendingArgmax {
  private indices: Int32Array | undefined;
  constructor(
    readonly rows: number,
    private readonly fetch: () => Int32Array,
  ) {}
  read(): Int32Array {
    this.indices ??= this.fetch();
    return this.indices;
  }
  /** Whether read() has already fetched the indices. */
  get settled(): boolean {
    return this.indices !== undefined;
  }
}

/**
 * The step inputs ([4, maxRows] int32: tokens, positions, slots, output rows) and the argmax indices
 * ([rows] int32) between host and device. The inputs are copied from a pinned buffer, asynchronously
 * (from pageable memory the driver may wait for the stream); argmax indices queued with
 * {@link argmaxQueued} reach a pinned buffer behind the step.
 */
export class StepIo implements Disposable {
  private readonly inputs: PinnedPair;
  private readonly indices: PinnedPair;
  private readonly queuedIn: (QueuedArgmax | undefined)[] = [undefined, undefined];
  /** The latest argmax when it was queued by argmaxQueued and no other argmax followed (its indices are still in the device buffer). */
  private latest: QueuedArgmax | undefined;

  constructor(
    private readonly maxRows: number,
    indexRows: number,
    private readonly onReadBack: (ms: number) => void,
  ) {
    this.inputs = new PinnedPair(4 * maxRows * 4);
    this.indices = new PinnedPair(indexRows * 4);
  }

  /**
   * Copy the step's inputs to `dst` on `stream` (tokens first, then positions, slots and output rows, each
   * maxRows long). Without `tokens` the token rows are left as they are on the device.
   */
  upload(dst: Address, tokens: Int32Array | undefined, positions: Int32Array, slots: Int32Array, outputRows: Int32Array, stream: CudaStream): void {
    const { index, buffer } = this.inputs.take();
    const m = this.maxRows;
    const h = new Int32Array(buffer.bytes.buffer, buffer.bytes.byteOffset, 4 * m);
    if (tokens) h.set(tokens, 0);
    h.set(positions, m);
    h.set(slots, 2 * m);
    h.set(outputRows, 3 * m);
    if (tokens) buffer.copyToDevice(dst, 0, 4 * m * 4, stream);
    else buffer.copyToDevice(dst + m * 4, m * 4, 3 * m * 4, stream);
    this.inputs.queued(index, stream);
  }

  /** An argmax other than argmaxQueued overwrote the device's indices. */
  overwritten(): void {
    this.latest = undefined;
  }

  /** Queue the copy of `rows` argmax indices at `src` (just computed on `stream`) to the host; read() waits for them. */
  argmaxQueued(src: Address, rows: number, stream: CudaStream): PendingArgmax {
    const { index, buffer } = this.takeIndices();
    buffer.copyFromDevice(0, src, rows * 4, stream);
    this.indices.queued(index, stream);
    const pending = new QueuedArgmax(rows, () => {
      const t0 = performance.now();
      this.indices.wait(index);
      this.onReadBack(performance.now() - t0);
      return new Int32Array(buffer.bytes.buffer, buffer.bytes.byteOffset, rows).slice();
    });
    this.queuedIn[index] = pending;
    this.latest = pending;
    return pending;
  }

  /** Whether `p` is the latest argmax and its indices are still on the device. */
  isLatest(p: PendingArgmax): boolean {
    return p === this.latest;
  }

  /** The next index buffer; an unread argmax still in it is read first (its pending keeps the values). */
  private takeIndices(): { index: number; buffer: PinnedBuffer } {
    const old = this.queuedIn[this.indices.upcoming];
    if (old && !old.settled) old.read();
    return this.indices.take();
  }

  dispose(): void {
    this.inputs.dispose();
    this.indices.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}
