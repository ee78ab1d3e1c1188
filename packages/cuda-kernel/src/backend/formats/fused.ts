import { FUSED_GROUP_ROWS, FUSED_TILE_BYTES, FUSED_TILE_K, FusedLayoutError, type FusedMatrix } from "@df11/codec";
import { call, native, type Address, type NativeFusedView } from "../../native.js";
import { DeviceBuffer } from "../../runtime/device-buffer.js";
import type { CudaStream } from "../../runtime/stream.js";
import type { DeviceMatrix, GemmCall, GemvCall, MatrixPart } from "./matrix.js";
import type { FusedLayoutReport } from "@df11/models";

const align = (n: number, to = 256) => Math.ceil(n / to) * to;

/** One of a fused matrix's two arrays: its own device buffer, or memory it only reads (a slot of CPU offload). */
interface Storage {
  readonly address: Address;
  readonly bytes: number;
  readonly buffer?: DeviceBuffer;
}
const owned = (buffer: DeviceBuffer): Storage => ({ address: buffer.address, bytes: buffer.byteLength, buffer });

/**
 * Where the BF16 rows being transcoded come from: `fill(rowBegin, rowEnd)` puts rows [rowBegin, rowEnd)
 * (at most `windowRows` of them; rowBegin a multiple of 8) somewhere on the device, ordered on the
 * transcoding stream, and returns the address of row rowBegin (row-major, cols each, 16-byte aligned).
 */
export interface RowSource {
  readonly windowRows: number;
  fill(rowBegin: number, rowEnd: number): Address;
}

/**
 * Device memory a transcode works in and its layout lands in (the loader's: temporaries reused from one
 * matrix to the next instead of allocated and freed — a free waits for the whole device — and layouts
 * packed one after another in a heap instead of cudaMalloc'd each, which rounds them up to 2 MiB pages).
 */
export interface TranscodeMemory {
  /** `bytes` of temporary memory, 256-byte aligned, valid until the next call (used in stream order only). */
  temporary(bytes: number): Address;
  /** `bytes` for one of a layout's two arrays, 256-byte aligned, kept as long as the caller keeps the matrix (not freed by it). */
  keep(bytes: number): Address;
}

export type { FusedLayoutReport };

/**
 * A matrix in the DF11 fused layout on the GPU (spec: @df11/codec `fused-layout.ts`), built on the GPU
 * by {@link FusedDeviceMatrix.transcode} from BF16 rows — decoded DF11 windows or uploaded BF16 — and
 * byte-identical to the reference encoder's output. The fused GEMV reads it directly (bit-identical to
 * the BF16 GEMV on the same weights); `decodeRows` unpacks windows for the tensor-core GEMM.
 */
export class FusedDeviceMatrix implements DeviceMatrix {
  readonly format = "fused";
  readonly groups: number;
  readonly tiles: number;
  /** Where the two arrays lie: data | tables | escape offsets, and positions | exponents. */
  private readonly main: Storage;
  private readonly escapeStore: Storage;
  private readonly layout: { tables: number; offsets: number; positions: number; exponents: number };
  private readonly view: NativeFusedView;

  private constructor(
    readonly rows: number,
    readonly cols: number,
    main: Storage,
    escapeStore: Storage,
    /** Escaped weights (exponent outside their row's table). */
    readonly escapes: number,
  ) {
    this.groups = Math.ceil(rows / FUSED_GROUP_ROWS);
    this.tiles = Math.ceil(cols / FUSED_TILE_K);
    this.main = main;
    this.escapeStore = escapeStore;
    this.layout = FusedDeviceMatrix.offsets(rows, cols, escapes);
    this.view = this.sliceView(0, rows);
  }

  /** Byte offsets of the arrays in the two buffers: data | tables | escape offsets, and positions | exponents. */
  private static offsets(rows: number, cols: number, escapes: number) {
    const groups = Math.ceil(rows / FUSED_GROUP_ROWS);
    const tiles = Math.ceil(cols / FUSED_TILE_K);
    const tables = align(groups * tiles * FUSED_TILE_BYTES);
    const offsets = tables + align(groups * FUSED_GROUP_ROWS * 8);
    return {
      tables,
      offsets,
      mainBytes: offsets + align((groups * tiles + 1) * 4),
      positions: 0,
      exponents: align(escapes * 2),
      escapeBytes: align(escapes * 2) + align(Math.max(escapes, 1)),
    };
  }

  /** Device bytes of a [rows, cols] matrix with `escapeRate` of its weights escaped (the loader's memory plan). */
  static plannedBytes(rows: number, cols: number, escapeRate = 0.03): number {
    const o = FusedDeviceMatrix.offsets(rows, cols, Math.ceil(rows * cols * escapeRate));
    return o.mainBytes + o.escapeBytes;
  }

  /** Rows per transcoding window of about `elements` weights: whole groups of 8, at least one. */
  static windowRows(elements: number, cols: number): number {
    return Math.max(FUSED_GROUP_ROWS, Math.floor(elements / cols / FUSED_GROUP_ROWS) * FUSED_GROUP_ROWS);
  }

