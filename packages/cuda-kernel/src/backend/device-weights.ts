import type { SafetensorsCollection } from "@df11/hub-loader";
import { checksumHex } from "@df11/codec";
import {
  ChecksumMismatchError,
  checkDecodedWeights,
  compressedModulesOf,
  expectedWeightShape,
  isModuleTensor,
  MODULE_HEADER_SUFFIXES,
  readDF11ModuleHeader,
  weightNamesOf,
  WeightLayoutError,
  type PatternDict,
  type RankShard,
  type RecordedChecksums,
  type WeightSlice,
} from "@df11/models";
import { DeviceChecksum, DeviceChecksumBatch } from "../integrity/device-checksum.js";
import { call, native, type Address } from "../native.js";
import { DeviceBuffer } from "../runtime/device-buffer.js";
import { DeviceModule } from "../runtime/device-module.js";
import { PinnedBuffer } from "../runtime/pinned-buffer.js";
import { CudaEvent, CudaStream } from "../runtime/stream.js";
import { DeviceHeap } from "../runtime/device-heap.js";
import { LayerOffload } from "./offload.js";
import { LoadMemory } from "./load-memory.js";
import { StreamingStaging, type StagingDevice, type StreamingStagingOptions } from "./staging.js";
import { copySliceRows, isWholeSlice, sliceOf, sliceVector, vectorSliceOf } from "./shard-copy.js";
import { Bf16DeviceMatrix } from "./formats/bf16.js";
import { FusedDeviceMatrix, fusedLayoutReport, type FusedLayoutReport, type RowSource } from "./formats/fused.js";
import { fusedMatrixStats, type FusedMatrixStats } from "./formats/fused-stats.js";
import { HuffmanDeviceMatrix } from "./formats/huffman.js";
import type { DeviceMatrix, WeightFormat } from "./formats/matrix.js";

/** Where a weight lives on the GPU: rows [firstRow, firstRow + rows) of a device matrix (q of a fused q|k|v, say). */
export interface MatrixSlice {
  readonly matrix: DeviceMatrix;
  readonly firstRow: number;
  readonly rows: number;
}

/** Loading progress: bytes of the checkpoint placed on the GPU so far. */
export type LoadProgress = (done: number, total: number) => void;

/** Which recorded checksums to check while loading. */
export interface LoadChecks {
  readonly recorded: RecordedChecksums;
  /** Stored tensors, summed on the GPU where they were uploaded (small ones on the host). */
  readonly stored: boolean;
  /** Each DF11 module's weights decoded once from what the GPU will run (Huffman stream, fused layout or BF16) and summed. */
  readonly weights: boolean;
}

/** What the checks at load covered and cost. */
export interface LoadCheckReport {
  storedTensors: number;
  storedMs: number;
  decodedModules: number;
  /** Decode + checksum time per module, in ms (GPU wall time, synchronised). */
  weightsMsPerModule: number[];
}

/**
 * Where a load's host time went, in ms (performance.now() around each phase; GPU work shows where the host
 * waits for it): waiting for the next DF11 module's small tensors (LUTs, positions, gaps) to be read,
 * parsing and checking them, uploading (allocating the module, then queueing the copies of its two large
 * tensors as their pieces are read through the pinned chunks: waits for the file show here), placing
 * matrices in the layout (decoding windows, transcoding to the fused layout: its escape count's round
 * trip waits for the GPU), the module's final synchronisation and release, and the plain (non-DF11) tensors.
 */
export interface LoadPhaseTimes {
  readWaitMs: number;
  parseMs: number;
  uploadMs: number;
  placeMs: number;
  releaseMs: number;
  plainMs: number;
}

export interface DeviceWeightsOptions {
  /** How matrices are held on the GPU (see {@link WeightFormat}); `huffman` needs a DF11 checkpoint. */
  readonly layout: WeightFormat;
  /** The model's config.json (matrix shapes of DF11 modules come from it). */
  readonly config: Record<string, unknown>;
  readonly onProgress?: LoadProgress;
  readonly checks?: LoadChecks;
  /** Elements per window when decoding modules at load (transcoding, checks). Default 16 Mi. */
  readonly windowElements?: number;
  /**
   * Tensor parallelism: hold only this rank's slice of each weight (see `tensorParallelPlan`). Each
   * matrix is decoded (DF11) or uploaded (BF16) window by window and its slice copied out, then kept as
   * BF16 or transcoded into the fused layout; the `huffman` layout cannot be sliced. A tied lm_head is
   * reachable as `lm_head.weight`: the rank's vocabulary rows of the (replicated) embedding table.
   */
  readonly shard?: RankShard;
  /**
   * Decoder layers to keep in pinned host memory (CPU offload; fused or bf16 layout): each is built on
   * the GPU as the others, copied out once complete and freed there; see {@link LayerOffload}.
   */
  readonly offloadLayers?: readonly number[];
  /** The pinned ring files stream through (chunk size, chunks; see StreamingStaging). */
  readonly staging?: StreamingStagingOptions;
}

const DEFAULT_WINDOW = 16 * 1024 * 1024;

/** Staging chunks in pinned host memory, copy completion marked by events. */
const PINNED_STAGING: StagingDevice = {
  allocChunk: (bytes) => PinnedBuffer.alloc(bytes),
  record: (stream) => {
    const e = new CudaEvent({ timing: false });
    try {
      e.record(stream);
    } catch (err) {
      e.dispose();
      throw err;
    }
    return e;
  },
};

