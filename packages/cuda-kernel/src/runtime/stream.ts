// Streams, graphs and events.
import { DisposedError } from "../errors.js";
import { call, type NativeEvent, type NativeGraph, type NativeStream } from "../native.js";
import { requireDevice } from "./device.js";

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