  /** Whether a [rows, cols] matrix can be held in the fused layout (cols a multiple of 8, under 2^24). */
  static fits(cols: number): boolean {
    return cols >= 8 && cols % 8 === 0 && cols < 1 << 24;
  }

  /**
   * Build the layout of a [rows, cols] BF16 matrix on the GPU, window by window from `source` (windows
   * of whole groups of 8 rows): each row's table (its 8 most frequent exponents) and each tile's escape
   * count, a prefix sum of the counts (one host round trip, to size the escapes), then the tile blocks
   * and escapes. Throws FusedLayoutError (from @df11/codec) for shapes the layout cannot hold,
   * OutOfDeviceMemoryError when memory runs out.
   */
  static transcode(rows: number, cols: number, source: RowSource, stream: CudaStream, memory?: TranscodeMemory): FusedDeviceMatrix {
    if (!FusedDeviceMatrix.fits(cols) || rows < 1) throw new FusedLayoutError(`a fused matrix needs rows ≥ 1 and cols a multiple of 8 below 2^24, got [${rows}, ${cols}]`);
    if (source.windowRows < FUSED_GROUP_ROWS || source.windowRows % FUSED_GROUP_ROWS !== 0) throw new FusedLayoutError(`transcoding windows hold whole groups of ${FUSED_GROUP_ROWS} rows, got ${source.windowRows}`);
    const groups = Math.ceil(rows / FUSED_GROUP_ROWS);
    const tiles = Math.ceil(cols / FUSED_TILE_K);
    const n = groups * tiles + 1;
    const noEscapes = FusedDeviceMatrix.offsets(rows, cols, 0);
    const store = (bytes: number): Storage => (memory ? { address: memory.keep(bytes), bytes } : owned(DeviceBuffer.alloc(bytes)));
    const main = store(noEscapes.mainBytes);
    const owns: DeviceBuffer[] = main.buffer ? [main.buffer] : [];
    try {
      const tables = main.address + noEscapes.tables;
      const offsets = main.address + noEscapes.offsets;
      call(() => native().fillAddress(main.address, 0, main.bytes, stream.native)); // padded rows' tables and tiles stay zero
      const scanBytes = call(() => native().exclusiveScanBytes(n));
      const countBytes = align(n * 4);
      const own = memory ? undefined : DeviceBuffer.alloc(countBytes + Math.max(scanBytes, 16));
      if (own) owns.push(own);
      const counts = memory ? memory.temporary(countBytes + Math.max(scanBytes, 16)) : own!.address;
      const temp = counts + countBytes;
      call(() => native().fillAddress(counts, 0, n * 4, stream.native));
      const windowRows = source.windowRows;
      // A matrix of one window is decoded once for both passes.
      const single = rows <= windowRows ? source.fill(0, rows) : undefined;
      const windows = (fn: (rowBegin: number, rowEnd: number, at: Address) => void) => {
        for (let r0 = 0; r0 < rows; r0 += windowRows) {
          const r1 = Math.min(rows, r0 + windowRows);
          fn(r0, r1, single ?? source.fill(r0, r1));
        }
      };
      // Views for the kernels: before the scan only the tables and offsets are meaningful.
      const partial = new FusedDeviceMatrix(rows, cols, main, main, 0);
      windows((r0, r1, at) => {
        call(() => native().fusedTables(at, r0, r1 - r0, cols, tables, stream.native));
        call(() => native().fusedCounts(at, r0, r1 - r0, partial.view, counts, stream.native));
      });
      call(() => native().exclusiveScan(counts, offsets, n, temp, scanBytes, stream.native));
      // The escapes' total sizes their array: the one wait for the GPU per matrix.
      const total = new Uint32Array(1);
      call(() => native().downloadAddress(total, offsets + (n - 1) * 4, 4, stream.native));
      const escapes = total[0];
      const sized = FusedDeviceMatrix.offsets(rows, cols, escapes);
      const escapeStore = store(sized.escapeBytes);
      if (escapeStore.buffer) owns.push(escapeStore.buffer);
      const m = new FusedDeviceMatrix(rows, cols, main, escapeStore, escapes);
      windows((r0, r1, at) => call(() => native().fusedWrite(at, r0, r1 - r0, m.view, stream.native)));
      if (own) {
        stream.synchronize(); // before the temporaries are freed
        own.dispose();
      }
      return m;
    } catch (e) {
      for (const b of owns) if (!b.disposed) b.dispose();
      throw e;
    }
  }