/** Matrices of one layer in the order the official pattern_dicts compress them, so fused projections are adjacent. */
const LAYER_ORDER = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.gate_up_proj", "mlp.down_proj"];
/** Runs of matrices the forward pass multiplies by in one go (their outputs side by side): one device matrix each. */
const GROUPS = [
  ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
  ["mlp.gate_proj", "mlp.up_proj"],
];
const layerOf = (name: string) => /^(.*\.layers\.\d+)\./.exec(name)?.[1];
/** The decoder layer (as the forward pass numbers them) a weight belongs to. */
const decoderLayerOf = (name: string) => {
  const m = /^model\.layers\.(\d+)\./.exec(name);
  return m ? Number(m[1]) : undefined;
};
const orderKey = (name: string) => {
  const i = LAYER_ORDER.findIndex((m) => name.endsWith(`.${m}.weight`));
  return i < 0 ? LAYER_ORDER.length : i;
};
const align = (n: number, to: number) => Math.ceil(n / to) * to;

/** Bytes of a matrix's parts laid one after another, each 256-byte aligned; the offset of each part. */
function packParts(matrices: readonly DeviceMatrix[]): { bytes: number; offsets: number[][] } {
  let bytes = 0;
  const offsets = matrices.map((m) =>
    m.parts!.map((p) => {
      const at = bytes;
      bytes = align(at + p.bytes, 256);
      return at;
    }),
  );
  return { bytes, offsets };
}

/** An offloaded layer in pinned memory, before its slot is known: the matrices it holds and where their parts lie. */
interface PackedLayer {
  readonly layer: number;
  readonly host: PinnedBuffer;
  readonly bytes: number;
  readonly matrices: readonly DeviceMatrix[];
  readonly offsets: readonly (readonly number[])[];
}

/** A matrix to place: its weights' names (a group, in order), rows of each, and the common cols. */
interface Planned {
  readonly names: readonly string[];
  readonly rows: readonly number[];
  readonly cols: number;
}

/**
 * Split `names` (one layer's or one module's matrices, in storage order) into device matrices: the
 * q|k|v and gate|up runs of {@link GROUPS} become one matrix each when all are there, consecutive, and
 * of equal cols; everything else stands alone.
 */
function planMatrices(names: readonly string[], shapeOf: (name: string) => readonly number[] | undefined): Planned[] {
  const out: Planned[] = [];
  for (let i = 0; i < names.length; ) {
    const shape = shapeOf(names[i]);
    const group = GROUPS.find((g) => names[i].endsWith(`.${g[0]}.weight`));
    if (group && shape) {
      const prefix = names[i].slice(0, -`${group[0]}.weight`.length);
      const members = group.map((m) => `${prefix}${m}.weight`);
      const shapes = members.map(shapeOf);
      // Members packed back to back stay 16-byte aligned only when cols is a multiple of 8.
      if (shape[1] % 8 === 0 && members.every((m, j) => names[i + j] === m) && shapes.every((s) => s && s[1] === shape[1])) {
        out.push({ names: members, rows: shapes.map((s) => s![0]), cols: shape[1] });
        i += members.length;
        continue;
      }
    }
    out.push({ names: [names[i]], rows: [shape?.[0] ?? 0], cols: shape?.[1] ?? 0 });
    i++;
  }
  return out;
}

/**
 * A checkpoint's weights on the GPU, each matrix in the requested {@link WeightFormat}:
 * - DF11 modules stay as stored (`huffman`), are transcoded window by window into the fused layout
 *   (`fused`; the compressed module is freed once its matrices are built, so the model is never whole
 *   in BF16 on the GPU), or decoded to BF16 (`bf16`);
 * - BF16 matrices stay BF16 (`bf16`), or are uploaded group by group and transcoded (`fused`).
 * The q|k|v and gate|up runs of a layer become one matrix each; vectors (norms, biases) are float32 in
 * one buffer. Matrices the fused layout cannot hold (cols not a multiple of 8) stay in their stored format.
 */
export class DeviceWeights implements Disposable {
  private readonly matrices = new Map<string, MatrixSlice>();
  private readonly vectors = new Map<string, { address: Address; length: number }>();
  private readonly buffers: DeviceBuffer[] = [];
  private readonly modules: DeviceModule[] = [];
  private readonly owned: DeviceMatrix[] = [];
  private fused = new Map<string, Address>();
  /** Fused layouts packed back to back (no 2 MiB rounding per array); absent where the device has no virtual memory management. */
  private heap: DeviceHeap | undefined;
  /** Transcoding's temporaries and kept arrays while loading. */
  private loadMemory: LoadMemory | undefined;
  /** Offloaded layers: names not placed yet, device storage until packed, packed layers, then the streamer. */
  private readonly offloadPending = new Map<number, Set<string>>();
  private readonly offloadStorage = new Map<number, Array<DeviceMatrix | DeviceBuffer>>();
  private readonly packed: PackedLayer[] = [];
  /** The offloaded layers and their slots, when layers are offloaded. */
  offload: LayerOffload | undefined;
  residentBytes = 0;
  readonly checks: LoadCheckReport = { storedTensors: 0, storedMs: 0, decodedModules: 0, weightsMsPerModule: [] };
  readonly loadTimes: LoadPhaseTimes = { readWaitMs: 0, parseMs: 0, uploadMs: 0, placeMs: 0, releaseMs: 0, plainMs: 0 };

  private constructor(
    readonly kind: "bf16" | "df11",
    readonly layout: WeightFormat,
  ) {}

  /** Shape [rows, cols] of a matrix: the checkpoint's for stored tensors, the config's for DF11 module parts. */
  private static shapeOf(weights: SafetensorsCollection, config: Record<string, unknown>, name: string): readonly number[] | undefined {
    if (weights.has(name) && weights.info(name).shape.length === 2) return weights.info(name).shape;
    try {
      return expectedWeightShape(config, name);
    } catch {
      return undefined;
    }
  }

