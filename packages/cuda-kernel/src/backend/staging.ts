import type { SafetensorsCollection } from "@df11/hub-loader";
import type { Address } from "../native.js";
import type { CudaStream } from "../runtime/stream.js";

/** One unit of a load (a DF11 module, a layer's matrices): tensors read to host memory, and tensors streamed to the device. */
export interface StagingUnit {
  /** Tensors the caller needs on the host (small: LUTs, positions, gaps), each read whole into plain memory. */
  readonly host: readonly string[];
  /** Tensors copied to device memory the caller names in {@link StagedUnit.copyTo}, piece by piece. */
  readonly device: readonly string[];
}

/** A unit whose host tensors are read; its device tensors arrive through {@link copyTo}. */
export interface StagedUnit {
  readonly host: ReadonlyMap<string, Uint8Array>;
  /**
   * Queue the copies of every device tensor to `dst(name)` on `stream`, each piece as soon as it is read;
   * resolves once every copy is queued (the bytes are on the device when `stream` gets there). Call it
   * once per unit, before asking for the next unit.
   */
  copyTo(dst: (name: string) => Address, stream: CudaStream): Promise<void>;
}

/** A piece of page-locked memory the device copies from (PinnedBuffer on a GPU; a fake in tests). */
export interface StagingChunk {
  readonly bytes: Uint8Array;
  dispose(): void;
  /** Copy `bytes` bytes from `byteOffset` to device address `dst`, asynchronously on `stream`. */
  copyToDevice(dst: Address, byteOffset: number, bytes: number, stream: CudaStream): void;
}

/** Marks copies queued on a stream: `synchronize()` waits for them. */
export interface CopyMarker {
  synchronize(): void;
  dispose(): void;
}

/** How the staging gets pinned memory and knows when a copy from it has finished. */
export interface StagingDevice {
  allocChunk(bytes: number): StagingChunk;
  /** A marker of the work queued on `stream` so far: `synchronize()` waits for it. */
  record(stream: CudaStream): CopyMarker;
}

export interface StreamingStagingOptions {
  /** Bytes per pinned chunk (default 32 MiB; smaller when the largest device tensor is smaller). */
  readonly chunkBytes?: number;
  /** Chunks in the ring: how far reading may run ahead of the copies (default 6). */
  readonly chunks?: number;
  /** Positional reads at once per chunk, at most (default 4; readInto reads 16 MiB pieces, so a 32 MiB chunk has 2 in flight). */
  readonly readsPerChunk?: number;
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(v: T): void;
  reject(e: unknown): void;
}
function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {}); // observed by whoever awaits it; never an unhandled rejection
  return { promise, resolve, reject };
}

/** A slot of the ring: its memory (allocated on first use), and when the copy out of it is queued and done. */
interface Slot {
  chunk?: StagingChunk;
  /** Resolved when the consumer has queued the copy of the piece in it (`release` resolves it). */
  queued?: Promise<void>;
  release?: () => void;
  done?: CopyMarker;
  /** The read into it, in flight (awaited before the memory is freed). */
  reading?: Promise<void>;
}

interface Piece {
  readonly name: string;
  readonly offset: number;
  readonly length: number;
}

class StoppedError extends Error {}

/**
 * Reads a checkpoint's tensors for the GPU loader unit by unit, a reader running ahead of the GPU work:
 * each unit's small tensors into host memory, its large ones through a ring of small pinned chunks (32
 * MiB each by default) from which the device copies them (DMA, asynchronous) — several positional reads
 * in flight while earlier chunks are copied and the unit before is transcoded. Pinned memory costs ~0.4
 * ms per MB to allocate (H200 host): a ring of a few chunks instead of regions the size of the largest
 * unit (0.7 GB for an 8B model's lm_head) takes that off the load. Dispose (`await using`) waits for the
 * reads in flight before freeing the chunks.
 */
export class StreamingStaging implements AsyncDisposable {
  private readonly slots: Slot[];
  private readonly chunkBytes: number;
  private readonly readsPerChunk: number;
  private readonly staged: Array<Deferred<{ host: Map<string, Uint8Array> }>>;
  /** Per unit, per piece: the slot it was read into, once the reader has started it. */
  private readonly pieces: Array<Array<Deferred<{ slot: Slot; read: Promise<void> }>>>;
  private readonly piecePlan: Piece[][];
  private nextUnit = 0;
  /** The unit handed out (or being handed out) whose copyTo has not been called yet. */
  private uncopied: number | undefined;
  private copying: Promise<void> = Promise.resolve();
  private stopped = false;
  private disposing: Promise<void> | undefined;
  private readonly reader: Promise<void>;