  /**
   * The view of rows [rowBegin, rowEnd) the kernels take (rowBegin a multiple of 8; escape offsets stay
   * indices into the whole array).
   */
  private sliceView(rowBegin: number, rowEnd: number): NativeFusedView {
    const base = this.main.address;
    const group = rowBegin / FUSED_GROUP_ROWS;
    const rows = rowEnd - rowBegin;
    return {
      data: base + group * this.tiles * FUSED_TILE_BYTES,
      tables: base + this.layout.tables + rowBegin * 8,
      escapeOffsets: base + this.layout.offsets + group * this.tiles * 4,
      escapePositions: this.escapeStore.address + this.layout.positions,
      escapeExponents: this.escapeStore.address + this.layout.exponents,
      rows,
      cols: this.cols,
      groups: Math.ceil(rows / FUSED_GROUP_ROWS),
      tiles: this.tiles,
    };
  }

  get deviceBytes(): number {
    return this.main.bytes + this.escapeStore.bytes;
  }

  /** The two arrays (blocks | tables | escape offsets; escape positions | exponents). */
  get parts(): readonly MatrixPart[] {
    return [
      { address: this.main.address, bytes: this.main.bytes },
      { address: this.escapeStore.address, bytes: this.escapeStore.bytes },
    ];
  }

  /** The same layout read from copies of its two arrays at `addresses` (owning nothing). */
  relocate(addresses: readonly Address[]): FusedDeviceMatrix {
    if (addresses.length !== 2 || addresses.some((a) => a % 256 !== 0)) throw new FusedLayoutError("a fused matrix is relocated to two 256-byte-aligned addresses");
    return new FusedDeviceMatrix(this.rows, this.cols, { address: addresses[0], bytes: this.main.bytes }, { address: addresses[1], bytes: this.escapeStore.bytes }, this.escapes);
  }

  /** Whether the fused GEMV can multiply rows [rowBegin, rowEnd) alone (slices start on a group). */
  canGemv(rowBegin: number): boolean {
    return rowBegin % FUSED_GROUP_ROWS === 0;
  }

  gemv(c: GemvCall): void {
    const view = c.rowBegin === 0 && c.rowEnd === this.rows ? this.view : this.sliceView(c.rowBegin, c.rowEnd);
    call(() => native().fusedLinear(view, c.x, c.ldx, c.rows, c.bias, c.out, c.ldo, c.accumulate, c.stream.native, c.xBf16 ?? 0));
  }

  /** The Hopper GEMM decoding the fused tiles itself (slices start on a group); false where it does not run. */
  gemm(c: GemmCall): boolean {
    if (!this.canGemv(c.rowBegin)) return false;
    const view = c.rowBegin === 0 && c.rowEnd === this.rows ? this.view : this.sliceView(c.rowBegin, c.rowEnd);
    return call(() => native().fusedGemm(view, c.rows, c.bias, c.out, c.ldo, c.accumulate, c.xBf16, c.stream.native, c.workspace, c.workspaceBytes));
  }

  decodeRows(rowBegin: number, rowEnd: number, dst: Address, stream: CudaStream): Address {
    call(() => native().fusedUnpack(this.view, rowBegin, rowEnd, dst, this.cols, stream.native));
    return dst;
  }

  gatherRows(ids: Address, count: number, dst: Address, stream: CudaStream): void {
    call(() => native().fusedUnpackRows(this.view, ids, count, dst, stream.native));
  }

  /** The layout's arrays on the host (for tests against the reference encoder). Synchronous. */
  toHost(): FusedMatrix {
    const o = this.layout;
    if (!this.main.buffer || !this.escapeStore.buffer) throw new FusedLayoutError("toHost() reads a matrix that owns its memory (not a relocated view)");
    const main = this.main.buffer.download();
    const esc = this.escapeStore.buffer.download();
    const bytes = (buf: Uint8Array, at: number, length: number) => buf.slice(at, at + length);
    const n = this.groups * this.tiles + 1;
    return {
      rows: this.rows,
      cols: this.cols,
      groups: this.groups,
      tiles: this.tiles,
      data: bytes(main, 0, this.groups * this.tiles * FUSED_TILE_BYTES),
      tables: bytes(main, o.tables, this.groups * FUSED_GROUP_ROWS * 8),
      escapeOffsets: new Uint32Array(bytes(main, o.offsets, n * 4).buffer),
      escapePositions: new Uint16Array(bytes(esc, o.positions, this.escapes * 2).buffer),
      escapeExponents: bytes(esc, o.exponents, this.escapes),
    };
  }

  dispose(): void {
    this.main.buffer?.dispose();
    this.escapeStore.buffer?.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Sums the costs of fused matrices into one report. */
export function fusedLayoutReport(matrices: readonly FusedDeviceMatrix[]): FusedLayoutReport {
  let weights = 0;
  let escapes = 0;
  let bytes = 0;
  for (const m of matrices) {
    weights += m.rows * m.cols;
    escapes += m.escapes;
    bytes += m.deviceBytes;
  }
  return { matrices: matrices.length, weights, escapes, escapeRate: weights ? escapes / weights : 0, bytes, bitsPerWeight: weights ? (bytes * 8) / weights : 0, ratioToBf16: weights ? bytes / (weights * 2) : 0 };
}