  /** Bytes the weights will take on the GPU in `layout` (the memory check before anything is allocated). */
  static plannedBytes(weights: SafetensorsCollection, patternDict: PatternDict | undefined, config: Record<string, unknown>, layout: WeightFormat, shard?: RankShard): number {
    return DeviceWeights.plannedLayout(weights, patternDict, config, layout, shard).total;
  }

  /**
   * {@link plannedBytes}, and the part of it each decoder layer's matrices take (what offloading a layer
   * moves to the host; `layers[l]`, 0 for layers without matrices of their own). A DF11 module's matrices
   * count for the layer of their names; parts kept Huffman-coded (unknown shapes) count as the rest.
   * With `shard` (tensor parallelism), each matrix counts as the rank's slice of it.
   */
  static plannedLayout(weights: SafetensorsCollection, patternDict: PatternDict | undefined, config: Record<string, unknown>, layout: WeightFormat, shard?: RankShard): { total: number; layers: number[] } {
    let bytes = 0;
    const layers: number[] = [];
    const addLayer = (name: string, n: number) => {
      const l = decoderLayerOf(name);
      if (l === undefined) return;
      while (layers.length <= l) layers.push(0);
      layers[l] += n;
    };
    const matrixBytes = (name: string, fullRows: number, fullCols: number, storedBytes: number) => {
      const [rows, cols] = shard ? sliceOf(shard, name, [fullRows, fullCols]).localShape : [fullRows, fullCols];
      return layout === "fused" && FusedDeviceMatrix.fits(cols) && rows > 0 ? FusedDeviceMatrix.plannedBytes(rows, cols) : layout === "bf16" ? align(rows * cols * 2, 256) : storedBytes;
    };
    for (const name of weights.names()) {
      if (isModuleTensor(name)) continue;
      const info = weights.info(name);
      // BF16 and F16 vectors (norms, biases) are held as float32; everything else as stored.
      if (info.shape.length === 1) bytes += align(info.byteLength * (info.dtype === "BF16" || info.dtype === "F16" ? 2 : 1), 256);
      else if (info.shape.length === 2 && info.dtype === "BF16") {
        const n = matrixBytes(name, info.shape[0], info.shape[1], align(info.byteLength, 256));
        bytes += n;
        addLayer(name, n);
      } else bytes += align(info.byteLength, 256);
    }
    if (patternDict) {
      for (const path of compressedModulesOf(weights.names())) {
        const stored = ["luts", "encoded_exponent", "sign_mantissa", "output_positions", "gaps"].reduce((n, s) => n + weights.info(`${path}.${s}`).byteLength, 0) + 24 * 1024;
        if (layout === "huffman") {
          bytes += stored;
          continue;
        }
        const elements = weights.info(`${path}.sign_mantissa`).byteLength;
        let known = 0;
        for (const name of weightNamesOf(patternDict, path)) {
          const s = DeviceWeights.shapeOf(weights, config, name);
          if (!s) continue;
          known += s[0] * s[1];
          const n = matrixBytes(name, s[0], s[1], 0);
          bytes += n;
          addLayer(name, n);
        }
        if (known !== elements) bytes += stored; // parts of unknown shape stay Huffman-coded
      }
    }
    return { total: bytes, layers };
  }

  /**
   * Upload a checkpoint (BF16, or DF11 with its pattern_dict) in `options.layout`. Throws
   * ChecksumMismatchError (a recorded checksum fails), WeightLayoutError (a tensor that cannot run),
   * OutOfDeviceMemoryError.
   */
  static async load(weights: SafetensorsCollection, patternDict: PatternDict | undefined, options: DeviceWeightsOptions): Promise<DeviceWeights> {
    if (!patternDict && options.layout === "huffman") throw new WeightLayoutError("weights", "the huffman layout keeps DF11 modules as stored; this checkpoint is BF16 (use fused or bf16)");
    if (options.shard && options.layout === "huffman") throw new WeightLayoutError("weights", "the huffman layout keeps DF11 modules whole; tensor parallelism holds a slice of each matrix per GPU (use fused or bf16)");
    if (options.offloadLayers?.length && options.layout === "huffman") throw new WeightLayoutError("weights", "offloading layers to the host needs the fused or bf16 layout, not huffman");
    const w = new DeviceWeights(patternDict ? "df11" : "bf16", options.layout);
    try {
      await w.upload(weights, patternDict, options);
      w.placeOffloaded();
      const asked = options.offloadLayers?.length ?? 0;
      const done = w.offload?.layers.length ?? 0;
      if (done !== asked) throw new WeightLayoutError("model.layers", `${asked} layers were to be offloaded, ${done} have matrices named model.layers.N.* that can move`);
      return w;
    } catch (e) {
      w.dispose();
      throw e;
    }
  }

