import type { CudaStream } from "../runtime/stream.js";
import { call, type Address } from "../native.js";
import { DisposedError } from "../errors.js";
import { ncclCall, parallelAddon, type NativeNcclClique } from "./nccl-addon.js";
import { loadNccl, type NcclLibrary, type NcclSearchOptions } from "./nccl-loader.js";

/** Element types the collectives take. */
export type NcclDataType = "float32" | "bfloat16" | "int32";
/** Reductions of {@link NcclClique.allReduce}. */
export type NcclReduceOp = "sum" | "max";

/** Bytes per element of each {@link NcclDataType}. */
export const NCCL_DTYPE_BYTES: Readonly<Record<NcclDataType, number>> = { float32: 4, bfloat16: 2, int32: 4 };

/** One rank's memory in a collective (rank i of a clique is its `devices[i]`). */
export interface RankBuffer {
  /** The GPU the memory lies on: must be the clique's device for this rank. */
  readonly device: number;
  /** Device address of the result (and of the input when `source` is not given: in place). */
  readonly address: Address;
  /**
   * Elements: of the whole buffer for allReduce and broadcast; of each rank's contribution for
   * allGather (the result then holds `size × count`). The same on every rank.
   */
  readonly count: number;
  /** Device address of the input, when it is not `address` (out of place). */
  readonly source?: Address;
}

const sources = (buffers: readonly RankBuffer[]) => buffers.map((b) => b.source ?? b.address);
const results = (buffers: readonly RankBuffer[]) => buffers.map((b) => b.address);
const nativeStreams = (streams: readonly (CudaStream | undefined)[]) => streams.map((s) => s?.native);

/**
 * One NCCL communicator per GPU of this process (`ncclCommInitAll`, single process, one thread), and
 * the collectives for all of them at once: each call issues one NCCL call per rank inside
 * ncclGroupStart/End. Work is queued on the given streams (one per rank, on that rank's device; undefined
 * = the device's default stream) and the call returns at once. When those streams are capturing a CUDA
 * graph, the collectives are recorded into it (NCCL ≥ 2.9), so decode steps with all-reduces stay graphs:
 * record **one graph spanning every device** — begin capturing on rank 0's stream, record an event there
 * and make the other ranks' streams wait for it (they join the capture), queue the work, then have rank
 * 0's stream wait for an event recorded on each other stream, and end the capture. (One graph per device
 * fails to instantiate for collectives over several devices: cudaErrorStreamCaptureUnsupported.)
 *
 * NVLink multicast (NVLS) stays off: {@link NcclClique.create} sets `NCCL_NVLS_ENABLE=0` unless the
 * environment already sets it. NVLS allocates multicast objects through the fabric manager; on the shared
 * GPU hosts df11 is measured on it is disabled because a failing multicast setup can take every GPU of the
 * host out of service, and for the all-reduces of tensor-parallel inference (a few KiB to a few MiB) ring
 * and tree algorithms over NVLink lose little. df11 never calls cuMulticast* itself.
 *
 * @example
 * ```ts
 * using clique = NcclClique.create([0, 1]);
 * const bufs = [0, 1].map((d) => withDevice(d, () => DeviceBuffer.alloc(n * 4)));
 * const streams = [0, 1].map((d) => withDevice(d, () => new CudaStream()));
 * clique.allReduce(bufs.map((b, i) => ({ device: i, address: b.address, count: n })), "float32", "sum", streams);
 * streams.forEach((s) => s.synchronize());
 * ```
 */
export class NcclClique implements Disposable {
  private handle: NativeNcclClique | undefined;

  private constructor(
    handle: NativeNcclClique,
    /** Device of each rank: rank i runs on devices[i]. */
    readonly devices: readonly number[],
    /** The NCCL library in use. */
    readonly library: NcclLibrary,
  ) {
    this.handle = handle;
  }

  /**
   * A communicator on each of `devices` (distinct indices; rank i on devices[i]). Loads NCCL first
   * (see {@link loadNccl}). Throws NcclUnavailableError without NCCL, NcclError when NCCL fails, RangeError
   * for bad device lists, CudaUnavailableError without the addon.
   */
  static create(devices: readonly number[], options: NcclSearchOptions = {}): NcclClique {
    if (devices.length === 0) throw new RangeError("NcclClique.create: devices is empty");
    if (new Set(devices).size !== devices.length) throw new RangeError(`NcclClique.create: devices ${JSON.stringify(devices)} lists a device twice`);
    const addon = parallelAddon();
    const count = call(() => addon.deviceCount());
    const bad = devices.find((d) => !Number.isInteger(d) || d < 0 || d >= count);
    if (bad !== undefined) throw new RangeError(`NcclClique.create: device ${bad} does not exist (this machine has ${count} CUDA device${count === 1 ? "" : "s"})`);
    const library = loadNccl(options);
    process.env.NCCL_NVLS_ENABLE ??= "0";
    const handle = ncclCall(() => call(() => new addon.NcclClique([...devices])));
    return new NcclClique(handle, [...devices], library);
  }