  constructor(
    private readonly weights: SafetensorsCollection,
    private readonly units: readonly StagingUnit[],
    private readonly device: StagingDevice,
    options: StreamingStagingOptions = {},
  ) {
    // NaN or 0 here would read nothing (no pieces, no readers) and copy stale chunk bytes without an error.
    for (const [k, v] of Object.entries(options)) if (v !== undefined && !(Number.isInteger(v) && v >= 1)) throw new RangeError(`StreamingStaging: ${k} must be an integer ≥ 1, got ${v}`);
    const largest = Math.max(0, ...units.flatMap((u) => u.device.map((n) => weights.info(n).byteLength)));
    this.chunkBytes = Math.max(4096, Math.min(options.chunkBytes ?? 32 << 20, Math.ceil(largest / 4096) * 4096));
    this.slots = Array.from({ length: Math.max(1, options.chunks ?? 6) }, () => ({}));
    this.readsPerChunk = Math.max(1, options.readsPerChunk ?? 4);
    this.piecePlan = units.map((u) =>
      u.device.flatMap((name) => {
        const bytes = weights.info(name).byteLength;
        return Array.from({ length: Math.ceil(bytes / this.chunkBytes) }, (_, k) => ({ name, offset: k * this.chunkBytes, length: Math.min(this.chunkBytes, bytes - k * this.chunkBytes) }));
      }),
    );
    this.staged = units.map(() => deferred());
    this.pieces = this.piecePlan.map((p) => p.map(() => deferred()));
    this.reader = this.read().catch((e) => this.fail(e));
  }

  /** Bytes of pinned memory the ring holds now. */
  get pinnedBytes(): number {
    return this.slots.reduce((n, s) => n + (s.chunk?.bytes.byteLength ?? 0), 0);
  }

  /** The next unit, in the order given, once its host tensors are read. */
  async next(): Promise<StagedUnit> {
    if (this.stopped) throw new StoppedError("StreamingStaging: disposed");
    // Its pieces hold slots of the ring until copied: the reader would wait for them forever.
    if (this.uncopied !== undefined) throw new Error(`StreamingStaging: next() before unit ${this.uncopied}'s copyTo (every unit's copyTo must be called, in order)`);
    const index = this.nextUnit++;
    if (index >= this.units.length) throw new RangeError(`StreamingStaging: all ${this.units.length} units were taken`);
    this.uncopied = index;
    let host: Map<string, Uint8Array>;
    try {
      await this.copying; // the unit before has queued its copies (its slots go back to the reader)
      ({ host } = await this.staged[index].promise);
    } catch (e) {
      this.uncopied = undefined;
      throw e;
    }
    let called = false;
    return {
      host,
      copyTo: (dst, stream) => {
        if (called) throw new Error("StreamingStaging: copyTo called twice for one unit");
        called = true;
        this.uncopied = undefined;
        if (this.stopped) {
          // After disposal the chunks may be freed: nothing is copied from them.
          const refused = Promise.reject(new StoppedError("StreamingStaging: disposed"));
          refused.catch(() => {});
          return refused;
        }
        this.copying = this.copyUnit(index, dst, stream);
        return this.copying;
      },
    };
  }

  private async copyUnit(index: number, dst: (name: string) => Address, stream: CudaStream): Promise<void> {
    const plan = this.piecePlan[index];
    for (const [k, piece] of plan.entries()) {
      const { slot, read } = await this.pieces[index][k].promise;
      await read;
      slot.chunk!.copyToDevice(dst(piece.name) + piece.offset, 0, piece.length, stream);
      // Recorded before the old marker goes: a failed record leaves the slot its previous marker, live (disposal waits on it), never a disposed one.
      const done = this.device.record(stream);
      slot.done?.dispose();
      slot.done = done;
      slot.release?.();
    }
  }

  /** The reader: units in order, each one's host tensors, then its device tensors' pieces into free slots. */
  private async read(): Promise<void> {
    let turn = 0;
    for (const [index, unit] of this.units.entries()) {
      const host = new Map<string, Uint8Array>();
      await Promise.all(
        unit.host.map(async (name) => {
          host.set(name, await this.weights.read(name));
        }),
      );
      if (this.stopped) throw new StoppedError();
      this.staged[index].resolve({ host });
      for (const [k, piece] of this.piecePlan[index].entries()) {
        const slot = this.slots[turn++ % this.slots.length];
        await slot.queued; // the piece read into it before has its copy queued…
        if (this.stopped) throw new StoppedError();
        slot.done?.synchronize(); // …and done
        slot.chunk ??= this.device.allocChunk(this.chunkBytes);
        const queued = deferred<void>();
        slot.queued = queued.promise;
        slot.release = () => queued.resolve();
        const view = slot.chunk.bytes.subarray(0, piece.length);
        const read = this.weights.readInto(piece.name, view, this.readsPerChunk, { from: piece.offset });
        slot.reading = read.catch(() => {});
        this.pieces[index][k].resolve({ slot, read });
      }
    }
  }

  /** A read failed or the staging stopped: every unit and piece not yet handed out fails with `e`. */
  private fail(e: unknown): void {
    for (const d of this.staged) d.reject(e);
    for (const unit of this.pieces) for (const d of unit) d.reject(e);
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.disposing ??= this.shutdown();
    return this.disposing;
  }

  private async shutdown(): Promise<void> {
    this.stopped = true;
    for (const s of this.slots) s.release?.(); // wake the reader if it waits for a slot
    this.fail(new StoppedError("StreamingStaging: disposed"));
    await this.reader;
    await Promise.all(this.slots.map((s) => s.reading));
    await this.copying.catch(() => {});
    // Every slot is freed even when a wait fails (a device error): the first failure is thrown after.
    let failure: { error: unknown } | undefined;
    for (const s of this.slots) {
      try {
        s.done?.synchronize();
      } catch (e) {
        failure ??= { error: e };
      } finally {
        s.done?.dispose();
        s.done = undefined;
        s.chunk?.dispose();
        s.chunk = undefined;
      }
    }
    if (failure) throw failure.error;
  }
}