  private async upload(weights: SafetensorsCollection, patternDict: PatternDict | undefined, options: DeviceWeightsOptions): Promise<void> {
    const { checks, config, layout, shard } = options;
    const windowElements = options.windowElements ?? DEFAULT_WINDOW;
    using stream = new CudaStream();
    using sum = checks && (checks.stored || checks.weights) ? new DeviceChecksum() : undefined;
    const shapeOf = (name: string) => DeviceWeights.shapeOf(weights, config, name);
    /** Compare a stored tensor's checksum (no record: nothing to check). */
    const expectStored = (name: string, actual: () => string) => {
      const expected = checks?.stored ? checks.recorded.stored.get(name) : undefined;
      if (expected === undefined) return;
      const started = performance.now();
      const got = actual();
      this.checks.storedMs += performance.now() - started;
      this.checks.storedTensors++;
      if (got !== expected) throw new ChecksumMismatchError(name, expected, got, "stored");
    };
    const offloaded = new Set(options.offloadLayers ?? []);
    if (offloaded.size > 0) {
      const matrixNames = [
        ...weights.names().filter((n) => !isModuleTensor(n) && weights.info(n).shape.length !== 1),
        ...(patternDict ? compressedModulesOf(weights.names()).flatMap((path) => weightNamesOf(patternDict, path)) : []),
      ];
      for (const n of matrixNames) {
        const l = decoderLayerOf(n);
        if (l === undefined || !offloaded.has(l)) continue;
        if (!this.offloadPending.has(l)) this.offloadPending.set(l, new Set());
        this.offloadPending.get(l)!.add(n);
      }
    }
    const total = weights.names().reduce((n, t) => n + weights.info(t).byteLength, 0);
    let done = 0;
    const progress = (bytes: number) => options.onProgress?.((done += bytes), total);
    if (layout === "fused" && DeviceHeap.supported()) {
      // Virtual address space only: physical memory is mapped as the layouts fill it.
      const planned = DeviceWeights.plannedLayout(weights, patternDict, config, layout, shard).total;
      try {
        this.heap = DeviceHeap.create(Math.ceil(planned * 1.1) + (256 << 20));
      } catch {
        this.heap = undefined; // reserving addresses failed (a driver without VMM in practice): cudaMalloc'd arrays, as before
      }
    }
    this.loadMemory = new LoadMemory(this.heap, (bytes) => {
      const b = DeviceBuffer.alloc(bytes);
      this.buffers.push(b); // counted in residentBytes through the matrix
      return b.address;
    });
    // One scratch window for decoding modules at load (transcoding, checks), freed at the end.
    let scratch: DeviceBuffer | undefined;
    const window = (elements: number) => {
      if (!scratch || scratch.byteLength < elements * 2 + 16) {
        scratch?.dispose();
        scratch = DeviceBuffer.alloc(elements * 2 + 16);
      }
      return scratch;
    };

    try {
      if (patternDict) {
        const paths = compressedModulesOf(weights.names());
        // Each module's small tensors are read to the host (checked there); its two large ones stream from
        // the file to the device through pinned chunks, read ahead of the GPU work (see StreamingStaging).
        const units = paths.map((path) => ({ host: MODULE_HEADER_SUFFIXES.map((s) => `${path}.${s}`), device: [`${path}.encoded_exponent`, `${path}.sign_mantissa`] }));
        await using staging = new StreamingStaging(weights, units, PINNED_STAGING, options.staging);
        using storedSums = checks?.stored ? new DeviceChecksumBatch(4, stream) : undefined;
        const times = this.loadTimes;
        let t = 0; // set at each module's start
        const lap = (phase: keyof LoadPhaseTimes) => {
          const now = performance.now();
          times[phase] += now - t;
          t = now;
        };
        for (const path of paths) {
          t = performance.now();
          const unit = await staging.next();
          lap("readWaitMs");
          const module = await readDF11ModuleHeader(weights, path, async (n) => unit.host.get(n)!);
          lap("parseMs");
          const names = weightNamesOf(patternDict, path);
          if (module.splitPositions.length !== names.length - 1) throw new WeightLayoutError(`${path}.split_positions`, `${module.splitPositions.length + 1} parts, the pattern_dict lists ${names.length}`);
          // output_positions and split_positions are not kept as stored on the device: small, summed here
          // from the bytes already read (not read from the file again).
          const checkStored = !!checks?.stored && checks.recorded.modules.has(path);
          const hostSums = checkStored ? (["output_positions", "split_positions"] as const).map((suffix) => [suffix, checksumHex(unit.host.get(`${path}.${suffix}`)!)] as const) : [];
          const gpu = DeviceModule.allocate(module);
          let keep = false;
          try {
            const bulk = gpu.bulk;
            await unit.copyTo((n) => (n.endsWith(".sign_mantissa") ? bulk.sign_mantissa : bulk.encoded_exponent), stream);
            lap("uploadMs");
            if (checkStored) {
              const onGpu = gpu.storedChecksums(storedSums);
              for (const [suffix, hex] of Object.entries(onGpu)) expectStored(`${path}.${suffix}`, () => hex);
              for (const [suffix, hex] of hostSums) expectStored(`${path}.${suffix}`, () => hex);
            }
            const bounds = [0, ...module.splitPositions, module.signMantissaBytes];
            const startOf = new Map(names.map((n, i) => [n, bounds[i]]));
            const elementsOf = (n: string) => bounds[names.indexOf(n) + 1] - bounds[names.indexOf(n)];
            // Pieces of this module, in module order: [device matrix, element offset in the module].
            const pieces: Array<{ matrix: DeviceMatrix; start: number }> = [];
            for (const plan of planMatrices(names, shapeOf)) {
              const start = startOf.get(plan.names[0])!;
              const rows = plan.rows.reduce((a, b) => a + b, 0);
              const elements = plan.names.reduce((n, name) => n + elementsOf(name), 0);
              const known = plan.cols > 0 && rows * plan.cols === elements;
              const slices = shard && known ? plan.names.map((n, i) => sliceOf(shard, n, [plan.rows[i], plan.cols])) : undefined;
              if (slices && !slices.every(isWholeSlice)) {
                // This rank's rows/columns of each member, decoded window by window and copied out.
                const stored = plan.names.map((n, i) => new HuffmanDeviceMatrix(gpu, startOf.get(n)!, plan.rows[i], plan.cols, n));
                const m = this.buildSliced(slices, layout, windowElements, stream, (i, r0, r1) => {
                  const buf = window(Math.min(plan.rows[i], r1 - r0) * plan.cols + 8);
                  return stored[i].decodeRows(r0, r1, buf.address, stream);
                });
                this.place({ names: plan.names, rows: slices.map((x) => x.localShape[0]), cols: slices[0].localShape[1] }, m, false);
                stored.forEach((matrix, i) => pieces.push({ matrix, start: startOf.get(plan.names[i])! }));
                continue;
              }
              if (!known) {
                if (shard) throw new WeightLayoutError(plan.names[0], "its shape is not known from config.json, so it cannot be split over GPUs");
                // A part whose shape the config does not give (or that contradicts it): kept as stored, one row.
                const m = new HuffmanDeviceMatrix(gpu, start, 1, elements, plan.names[0]);
                keep = true;
                this.place(plan.names.length === 1 ? plan : { names: plan.names, rows: plan.names.map(elementsOf), cols: 0 }, m, true);
                pieces.push({ matrix: m, start });
                continue;
              }
              // The matrix as stored (Huffman-coded): kept as it is, or decoded into the layout asked for.
              const stored = new HuffmanDeviceMatrix(gpu, start, rows, plan.cols, plan.names[0]);
              let m: DeviceMatrix;
              if (layout === "fused" && FusedDeviceMatrix.fits(plan.cols)) {
                const windowRows = FusedDeviceMatrix.windowRows(windowElements, plan.cols);
                const buf = window(Math.min(rows, windowRows) * plan.cols + 8);
                const source: RowSource = { windowRows, fill: (r0, r1) => stored.decodeRows(r0, r1, buf.address, stream) };
                m = this.own(FusedDeviceMatrix.transcode(rows, plan.cols, source, stream, this.memoryFor(plan.names[0])), plan.names[0]);
              } else if (layout === "bf16") {
                const buf = this.ownBuffer(DeviceBuffer.alloc(align(elements * 2, 256)), plan.names[0]);
                // The decoder writes from a multiple of 8 elements: a matrix starting elsewhere goes through the scratch.
                const target = start % 8 === 0 ? buf.address : window(elements + 8).address;
                const at = stored.decodeRows(0, rows, target, stream);
                if (at !== buf.address) call(() => native().copyAddress(buf.address, at, elements * 2, stream.native));
                m = new Bf16DeviceMatrix(buf.address, rows, plan.cols);
              } else {
                m = stored;
                keep = true;
              }
              this.place(plan, m, false);
              pieces.push({ matrix: m, start });
            }
            stream.synchronize();
            lap("placeMs");
            // Sliced matrices are checked from the module's own stream (pieces are the whole stored matrices).
            if (checks?.weights && checks.recorded.modules.has(path)) this.checkModuleWeights(path, pieces, checks.recorded, sum!, window, windowElements, stream);
            progress(module.luts.length + module.encodedExponentBytes + module.signMantissaBytes + module.gaps.length + module.outputPositions.byteLength);
          } finally {
            if (keep) {
              this.modules.push(gpu);
              this.residentBytes += gpu.deviceBytes;
            } else {
              stream.synchronize();
              gpu.dispose();
            }
          }
          this.packCompleteLayers(stream);
          lap("releaseMs");
        }
      }
      const plainStarted = performance.now();

      const plain = weights.names().filter((n) => !isModuleTensor(n));
      const isVector = (n: string) => weights.info(n).shape.length === 1;
      for (const name of plain) {
        const info = weights.info(name);
        const ok = info.dtype === "BF16" || (isVector(name) && (info.dtype === "F32" || info.dtype === "F16"));
        if (!ok) throw new WeightLayoutError(name, `dtype ${info.dtype}; df11 runs BF16 (or DF11) matrices (vectors may also be F32 or F16)`);
      }
      // Vectors: float32, one buffer.
      const vectorNames = plain.filter(isVector);
      const offsets = new Map<string, number>();
      let vectorBytes = 0;
      for (const n of vectorNames) {
        offsets.set(n, vectorBytes);
        vectorBytes = align(vectorBytes + weights.info(n).shape[0] * 4, 256);
      }
      if (vectorBytes > 0) {
        const buf = this.ownBuffer(DeviceBuffer.alloc(vectorBytes));
        for (const n of vectorNames) {
          if (checks?.stored && checks.recorded.stored.has(n)) {
            const raw = await weights.read(n);
            expectStored(n, () => checksumHex(raw));
          }
          const full = await weights.readFloat32(n);
          const values = shard ? sliceVector(full, vectorSliceOf(shard, n, full.length)) : full;
          if (values.length === 0) continue; // another rank's bias (added once, on rank 0)
          buf.upload(values, offsets.get(n)!);
          this.vectors.set(n, { address: buf.address + offsets.get(n)!, length: values.length });
          progress(weights.info(n).byteLength);
        }
      }
      // Matrices (and anything else of ≥ 2 dims), per layer (or alone), grouped as the forward pass multiplies them.
      const byLayer = new Map<string, string[]>();
      for (const n of plain.filter((n) => !isVector(n))) {
        const key = layerOf(n) ?? n;
        byLayer.set(key, [...(byLayer.get(key) ?? []), n]);
      }
      const layers = [...byLayer.values()].map((names) => {
        names.sort((a, b) => orderKey(a) - orderKey(b));
        return { names, plans: planMatrices(names, (n) => (weights.info(n).shape.length === 2 ? weights.info(n).shape : undefined)) };
      });
      // Each group streams from the file to the device through pinned chunks, read ahead (see StreamingStaging).
      await using staging = new StreamingStaging(
        weights,
        layers.flatMap((l) => l.plans.map((p) => ({ host: [], device: p.names }))),
        PINNED_STAGING,
        options.staging,
      );
      for (const { names, plans } of layers) {
        const groupBytes = (p: Planned) => p.names.reduce((s, n) => s + weights.info(n).byteLength, 0);
        const toFused = (p: Planned) => layout === "fused" && p.cols > 0 && FusedDeviceMatrix.fits(p.cols);
        // Tensor parallelism: this rank's slices of each group, where it holds less than the whole.
        const slicesOf = new Map<Planned, WeightSlice[]>();
        for (const p of shard ? plans.filter((p) => p.cols > 0) : []) {
          const slices = p.names.map((n, i) => sliceOf(shard!, n, [p.rows[i], p.cols]));
          if (!slices.every(isWholeSlice)) slicesOf.set(p, slices);
        }
        const sliced = (p: Planned) => slicesOf.has(p);
        // BF16 matrices of the layer share one buffer; each group is contiguous in it.
        const residentBytes = plans.filter((p) => !toFused(p) && !sliced(p)).reduce((s, p) => s + align(groupBytes(p), 256), 0);
        const layerBuffer = residentBytes > 0 ? this.ownBuffer(DeviceBuffer.alloc(residentBytes), names[0]) : undefined;
        // Stored tensors are summed on the device as they land, and checked together at the layer's end.
        const recorded = names.filter((n) => checks?.stored && checks.recorded.stored.has(n));
        using sums = recorded.length > 0 ? new DeviceChecksumBatch(recorded.length, stream) : undefined;
        let offset = 0;
        try {
          for (const p of plans) {
            // A fused or sliced group is staged (uploaded, checked) in a transient buffer, then transcoded or sliced.
            const fused = toFused(p) || sliced(p);
            using target = fused ? DeviceBuffer.alloc(groupBytes(p) + 16) : undefined;
            const base = fused ? target!.address : layerBuffer!.address + offset;
            const unit = await staging.next();
            const at = new Map<string, number>();
            let end = 0;
            for (const n of p.names) {
              at.set(n, end);
              end += weights.info(n).byteLength;
            }
            await unit.copyTo((n) => base + at.get(n)!, stream);
            for (const n of p.names) {
              if (recorded.includes(n)) sums!.add(recorded.indexOf(n), base + at.get(n)!, weights.info(n).byteLength);
              progress(weights.info(n).byteLength);
            }
            const rows = p.rows.reduce((a, b) => a + b, 0);
            let m: DeviceMatrix;
            if (sliced(p)) {
              const slices = slicesOf.get(p)!;
              const firstRowOf = p.rows.map((_, i) => p.rows.slice(0, i).reduce((a, b) => a + b, 0));
              m = this.buildSliced(slices, layout, windowElements, stream, (i, r0) => base + (firstRowOf[i] + r0) * p.cols * 2);
              stream.synchronize(); // the staging buffer is freed next
              this.place({ names: p.names, rows: slices.map((x) => x.localShape[0]), cols: slices[0].localShape[1] }, m, false);
              continue;
            }
            if (fused) {
              const windowRows = FusedDeviceMatrix.windowRows(windowElements, p.cols);
              m = this.own(FusedDeviceMatrix.transcode(rows, p.cols, { windowRows, fill: (r0) => base + r0 * p.cols * 2 }, stream, this.memoryFor(p.names[0])), p.names[0]);
              stream.synchronize(); // the staging buffer is freed next
            } else {
              const shape = weights.info(p.names[0]).shape;
              m = new Bf16DeviceMatrix(base, p.cols > 0 ? rows : shape[0], p.cols > 0 ? p.cols : shape.slice(1).reduce((a, b) => a * b, 1));
              offset += align(groupBytes(p), 256);
            }
            this.place(p.cols > 0 ? p : { names: p.names, rows: [m.rows], cols: m.cols }, m, false);
          }
        } finally {
          stream.synchronize(); // the layer's copies are done (its transient buffers go)
        }
        if (sums) {
          const started = performance.now();
          const got = sums.hex();
          this.checks.storedMs += performance.now() - started;
          recorded.forEach((n, i) => expectStored(n, () => got[i]));
        }
        this.packCompleteLayers(stream);
      }
      // A tied lm_head under tensor parallelism: this rank's vocabulary rows of the embedding table.
      if (shard && !this.matrices.has("lm_head.weight") && this.matrices.has("model.embed_tokens.weight")) {
        const e = this.matrices.get("model.embed_tokens.weight")!;
        const [v0, v1] = shard.vocab;
        this.matrices.set("lm_head.weight", { matrix: e.matrix, firstRow: e.firstRow + v0, rows: v1 - v0 });
      }
      this.loadTimes.plainMs += performance.now() - plainStarted;
      if (this.offloadPending.size > 0) throw new WeightLayoutError(`model.layers.${[...this.offloadPending.keys()][0]}`, "an offloaded layer's matrices were not all placed");
    } finally {
      stream.synchronize();
      scratch?.dispose();
      // The heap's memory beyond the arrays counted (alignment, the last granule's rest) is the weights' too.
      if (this.heap) this.residentBytes += this.heap.mappedBytes - this.loadMemory.keptBytes;
      this.loadMemory.dispose();
      this.loadMemory = undefined;
    }
  }