  /** Ranks (GPUs) in the clique. */
  get size(): number {
    return this.devices.length;
  }

  /** The NCCL version in use, e.g. "2.27.3". */
  get version(): string {
    return this.library.version;
  }

  private get native(): NativeNcclClique {
    if (!this.handle) throw new DisposedError("NcclClique");
    return this.handle;
  }

  /** Check one buffer per rank on the rank's device with one count; returns the count. */
  private check(what: string, buffers: readonly RankBuffer[], streams: readonly (CudaStream | undefined)[]): number {
    if (buffers.length !== this.size) throw new RangeError(`${what}: ${buffers.length} buffers for ${this.size} ranks`);
    if (streams.length !== this.size) throw new RangeError(`${what}: ${streams.length} streams for ${this.size} ranks (one per rank; undefined for the default stream)`);
    const count = buffers[0].count;
    buffers.forEach((b, i) => {
      if (b.device !== this.devices[i]) throw new RangeError(`${what}: buffers[${i}].device is ${b.device}, but rank ${i} of this clique is device ${this.devices[i]}`);
      if (!Number.isSafeInteger(b.count) || b.count < 0) throw new RangeError(`${what}: buffers[${i}].count ${b.count} is not an element count`);
      if (b.count !== count) throw new RangeError(`${what}: buffers[${i}].count is ${b.count} but buffers[0].count is ${count}; every rank passes the same count`);
      if (!b.address || (b.source !== undefined && !b.source)) throw new RangeError(`${what}: buffers[${i}] has a null device address`);
    });
    return count;
  }

  /**
   * Element-wise reduction over the ranks: afterwards every rank's `address` holds `op` of all ranks'
   * inputs (`count` elements of `dtype`). Sums of float32 are exact where the values are integers
   * below 2^24; otherwise NCCL's order of additions decides the rounding.
   */
  allReduce(buffers: readonly RankBuffer[], dtype: NcclDataType, op: NcclReduceOp, streams: readonly (CudaStream | undefined)[]): void {
    const count = this.check("allReduce", buffers, streams);
    ncclCall(() => this.native.allReduce(sources(buffers), results(buffers), count, dtype, op, nativeStreams(streams)));
  }

  /**
   * Concatenation over the ranks: afterwards every rank's `address` holds rank 0's `count` elements,
   * then rank 1's, and so on (`size × count` elements). In place by default: rank r's input is already at
   * element `r × count` of its own result buffer.
   */
  allGather(buffers: readonly RankBuffer[], dtype: NcclDataType, streams: readonly (CudaStream | undefined)[]): void {
    const count = this.check("allGather", buffers, streams);
    const bytes = NCCL_DTYPE_BYTES[dtype];
    const inPlace = buffers.map((b, r) => b.source ?? b.address + r * count * bytes);
    ncclCall(() => this.native.allGather(inPlace, results(buffers), count, dtype, nativeStreams(streams)));
  }

  /** Copy rank `root`'s `count` elements to every rank's `address`. */
  broadcast(buffers: readonly RankBuffer[], dtype: NcclDataType, root: number, streams: readonly (CudaStream | undefined)[]): void {
    const count = this.check("broadcast", buffers, streams);
    if (!Number.isInteger(root) || root < 0 || root >= this.size) throw new RangeError(`broadcast: root ${root} is not a rank (0…${this.size - 1})`);
    ncclCall(() => this.native.broadcast(sources(buffers), results(buffers), count, dtype, root, nativeStreams(streams)));
  }

  get disposed(): boolean {
    return !this.handle;
  }

  /**
   * Destroy the communicators, after the work queued on them. Dispose every CUDA graph that recorded
   * collectives of this clique first: NCCL's destroy waits until those graphs are gone. Garbage collection
   * never destroys a clique (it could reach the graphs later and block), so call this (or `using`).
   */
  dispose(): void {
    this.handle?.destroy();
    this.handle = undefined;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