  /**
   * One device matrix of a rank's slices of a group's members (q|k|v, gate|up or one weight), stacked:
   * `fullRows(i, r0, r1)` puts member i's full rows [r0, r1) as BF16 on the device and returns where row
   * r0 lies; only windows that meet the slice are asked for. Kept as BF16, or transcoded to the fused
   * layout from a transient BF16 copy of the slice.
   */
  private buildSliced(slices: readonly WeightSlice[], layout: WeightFormat, windowElements: number, stream: CudaStream, fullRows: (member: number, r0: number, r1: number) => Address): DeviceMatrix {
    const cols = slices[0].localShape[1];
    const rows = slices.reduce((n, x) => n + x.localShape[0], 0);
    const fused = layout === "fused" && FusedDeviceMatrix.fits(cols);
    const bytes = align(rows * cols * 2, 256);
    const local = fused ? DeviceBuffer.alloc(bytes) : this.ownBuffer(DeviceBuffer.alloc(bytes), slices[0].name);
    try {
      let at = local.address;
      slices.forEach((slice, i) => {
        const [fullRowCount, fullCols] = slice.shape;
        const perWindow = Math.max(1, Math.floor(windowElements / fullCols));
        for (let r0 = 0; r0 < fullRowCount; r0 += perWindow) {
          const r1 = Math.min(fullRowCount, r0 + perWindow);
          if (!slice.rows.some(([a, b]) => a < r1 && b > r0)) continue;
          copySliceRows(slice, r0, r1, fullRows(i, r0, r1), at, stream);
          stream.synchronize(); // the window is reused for the next rows
        }
        at += slice.localShape[0] * cols * 2;
      });
      if (!fused) return new Bf16DeviceMatrix(local.address, rows, cols);
      const windowRows = FusedDeviceMatrix.windowRows(windowElements, cols);
      const m = this.own(FusedDeviceMatrix.transcode(rows, cols, { windowRows, fill: (r0) => local.address + r0 * cols * 2 }, stream, this.memoryFor(slices[0].name)), slices[0].name);
      stream.synchronize();
      return m;
    } finally {
      if (fused) local.dispose();
    }
  }

  /** Map each name of a planned matrix to its rows of `m`. */
  private place(plan: Planned, m: DeviceMatrix, rowsAsElements: boolean): void {
    let row = 0;
    plan.names.forEach((name, i) => {
      const rows = rowsAsElements ? m.rows : plan.rows[i];
      this.matrices.set(name, { matrix: m, firstRow: rowsAsElements ? 0 : row, rows });
      row += rows;
    });
  }

  /**
   * Decode a module's matrices back to BF16 from what the GPU will run (fused layout, BF16, or the
   * Huffman stream), window by window in module order, sum each window right after its decode, compare.
   */
  private checkModuleWeights(
    path: string,
    pieces: ReadonlyArray<{ matrix: DeviceMatrix; start: number }>,
    recorded: RecordedChecksums,
    sum: DeviceChecksum,
    window: (elements: number) => DeviceBuffer,
    windowElements: number,
    stream: CudaStream,
  ): void {
    const started = performance.now();
    sum.reset();
    for (const { matrix: m, start } of pieces) {
      const rowsPerWindow = Math.max(1, Math.floor(windowElements / m.cols));
      const buf = window(Math.min(m.rows, rowsPerWindow) * m.cols + 8);
      for (let r0 = 0; r0 < m.rows; r0 += rowsPerWindow) {
        const r1 = Math.min(m.rows, r0 + rowsPerWindow);
        const lo = start + r0 * m.cols;
        const elements = (r1 - r0) * m.cols;
        // Windows are summed where they lie: 16-byte aligned, starting on a 32-bit word of the module's stream.
        if (lo % 8 !== 0 || m.cols % 8 !== 0) throw new WeightLayoutError(path, `a matrix of ${m.cols} columns starts at element ${start} of its module; the GPU sums decoded weights from multiples of 8 only (load without --verify-weights, or check with df11 verify)`);
        const at = m.address !== undefined ? m.address + r0 * m.cols * 2 : m.decodeRows!(r0, r1, buf.address, stream);
        sum.add(at, elements * 2, lo / 2, stream);
      }
    }
    const actual = sum.hex();
    this.checks.weightsMsPerModule.push(performance.now() - started);
    this.checks.decodedModules++;
    checkDecodedWeights(path, recorded, actual);
  }

  /** Device storage of an offloaded layer (freed once the layer is packed), or undefined for a resident weight. */
  private offloadStorageOf(name: string | undefined): Array<DeviceMatrix | DeviceBuffer> | undefined {
    const l = name === undefined ? undefined : decoderLayerOf(name);
    if (l === undefined || !this.offloadPending.has(l)) return undefined;
    if (!this.offloadStorage.has(l)) this.offloadStorage.set(l, []);
    return this.offloadStorage.get(l);
  }

  /** Take ownership of a matrix built for the weight `name` (and the rest of its group). */
  /** Memory for transcoding the matrix holding weight `name`: the load's, unless its layer is offloaded (its device copy is freed once packed). */
  private memoryFor(name: string): LoadMemory | undefined {
    return this.offloadStorageOf(name) ? undefined : this.loadMemory;
  }

  private own<T extends DeviceMatrix>(m: T, name?: string): T {
    const offloaded = this.offloadStorageOf(name);
    if (offloaded) offloaded.push(m);
    else {
      this.owned.push(m);
      this.residentBytes += m.deviceBytes;
    }
    return m;
  }

  private ownBuffer(b: DeviceBuffer, name?: string): DeviceBuffer {
    const offloaded = this.offloadStorageOf(name);
    if (offloaded) offloaded.push(b);
    else {
      this.buffers.push(b);
      this.residentBytes += b.byteLength;
    }
    return b;
  }

  /**
   * Offloaded layers whose matrices are all built (and checked): each one's matrix parts are copied,
   * packed as they will lie in a slot, into one pinned host buffer, and the device copies freed.
   * Matrices kept as stored (Huffman-coded parts of unknown shape) cannot move and stay resident.
   */
  private packCompleteLayers(stream: CudaStream): void {
    for (const [layer, names] of this.offloadPending) {
      for (const n of [...names]) if (this.matrices.has(n)) names.delete(n);
      if (names.size > 0) continue;
      this.offloadPending.delete(layer);
      const prefix = `model.layers.${layer}.`;
      const matrices = [...new Set([...this.matrices].filter(([n, s]) => n.startsWith(prefix) && s.matrix.parts && s.matrix.relocate).map(([, s]) => s.matrix))];
      const { bytes, offsets } = packParts(matrices);
      const host = PinnedBuffer.alloc(Math.max(bytes, 16));
      try {
        matrices.forEach((m, i) => m.parts!.forEach((p, j) => host.copyFromDevice(offsets[i][j], p.address, p.bytes, stream)));
        stream.synchronize();
      } catch (e) {
        host.dispose();
        throw e;
      }
      this.packed.push({ layer, host, bytes, matrices, offsets });
      for (const x of this.offloadStorage.get(layer) ?? []) x.dispose();
      this.offloadStorage.delete(layer);
    }
  }

  /** Slots for the packed layers, and every offloaded matrix re-pointed at its slot (fixed addresses). */
  private placeOffloaded(): void {
    if (this.packed.length === 0) return;
    const packed = [...this.packed].sort((a, b) => a.layer - b.layer);
    const slots = LayerOffload.allocateSlots(packed);
    try {
      this.offload = new LayerOffload(packed.map(({ layer, host, bytes }) => ({ layer, host, bytes })), slots);
    } catch (e) {
      for (const slot of slots) slot.dispose();
      throw e;
    }
    this.packed.length = 0; // the streamer owns the pinned memory now
    packed.forEach((p, index) => {
      const base = this.offload!.slotAddress(index);
      p.matrices.forEach((m, i) => {
        const moved = m.relocate!(p.offsets[i].map((o) => base + o));
        for (const [name, s] of this.matrices) if (s.matrix === m) this.matrices.set(name, { ...s, matrix: moved });
      });
    });
    this.residentBytes += this.offload.report.slotBytes;
  }

  has(name: string): boolean {
    return this.matrices.has(name) || this.vectors.has(name);
  }

  /** Where a matrix lives. Throws WeightLayoutError when it is missing or a vector. */
  matrix(name: string): MatrixSlice {
    const m = this.matrices.get(name);
    if (!m) throw new WeightLayoutError(name, this.vectors.has(name) ? "is a vector, a matrix was expected" : "missing from the checkpoint");
    return m;
  }

  /** A float32 vector's address, checked against the length the config needs. */
  vector(name: string, length: number): Address {
    const v = this.vectors.get(name);
    if (!v) throw new WeightLayoutError(name, "missing from the checkpoint");
    if (v.length !== length) throw new WeightLayoutError(name, `has ${v.length} elements, the config needs ${length}`);
    return v.address;
  }

  /** Several biases side by side (for fused projections), built once. */
  fusedVector(names: readonly string[], lengths: readonly number[]): Address {
    if (names.length === 1) return this.vector(names[0], lengths[0]);
    const key = names.join("|");
    const known = this.fused.get(key);
    if (known !== undefined) return known;
    const total = lengths.reduce((a, b) => a + b, 0);
    const buf = this.ownBuffer(DeviceBuffer.alloc(total * 4));
    let offset = 0;
    names.forEach((n, i) => {
      const src = this.vector(n, lengths[i]);
      call(() => native().copyAddress(buf.address + offset * 4, src, lengths[i] * 4));
      offset += lengths[i];
    });
    call(() => native().synchronize()); // the copies ran on the default stream; compute runs on another
    this.fused.set(key, buf.address);
    return buf.address;
  }

  /** Sizes and escape rates of the matrices held in the fused layout (undefined when there are none). */
  get fusedReport(): FusedLayoutReport | undefined {
    const fused = [...new Set([...this.matrices.values()].map((s) => s.matrix))].filter((m): m is FusedDeviceMatrix => m instanceof FusedDeviceMatrix);
    return fused.length ? fusedLayoutReport(fused) : undefined;
  }

  /**
   * Per fused matrix, for benchmark reports: its weights' names (one, or the members of a fused
   * projection such as q|k|v), shape, escapes, device bytes, bits per weight and escape rate.
   */
  fusedMatrices(): FusedMatrixStats[] {
    return fusedMatrixStats(this.matrices, (m): m is FusedDeviceMatrix => m instanceof FusedDeviceMatrix);
  }

  dispose(): void {
    this.offload?.dispose();
    this.offload = undefined;
    for (const p of this.packed) p.host.dispose();
    this.packed.length = 0;
    for (const storage of this.offloadStorage.values()) for (const x of storage) x.dispose();
    this.offloadStorage.clear();
    this.offloadPending.clear();
    for (const m of this.owned) m.dispose();
    for (const b of this.buffers) b.dispose();
    for (const m of this.modules) m.dispose();
    this.loadMemory?.dispose();
    this.heap?.dispose(); // after the matrices whose arrays lie in it
    this.heap = undefined;
    this.owned.length = 0;
    this.buffers.length = 0;
    this.modules.length = 0;
    this.matrices.clear();
    this.vectors.clear();
    this.fused.clear();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
