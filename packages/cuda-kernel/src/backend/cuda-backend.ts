import { readModelConfig, SafetensorsCollection } from "@df11/hub-loader";
import {
  checkGpuOptions,
  ConfigError,
  OptionError,
  dfloat11ConfigOf,
  languageModelOf,
  parseTextModelConfig,
  readRecordedChecksums,
  ropeTable,
  TP_HUFFMAN,
  WeightLayoutError,
  type Backend,
  type BackendTensor,
  type LinearWeight,
  type PendingArgmax,
  type StepPlan,
  type StepRows,
  type BackendMemory,
  type RankShard,
  type OffloadReport,
  type TextModelConfig,
  type WeightsInfo,
} from "@df11/models";
import { OutOfDeviceMemoryError } from "../errors.js";
import { call, native, type Address, type NativeAttention } from "../native.js";
import { DeviceBuffer } from "../runtime/device-buffer.js";
import { allocationStats, cudaRuntimeVersion, currentDevice, deviceCount, devices, memoryInfo, programmaticLaunch, setDevice } from "../runtime/device.js";
import { CudaEvent, CudaGraph, CudaStream } from "../runtime/stream.js";
import { DeviceWeights, type LoadCheckReport, type LoadPhaseTimes, type LoadProgress, type MatrixSlice } from "./device-weights.js";
import { choosePlacement, PlacementShortfall, type LayoutNeeds, type OffloadPlan, type Placement } from "./offload-plan.js";
import type { WeightFormat } from "./formats/matrix.js";
import { OpProfile } from "./op-profile.js";
import { StepIo } from "./step-io.js";

/** An activation tensor on the GPU: [rows, cols] float32 at `address`. */
export interface CudaTensor extends BackendTensor {
  readonly address: Address;
}

export interface CudaBackendOptions {
  /** Positions each sequence may hold (KV cache size). Default: min(max_position_embeddings, {@link DEFAULT_MAX_CONTEXT}). */
  readonly maxContext?: number;
  /** Sequences decoded together (KV-cache slots). Default 1. */
  readonly slots?: number;
  /** Most rows per step; longer prompts are split. Default {@link DEFAULT_MAX_ROWS}. */
  readonly maxRows?: number;
  /**
   * How the GPU holds the weights (see {@link GpuWeightsLayout}). Default `auto`: the fused layout (BF16
   * for tiny models, where its padding makes it larger), or — for a DF11 model it would not fit — the
   * Huffman-coded modules as stored.
   */
  readonly gpuWeights?: GpuWeightsLayout;
  /**
   * Elements decoded per window before a tensor-core product, when weights are not resident as BF16
   * (Huffman modules; fused-layout matrices in prefill and large batches). Two windows are in flight (one
   * decoding while the other is multiplied), so the scratch is twice this; a window never exceeds the
   * model's largest matrix. Default {@link DEFAULT_DECODE_CHUNK}.
   */
  readonly decodeChunkElements?: number;
  /**
   * Steps of at least this many rows use the tiled GEMM (prefill: weights unpacked to BF16 windows when
   * they are not BF16); fewer (at most 64) use the GEMV, which reads each weight once from its layout
   * (the fused layout decoded in registers) and whose per-row arithmetic does not depend on the batch,
   * so batched sequences get exactly their solo logits. Both run on the tensor cores with x in BF16.
   * Default {@link DEFAULT_GEMM_MIN_ROWS}.
   */
  readonly gemmMinRows?: number;
  /**
   * Bytes of device memory df11 may allocate on its GPU: weights, KV cache and working memory (not the
   * CUDA context). Default: none (what is free). When the weights do not fit (in the layout chosen; `auto`
   * first tries its layouts resident), the last decoder layers' matrices stay in pinned host memory (CPU
   * offload, fused or bf16 layout) and are copied into two device slots just ahead of use, overlapped with
   * the compute: as few layers as fit the budget. Outputs are bit-identical; each step copies those
   * layers over PCIe, so decoding is bound by the copies.
   */
  readonly maxGpuMemory?: number;
  /** Testing: offload exactly this many of the last layers (whatever the budget). */
  readonly offloadLayers?: number;
  /** CUDA device index. Default: the current device (see `currentDevice`, `withDevice`; 0 unless changed). */
  readonly device?: number;
  readonly onProgress?: LoadProgress;
  /** Check the stored tensors against the checksums the files record, on the GPU where they were uploaded (default true). */
  readonly checkStored?: boolean;
  /** Also decode every DF11 module once at load, summing each window right after its decode, and check its weights' recorded checksum. */
  readonly verifyWeights?: boolean;
  /**
   * Time every op on the GPU (a synchronisation after each; no graph replay): see {@link CudaBackend.profile}.
   * For finding where the time goes, not for speed.
   */
  readonly profile?: boolean;
  /**
   * Tensor parallelism (used by {@link TensorParallelBackend}): this GPU holds one rank's slice of each
   * weight and runs the forward pass with the rank's shapes (`shard.config`). Not for direct use: the
   * row-parallel outputs need the all-reduces the tensor-parallel backend adds.
   */
  readonly shard?: RankShard;
  /** Testing only: break a kernel's input on purpose, to show the accuracy checks catch it. */
  readonly fault?: "rope-direction" | "attention-unscaled";
}

/**
 * How the GPU holds the weights: `fused` — the DF11 fused layout (@df11/codec), ~71 % of BF16, decoded
 * inside the matrix kernels (the GEMV reads it directly; bit-identical to BF16); `huffman` — DF11
 * modules as stored (~68 %), decoded window by window before each product; `bf16` — plain BF16 (a DF11
 * model is decoded once at load); `auto` — fused (bf16 for tiny models, where its padding costs more), or huffman when that would not fit.
 */
export type GpuWeightsLayout = "auto" | WeightFormat;

// Why tensor parallelism refuses the huffman layout: @df11/models' checkGpuOptions says it before any
// device is looked for; the backends say it again when loaded directly.
export { TP_HUFFMAN };

/** Throw OptionError naming `option` (and `--devices`) when `index` is not a CUDA device of this machine. */
export function requireGpu(index: number, option: "device" | "devices"): void {
  const count = deviceCount();
  if (Number.isSafeInteger(index) && index >= 0 && index < count) return;
  throw new OptionError(option, `GPU ${index} does not exist (this machine has ${count === 1 ? "one CUDA device: 0" : `${count} CUDA devices: 0…${count - 1}`})`, "--devices");
}

/** Default elements per decode window (Huffman modules, fused windows for the GEMM): 64 Mi (two windows: 256 MB). */
export const DEFAULT_DECODE_CHUNK = 64 * 1024 * 1024;
/** Default of {@link CudaBackendOptions.gemmMinRows}: every step the GEMV takes (up to 64 rows) stays there. */
export const DEFAULT_GEMM_MIN_ROWS = 65;
/** Default of {@link CudaBackendOptions.maxRows}. */
export const DEFAULT_MAX_ROWS = 512;
/** Default cap of {@link CudaBackendOptions.maxContext} (the model's max_position_embeddings when lower). */
export const DEFAULT_MAX_CONTEXT = 4096;

/** The memory plan of a load (see {@link CudaBackend.planMemory}), in bytes of device memory. */
export interface CudaMemoryPlan {
  readonly layout: WeightFormat;
  readonly maxContext: number;
  readonly slots: number;
  /** Everything: resident weights (and offload slots), KV cache, working memory. */
  readonly deviceBytes: number;
  /** All weights in the layout (offloaded ones included). */
  readonly weightBytes: number;
  readonly kvBytes: number;
  readonly workingBytes: number;
  /** Layers offloaded to pinned host memory, or null. */
  readonly offload: OffloadPlan | null;
}

/** What the backend runs with, read back from it (benchmarks record this, never their own defaults). */
export interface CudaEngineConfig {
  readonly device: { readonly index: number; readonly name: string; readonly computeCapability: string };
  readonly cudaRuntime: number;
  /** Whether kernels are launched as programmatic dependent launches (Hopper; DF11_PDL=0 turns it off). */
  readonly programmaticLaunch: boolean;
  readonly weights: "bf16" | "df11";
  readonly layout: WeightFormat;
  /** Elements per decode window in use: the option, capped at the largest matrix. */
  readonly decodeChunkElements: number;
  readonly gemvMaxRows: number;
  readonly gemmMinRows: number;
  readonly maxRows: number;
  readonly slots: number;
  readonly maxContext: number;
  /** The device-memory budget loaded with (`maxGpuMemory`), or null. */
  readonly maxGpuMemory: number | null;
  /** CPU offload in use: offloaded layers, pinned host bytes, slot bytes (null when every weight is on the GPU). */
  readonly offload: OffloadReport | null;
}

const GEMV_MAX_ROWS = 64; // csrc/kernels/inference.h kGemvMaxRows
/**
 * Steps of up to this many rows (every step the GEMV takes) split each row's attention over several warps
 * (decoding), the split count depending on the context length only: a sequence's attention sums in the
 * same order in any batch.
 */
const ATTENTION_SPLIT_ROWS = GEMV_MAX_ROWS;
/**
 * Steps of more than {@link ATTENTION_SPLIT_ROWS} rows that are all one sequence at consecutive positions (a
 * prompt chunk of CausalLM.extend) run the tensor-core prefill attention (FlashAttention-2 style, Q and P in
 * BF16) for the head sizes it takes; other steps the warp-per-row kernel. DF11_PREFILL_ATTENTION=warp keeps
 * every step on the warp-per-row kernel (read once, at load).
 */
const PREFILL_ATTENTION = process.env.DF11_PREFILL_ATTENTION !== "warp";
/** Head sizes the prefill attention kernel takes (csrc/kernels/attention-prefill.cu). */
const PREFILL_HEAD_DIMS = new Set([16, 32, 64, 80, 96, 128, 256]);

/** The step's slot and first position when every row is that slot's, at consecutive positions; else null. */
function oneSequenceSpan(step: StepPlan): { slot: number; firstPosition: number } | null {
  const n = step.positions.length;
  if (n === 0 || step.slots.length !== n) return null;
  const slot = step.slots[0];
  const firstPosition = step.positions[0];
  for (let i = 1; i < n; i++) if (step.slots[i] !== slot || step.positions[i] !== firstPosition + i) return null;
  return { slot, firstPosition };
}

/** Above this many rows the GEMV reads x from its BF16 copy (see linear). */
const GEMV_XB_ROWS = 8;
const SPLIT_K_BYTES = 32 * 1024 * 1024;
const MAX_SPLITS = 64;
const F32 = 4;

/** The BF16 copy of a step's x for the GEMM: [maxRows, K]. */
function xBf16Bytes(c: TextModelConfig, maxRows: number): number {
  return maxRows * Math.max(c.hiddenSize, c.intermediateSize, c.numHeads * c.headDim) * 2;
}

/**
 * `auto`'s layouts, in order of preference (the first that fits is used): the fused layout when it is
 * smaller than BF16 (every real model: it pads rows to groups of 8 and columns to tiles of 256, which
 * only tiny test models notice), else BF16; for a DF11 checkpoint the Huffman modules as stored last.
 */
function autoCandidates(df11: boolean, fusedSmaller: boolean): WeightFormat[] {
  const first: WeightFormat = fusedSmaller ? "fused" : "bf16";
  return df11 ? [first, "huffman"] : [first];
}

/**
 * Elements per decode window: the chunk asked for, but never more than the largest matrix the forward
 * pass multiplies by (so a small model does not hold two 64 Mi-element windows it cannot fill).
 */
export function decodeWindowElements(c: TextModelConfig, chunk: number): number {
  const H = c.hiddenSize;
  const qDim = c.numHeads * c.headDim;
  const kvDim = c.numKvHeads * c.headDim;
  const I = c.intermediateSize;
  const largest = Math.max(c.vocabSize * H, 2 * I * H, (qDim + 2 * kvDim) * H, H * qDim, H * I);
  return Math.min(chunk, largest);
}

/** Memory the backend will allocate besides the weights, in bytes. */
function workingBytes(c: TextModelConfig, maxRows: number, slots: number, maxContext: number, decodeChunk: number, windows: boolean): { kv: number; activations: number; scratch: number } {
  const H = c.hiddenSize;
  const qDim = c.numHeads * c.headDim;
  const kvDim = c.numKvHeads * c.headDim;
  const I = c.intermediateSize;
  const perRow = 4 * H + qDim + 2 * kvDim + 2 * qDim + 3 * I + c.vocabSize / 8;
  const partial = ATTENTION_SPLIT_ROWS * c.numHeads * MAX_SPLITS * (c.headDim + 2);
  return {
    kv: 2 * c.numLayers * slots * c.numKvHeads * maxContext * c.headDim * 2,
    activations: (maxRows * perRow + partial) * F32 + xBf16Bytes(c, maxRows) + slots * c.vocabSize * F32 + SPLIT_K_BYTES,
    // Two windows (decoding / being multiplied); a window never exceeds the chunk, or one row when a row
    // is longer; +16 B for the 8-element alignment.
    scratch: windows ? 2 * (Math.max(decodeChunk, H + 8, I + 8) * 2 + 4096) : 0,
  };
}

/**
 * Runs the forward pass on an NVIDIA GPU with df11's own kernels: GEMV for decoding, tensor-core GEMM
 * for prefill, split attention over a BF16 KV cache. Weights are held as {@link GpuWeightsLayout} says:
 * in the DF11 fused layout the GEMV decodes them in registers (and prefill unpacks windows for the GEMM);
 * Huffman-coded DF11 modules are decoded window by window right before each product. One-token steps
 * are recorded once as a CUDA graph and replayed; kernels launch as programmatic dependent launches on
 * Hopper, so each one's prologue (the GEMV's first weight loads) overlaps the kernel before it.
 */
export class CudaBackend implements Backend<CudaTensor> {
  readonly device = "cuda";
  readonly weights: WeightsInfo;
  private readonly stream = new CudaStream();
  /** Windows decode on their own stream, overlapping the previous window's matrix product. */
  private readonly decodeStream = new CudaStream();
  private readonly windowDecoded = [new CudaEvent({ timing: false }), new CudaEvent({ timing: false })];
  private readonly windowConsumed = [new CudaEvent({ timing: false }), new CudaEvent({ timing: false })];
  private readonly stepStarted = new CudaEvent({ timing: false });
  private windows = 0;
  private windowUsed = [false, false];
  private decodeForked = false;
  /** Per-op GPU times when loaded with `profile: true`. */
  readonly profile: OpProfile | undefined;
  private readonly tensors = new Map<string, { buffer: DeviceBuffer; capacityRows: number; cols: number }>();
  private readonly graphs = new Map<string, { graph: CudaGraph; result: unknown }>();
  private readonly warmed = new Set<string>();
  private readonly inputs: DeviceBuffer;
  /** Step inputs up and argmax indices down through pinned memory (pipelined greedy decoding). */
  private readonly io: StepIo;
  private readonly keys: DeviceBuffer;
  private readonly values: DeviceBuffer;
  private readonly invFreq: { address: Address; rotaryDim: number }[] = [];
  private readonly small: DeviceBuffer[] = [];
  private readonly scratch: DeviceBuffer[] = [];
  private readonly xBf16: DeviceBuffer;
  private readonly partial: DeviceBuffer;
  private readonly argmaxOut: DeviceBuffer;
  /** Split-K partial sums of the tensor-core GEMM when a step has few rows. */
  private readonly splitK: DeviceBuffer;
  private readonly decodeChunk: number;
  /** The GPU this backend runs on. */
  readonly deviceIndex: number;
  /** Rows of the embedding table (the whole vocabulary, also when lm_head is a tensor-parallel shard). */
  private readonly embeddingRows: number;
  private rows = 0;
  private outputRows = 0;
  /** The step's sequence when the prefill attention kernel takes it (see {@link PREFILL_ATTENTION}). */
  private prefillSpan: { slot: number; firstPosition: number } | null = null;
  /** Host milliseconds spent per phase of the steps so far (cheap counters; reset them to measure). */
  readonly hostTimes = { steps: 0, setStep: 0, launch: 0, readBack: 0 };
  private disposed = false;
  private generation = 0;

  private constructor(
    readonly config: TextModelConfig,
    private readonly deviceWeights: DeviceWeights,
    readonly maxRows: number,
    readonly slots: number,
    readonly maxContext: number,
    decodeChunk: number,
    private readonly fault: CudaBackendOptions["fault"],
    profile: boolean,
    private readonly gemmMinRows: number,
    embeddingRows: number,
    private readonly maxGpuMemory: number | undefined,
  ) {
    this.deviceIndex = currentDevice();
    this.embeddingRows = embeddingRows;
    this.profile = profile ? new OpProfile(this.stream) : undefined;
    const fused = deviceWeights.fusedReport;
    const offload = deviceWeights.offload?.report;
    this.weights = { kind: deviceWeights.kind, residentBytes: deviceWeights.residentBytes, layout: deviceWeights.layout, ...(fused ? { fused } : {}), ...(offload ? { offload } : {}) };
    this.decodeChunk = decodeChunk;
    const c = config;
    const alloc = (bytes: number) => {
      const b = DeviceBuffer.alloc(Math.max(bytes, 16));
      this.small.push(b);
      return b;
    };
    this.inputs = alloc(4 * maxRows * 4);
    this.io = new StepIo(maxRows, Math.max(slots, maxRows), (ms) => (this.hostTimes.readBack += ms));
    const kvBytes = c.numLayers * slots * c.numKvHeads * maxContext * c.headDim * 2;
    this.keys = alloc(kvBytes);
    this.values = alloc(kvBytes);
    const w = workingBytes(c, maxRows, slots, maxContext, decodeChunk, deviceWeights.layout !== "bf16");
    if (w.scratch > 0) this.scratch.push(alloc(w.scratch / 2), alloc(w.scratch / 2));
    this.xBf16 = alloc(xBf16Bytes(c, maxRows));
    this.partial = alloc(ATTENTION_SPLIT_ROWS * c.numHeads * MAX_SPLITS * (c.headDim + 2) * F32);
    this.argmaxOut = alloc(Math.max(slots, maxRows) * 8); // indices, then values (argmaxWithValues)
    this.splitK = alloc(SPLIT_K_BYTES);
    for (let l = 0; l < c.numLayers; l++) {
      const table = ropeTable(c.rope[l], c.headDim);
      const freqs = fault === "rope-direction" ? table.inverseFrequencies.map((f) => -f) : table.inverseFrequencies;
      const b = alloc(freqs.byteLength);
      b.upload(freqs);
      this.invFreq.push({ address: b.address, rotaryDim: table.rotaryDim });
    }
  }

  /**
   * Load a model directory (BF16, or DF11 detected by `dfloat11_config`) onto the GPU in the requested
   * layout. Before anything is allocated, checks that weights + KV cache + working memory fit in free
   * GPU memory (`auto`: the fused layout, BF16 where fused would be larger, Huffman when neither fits) —
   * or in `maxGpuMemory` when that is less; with `maxGpuMemory`, when no layout fits resident, the fewest
   * last decoder layers are offloaded to pinned host memory (see {@link choosePlacement}, LayerOffload).
   * Throws {@link OutOfDeviceMemoryError} saying how much is needed and which options would make it fit.
   */
  static async load(directory: string, options: CudaBackendOptions = {}): Promise<CudaBackend> {
    const p = await CudaBackend.prepare(directory, options);
    await using files = p.files;
    const { config, raw, weights, patternDict, layout, plan } = p;
    const checks = { recorded: readRecordedChecksums(weights), stored: options.checkStored !== false, weights: !!options.verifyWeights };
    const deviceWeights = await DeviceWeights.load(weights, patternDict, { layout, config: raw, onProgress: options.onProgress, checks, offloadLayers: plan?.layers, shard: options.shard });
    try {
      return new CudaBackend(config, deviceWeights, p.maxRows, p.slots, p.maxContext, p.window, options.fault, options.profile ?? false, options.gemmMinRows ?? DEFAULT_GEMM_MIN_ROWS, p.embeddingRows, options.maxGpuMemory);
    } catch (e) {
      deviceWeights.dispose();
      throw e;
    }
  }

  /**
   * The memory plan {@link load} would follow with these options, without allocating anything: the
   * layout, the device bytes (weights, KV cache, working memory), and the layers offloaded. Throws as
   * `load` does when nothing fits (OutOfDeviceMemoryError naming the options).
   */
  static async planMemory(directory: string, options: CudaBackendOptions = {}): Promise<CudaMemoryPlan> {
    const p = await CudaBackend.prepare(directory, options);
    await using _files = p.files;
    const n = p.needs(p.layout);
    const resident = n.weightBytes + n.kvBytes + n.workingBytes;
    return { layout: p.layout, maxContext: p.maxContext, slots: p.slots, deviceBytes: p.plan ? p.plan.deviceBytes : resident, weightBytes: n.weightBytes, kvBytes: n.kvBytes, workingBytes: n.workingBytes, offload: p.plan ?? null };
  }

  /** Options checked, files opened (the caller closes them), the placement chosen. */
  private static async prepare(directory: string, options: CudaBackendOptions) {
    if (options.device !== undefined) {
      requireGpu(options.device, "device");
      setDevice(options.device);
    }
    const raw = await readModelConfig(directory);
    const dfc = dfloat11ConfigOf(raw, directory);
    const fullConfig = parseTextModelConfig(raw);
    // A tensor-parallel rank runs with its own heads, KV heads, features and vocabulary shard.
    const shard = options.shard;
    const config = shard ? shard.config : fullConfig;
    if (config.headDim % 8 !== 0 || config.headDim > 256) throw new ConfigError("head_dim", `${config.headDim}: the CUDA backend needs a multiple of 8 up to 256`);
    const maxContext = options.maxContext ?? Math.min(config.maxPositionEmbeddings, DEFAULT_MAX_CONTEXT);
    const slots = options.slots ?? 1;
    const maxRows = options.maxRows ?? DEFAULT_MAX_ROWS;
    const chunk = options.decodeChunkElements ?? DEFAULT_DECODE_CHUNK;
    if (!Number.isInteger(chunk) || chunk < 1) throw new RangeError(`decodeChunkElements must be a positive integer, got ${chunk}`);
    const window = decodeWindowElements(config, chunk);
    const requested = options.gpuWeights ?? "auto";
    for (const [k, v] of Object.entries({ maxContext, slots, maxRows })) {
      if (!Number.isInteger(v) || v < 1) throw new RangeError(`${k} must be a positive integer, got ${v}`);
    }
    if (!["auto", "fused", "huffman", "bf16"].includes(requested)) throw new RangeError(`gpuWeights must be auto, fused, huffman or bf16, got ${JSON.stringify(requested)}`);
    if (requested === "huffman" && !dfc) throw new ConfigError("gpuWeights", "huffman keeps DF11 modules as stored, and this model is BF16: use fused (the default) or bf16");
    if (requested === "huffman" && shard) throw new OptionError("gpuWeights", TP_HUFFMAN, "--gpu-weights");
    const files = await SafetensorsCollection.openDirectory(directory);
    try {
      // A multimodal checkpoint's language model under the usual names (vision parts left out).
      const { weights, patternDict } = languageModelOf(files, dfc?.patternDict);
      const { free } = memoryInfo();
      const budget = options.maxGpuMemory;
      checkGpuOptions({ maxGpuMemory: budget });
      const forced = options.offloadLayers;
      if (forced !== undefined && (!Number.isInteger(forced) || forced < 0 || forced > config.numLayers)) throw new RangeError(`offloadLayers must be an integer from 0 to ${config.numLayers}, got ${forced}`);
      const planned = new Map<WeightFormat, ReturnType<typeof DeviceWeights.plannedLayout>>();
      const needs = (layout: WeightFormat): LayoutNeeds => {
        const w = workingBytes(config, maxRows, slots, maxContext, window, layout !== "bf16");
        if (!planned.has(layout)) planned.set(layout, DeviceWeights.plannedLayout(weights, patternDict, raw, layout, shard));
        const { total, layers } = planned.get(layout)!;
        // Loading a DF11 model into another layout holds one compressed module and a window besides (64 MiB).
        return { weightBytes: total, layerBytes: Array.from({ length: config.numLayers }, (_, l) => layers[l] ?? 0), kvBytes: w.kv, workingBytes: w.activations + w.scratch + 64 * 1024 * 1024 };
      };
      const candidates: WeightFormat[] = requested !== "auto" ? [requested] : autoCandidates(!!patternDict && !shard, needs("fused").weightBytes < needs("bf16").weightBytes);
      let placement: Placement;
      try {
        const where = shard ? `${directory} (GPU ${currentDevice()}, tensor-parallel rank ${shard.rank})` : directory;
        placement = choosePlacement({ candidates, needs, free, budget, offloadLayers: forced, describe: { directory: where, slots, maxContext, maxRows: maxRows > DEFAULT_MAX_ROWS ? maxRows : undefined, df11: !!patternDict && !shard } });
      } catch (e) {
        if (e instanceof PlacementShortfall) throw new OutOfDeviceMemoryError(e.message, e.neededBytes, e.availableBytes);
        throw e;
      }
      const { layout, plan } = placement;
      return { files, config, raw, weights, patternDict, maxContext, slots, maxRows, window, needs, layout, plan, embeddingRows: fullConfig.vocabSize };
    } catch (e) {
      await files[Symbol.asyncDispose]();
      throw e;
    }
  }

  has(name: string): boolean {
    return this.deviceWeights.has(name);
  }

  /** What the checksum checks at load covered and cost. */
  get loadChecks(): LoadCheckReport {
    return this.deviceWeights.checks;
  }

  /** Where the load's host time went, per phase (see LoadPhaseTimes). */
  get loadTimes(): LoadPhaseTimes {
    return this.deviceWeights.loadTimes;
  }

  /** Per fused matrix: shape, bits per weight, escape rate (empty unless the layout is fused). */
  fusedMatrices(): ReturnType<DeviceWeights["fusedMatrices"]> {
    return this.deviceWeights.fusedMatrices();
  }

  /** The configuration this backend runs with, read from it. */
  get engineConfig(): CudaEngineConfig {
    const d = devices()[this.deviceIndex];
    return {
      device: { index: this.deviceIndex, name: d.name, computeCapability: d.computeCapability },
      cudaRuntime: cudaRuntimeVersion(),
      programmaticLaunch: programmaticLaunch(this.deviceIndex),
      weights: this.weights.kind,
      layout: this.deviceWeights.layout,
      decodeChunkElements: this.decodeChunk,
      gemvMaxRows: GEMV_MAX_ROWS,
      gemmMinRows: this.gemmMinRows,
      maxRows: this.maxRows,
      slots: this.slots,
      maxContext: this.maxContext,
      maxGpuMemory: this.maxGpuMemory ?? null,
      offload: this.weights.offload ?? null,
    };
  }

  /** Device memory the backend's buffers hold now and at most (df11's allocations on its GPU; not the CUDA context). */
  memory(): BackendMemory {
    const s = allocationStats(this.deviceIndex);
    return { measure: "device-allocated", inUseBytes: s.allocated, peakBytes: s.peak };
  }

  tensor(name: string, rows: number, cols: number): CudaTensor {
    let t = this.tensors.get(name);
    if (!t || t.cols !== cols || t.capacityRows < rows) {
      // Per-row activations get room for a whole step up front; logits grow as needed. A new buffer
      // moves the tensor, so recorded graphs are dropped.
      const capacityRows = name === "logits" || name === "output_hidden" ? Math.max(rows, this.slots) : Math.max(rows, this.maxRows);
      t?.buffer.dispose();
      t = { buffer: DeviceBuffer.alloc(Math.max(capacityRows * cols * F32, 16)), capacityRows, cols };
      this.tensors.set(name, t);
      this.dropGraphs();
    }
    return { address: t.buffer.address, rows, cols };
  }

  setStep(step: StepRows): void {
    this.setRows(step, step.tokens);
  }

  /**
   * A step whose tokens are `previous`'s indices, still on the device (the latest argmax, queued by
   * argmaxAsync): copied into the step's token rows on the stream, behind the step that computed them.
   */
  setStepFromArgmax(step: StepPlan, previous: PendingArgmax): boolean {
    if (!this.io.isLatest(previous) || previous.rows !== step.positions.length) return false;
    this.setRows(step, undefined);
    call(() => native().copyAddress(this.ids, this.argmaxOut.address, previous.rows * 4, this.stream.native));
    return true;
  }

  /** Upload a step's rows (without tokens: the token rows are filled on the device). */
  private setRows(step: StepPlan, tokens: Int32Array | undefined): void {
    const t0 = performance.now();
    const n = step.positions.length;
    if (n > this.maxRows) throw new RangeError(`a step takes at most ${this.maxRows} rows, got ${n}`);
    for (const s of step.slots) if (s < 0 || s >= this.slots) throw new RangeError(`slot ${s} is outside 0…${this.slots - 1}`);
    this.io.upload(this.inputs.address, tokens, step.positions, step.slots, step.outputRows, this.stream);
    this.rows = n;
    this.outputRows = step.outputRows.length;
    const span = PREFILL_ATTENTION && n > ATTENTION_SPLIT_ROWS && PREFILL_HEAD_DIMS.has(this.config.headDim) ? oneSequenceSpan(step) : null;
    this.prefillSpan = span && span.firstPosition >= 0 && span.firstPosition + n <= this.maxContext ? span : null;
    this.windows = 0;
    this.windowUsed = [false, false];
    this.decodeForked = false;
    this.hostTimes.steps++;
    this.hostTimes.setStep += performance.now() - t0;
  }

  private get ids(): Address {
    return this.inputs.address;
  }
  private get positions(): Address {
    return this.inputs.address + this.maxRows * 4;
  }
  private get slotIds(): Address {
    return this.inputs.address + 2 * this.maxRows * 4;
  }
  private get outputRowIds(): Address {
    return this.inputs.address + 3 * this.maxRows * 4;
  }

  embed(out: CudaTensor, scale: number): void {
    const H = out.cols;
    const name = "model.embed_tokens.weight";
    const slice = this.deviceWeights.matrix(name);
    this.checkShape(name, slice, this.embeddingRows, H);
    const m = slice.matrix;
    const s = this.stream.native;
    if (m.address !== undefined) {
      this.time("embedding", () => call(() => native().embedding(m.address!, this.ids, out.rows, H, scale, out.address, s)));
      return;
    }
    // Only the step's rows are decoded, chosen on the GPU from the token ids.
    const staging = this.xBf16.address; // free until the first linear of the step
    this.time(`embedding (${m.format} rows)`, () => m.gatherRows!(this.ids, out.rows, staging, this.stream));
    this.time("embedding", () => call(() => native().embedding(staging, 0, out.rows, H, scale, out.address, s)));
  }

  /** CPU offload: an offloaded layer's copy is waited for before its first op, the next one's queued (see LayerOffload). */
  beginLayer(layer: number): void {
    const offload = this.deviceWeights.offload;
    if (!offload) return;
    offload.beginLayer(layer, this.stream);
    // Windows of this layer's matrices are decoded on the decode stream: fork it again from the compute
    // stream (now behind the copy) before its next window, rather than a wait with nothing after it in a capture.
    if (offload.has(layer)) this.decodeForked = false;
  }

  rmsNorm(x: CudaTensor, weight: string, out: CudaTensor): void {
    const c = this.config;
    this.time("rmsNorm", () => call(() => native().rmsNorm(x.address, x.rows, x.cols, this.deviceWeights.vector(weight, x.cols), c.rmsNormEps, c.gemmaNorms, out.address, 0, this.stream.native)));
  }

  rmsNormAdd(x: CudaTensor, weight: string, residual: CudaTensor): void {
    const c = this.config;
    this.time("rmsNorm", () => call(() => native().rmsNorm(x.address, x.rows, x.cols, this.deviceWeights.vector(weight, x.cols), c.rmsNormEps, c.gemmaNorms, 0, residual.address, this.stream.native)));
  }

  private checkShape(name: string, slice: MatrixSlice, rows: number, cols: number): void {
    if (slice.rows !== rows || slice.matrix.cols !== cols) {
      throw new WeightLayoutError(name, `shape [${slice.rows}, ${slice.matrix.cols}] does not fit the config's [${rows}, ${cols}]`);
    }
  }

  linear(x: CudaTensor, weights: readonly LinearWeight[], out: CudaTensor, accumulate = false): void {
    const K = x.cols;
    const slices = weights.map((w) => {
      const s = this.deviceWeights.matrix(w.name);
      this.checkShape(w.name, s, w.rows, K);
      return s;
    });
    const useGemm = x.rows >= Math.min(this.gemmMinRows, GEMV_MAX_ROWS + 1);
    // The GEMM takes x converted to BF16 ([rows, K]). The GEMV rounds x as it reads it, or with more than
    // GEMV_XB_ROWS rows reads the converted copy: x is read again for every 8 weight rows, and at half the
    // bytes those reads stop bounding the kernel. Same operands, same bits either way.
    const converted = useGemm || x.rows > GEMV_XB_ROWS;
    if (converted) this.time("toBf16", () => call(() => native().toBf16(x.address, x.rows * K, this.xBf16.address, this.stream.native)));
    const xBf16 = converted ? this.xBf16.address : 0;
    let column = 0;
    for (let i = 0; i < weights.length; ) {
      // Consecutive rows of one device matrix (q|k|v, gate|up) run as one product.
      let j = i + 1;
      while (j < weights.length && slices[j].matrix === slices[i].matrix && slices[j].firstRow === slices[j - 1].firstRow + slices[j - 1].rows && !!weights[j].bias === !!weights[i].bias) j++;
      const group = weights.slice(i, j);
      const rows = group.reduce((n, w) => n + w.rows, 0);
      const bias = group[0].bias ? this.deviceWeights.fusedVector(group.map((w) => w.bias!), group.map((w) => w.rows)) : 0;
      const m = slices[i].matrix;
      const first = slices[i].firstRow;
      const direct = !useGemm && m.address === undefined && m.gemv !== undefined && (m.canGemv?.(first) ?? true);
      if (direct) {
        this.time(`gemv (${m.format})`, () =>
          m.gemv!({ rowBegin: first, rowEnd: first + rows, x: x.address, ldx: K, rows: x.rows, xBf16, bias, out: out.address + column * F32, ldo: out.cols, accumulate, stream: this.stream }),
        );
      } else {
        // A format with a GEMM of its own runs it where the device has one (false: it launched nothing).
        const ran =
          useGemm &&
          m.address === undefined &&
          m.gemm !== undefined &&
          this.time(`gemm (${m.format})`, () =>
            m.gemm!({
              rowBegin: first,
              rowEnd: first + rows,
              xBf16,
              rows: x.rows,
              bias,
              out: out.address + column * F32,
              ldo: out.cols,
              accumulate,
              workspace: this.splitK.address,
              workspaceBytes: this.splitK.byteLength,
              stream: this.stream,
            }),
            this.stream,
            (launched) => launched, // a declined fused GEMM is not a GEMM of the profile
          );
        // Otherwise BF16 as it is, or decoded window by window.
        if (!ran) this.matmul(x, slices[i], rows, out, column, bias, accumulate, useGemm, xBf16);
      }
      column += rows;
      i = j;
    }
  }

  /** out[:, column … column + N) (+)= x · Wᵀ for N rows of the slice's matrix, BF16 resident or decoded in windows. */
  private matmul(x: CudaTensor, slice: MatrixSlice, N: number, out: CudaTensor, column: number, bias: Address, accumulate: boolean, useGemm: boolean, xBf16: Address): void {
    const K = x.cols;
    const m = slice.matrix;
    const s = this.stream.native;
    const op = useGemm ? "gemm" : "gemv";
    const run = (weight: Address, n: number, firstRow: number) =>
      this.time(op, () =>
        call(() =>
          native().linear(weight, n, K, x.address, K, x.rows, bias ? bias + firstRow * F32 : 0, out.address + (column + firstRow) * F32, out.cols, accumulate, this.xBf16.address, s, this.splitK.address, this.splitK.byteLength, useGemm, xBf16 !== 0),
        ),
      );
    if (m.address !== undefined) return run(m.address + slice.firstRow * K * 2, N, 0);
    if (!m.decodeRows) throw new WeightLayoutError(`${m.format} matrix`, "has no way to reach the tensor cores");
    // Windows of whole rows, decoded on the decode stream into one of two buffers while the previous
    // window is multiplied on the compute stream.
    if (!this.decodeForked) {
      this.stepStarted.record(this.stream);
      this.decodeStream.waitEvent(this.stepStarted);
      this.decodeForked = true;
    }
    const rowsPerChunk = Math.max(1, Math.floor(this.decodeChunk / K));
    const chunkRows = useGemm && rowsPerChunk >= 128 ? rowsPerChunk - (rowsPerChunk % 128) : rowsPerChunk;
    for (let r0 = 0; r0 < N; r0 += chunkRows) {
      const n = Math.min(chunkRows, N - r0);
      const k = this.windows++ % 2;
      const buffer = this.scratch[k].address;
      if (this.windowUsed[k]) this.decodeStream.waitEvent(this.windowConsumed[k]);
      const first = slice.firstRow + r0;
      const at = this.time(`${m.format} decode`, () => m.decodeRows!(first, first + n, buffer, this.decodeStream), this.decodeStream);
      this.windowDecoded[k].record(this.decodeStream);
      this.stream.waitEvent(this.windowDecoded[k]);
      run(at, n, r0);
      this.windowConsumed[k].record(this.stream);
      this.windowUsed[k] = true;
    }
  }

  attention(layer: number, qkv: CudaTensor, out: CudaTensor): void {
    const c = this.config;
    const p = `model.layers.${layer}`;
    const layerBytes = this.slots * c.numKvHeads * this.maxContext * c.headDim * 2;
    const args: NativeAttention = {
      rows: qkv.rows,
      positions: this.positions,
      slots: this.slotIds,
      numHeads: c.numHeads,
      numKvHeads: c.numKvHeads,
      headDim: c.headDim,
      maxContext: this.maxContext,
      keys: this.keys.address + layer * layerBytes,
      values: this.values.address + layer * layerBytes,
      scale: this.fault === "attention-unscaled" ? 1 : c.attentionScale,
      softcap: c.attnLogitSoftcap ?? 0,
      window: c.slidingWindow[layer] ?? 0,
    };
    const q = this.tensor("query", qkv.rows, c.numHeads * c.headDim);
    const qNorm = c.qkNorm ? this.deviceWeights.vector(`${p}.self_attn.q_norm.weight`, c.headDim) : 0;
    const kNorm = c.qkNorm ? this.deviceWeights.vector(`${p}.self_attn.k_norm.weight`, c.headDim) : 0;
    const rope = this.invFreq[layer];
    const s = this.stream.native;
    this.time("qkvPrepare", () => call(() => native().qkvPrepare(args, qkv.address, qNorm, kNorm, c.rmsNormEps, c.gemmaNorms, rope.address, rope.rotaryDim, q.address, s)));
    // Few rows (decoding): split each row's keys over warps (≥ 32 keys each) so that long contexts still
    // give every SM work: about two warps per SM for one row. The split count is the one-row count for
    // every batch the GEMV takes, so that a sequence's attention sums in the same order in any batch
    // (batched greedy = solo). The kernel takes each split's share of the current length.
    // A prompt chunk of one sequence (more rows than any decode step): the tensor-core kernel, unless it
    // declines the device (false: too little shared memory for the head size).
    const span = this.prefillSpan;
    if (span && qkv.rows === this.rows) {
      const ran = this.time("prefillAttention", () => call(() => native().prefillAttention(args, span.slot, span.firstPosition, q.address, out.address, s)));
      if (ran) return;
    }
    const keys = Math.min(c.slidingWindow[layer] ?? this.maxContext, this.maxContext);
    const splits = qkv.rows <= ATTENTION_SPLIT_ROWS ? Math.max(1, Math.min(MAX_SPLITS, Math.ceil(keys / 32), Math.ceil(264 / c.numKvHeads))) : 1;
    this.time("attention", () => call(() => native().attention(args, q.address, out.address, splits, this.partial.address, s)));
  }

  gatedActivation(gu: CudaTensor, out: CudaTensor): void {
    this.time("gatedActivation", () => call(() => native().gatedActivation(gu.address, gu.rows, out.cols, this.config.activation === "silu" ? 0 : 1, out.address, this.stream.native)));
  }

  add(a: CudaTensor, b: CudaTensor): void {
    call(() => native().add(a.address, b.address, a.rows * a.cols, this.stream.native));
  }

  gatherOutputRows(x: CudaTensor, out: CudaTensor): void {
    if (out.rows !== this.outputRows) throw new RangeError(`the step has ${this.outputRows} output rows, the tensor ${out.rows}`);
    this.time("gatherRows", () => call(() => native().gatherRows(x.address, this.outputRowIds, out.rows, x.cols, out.address, this.stream.native)));
  }

  softcap(x: CudaTensor, cap: number): void {
    this.time("softcap", () => call(() => native().softcap(x.address, x.rows * x.cols, cap, this.stream.native)));
  }

  read(x: CudaTensor): Float32Array {
    const out = new Float32Array(x.rows * x.cols);
    const buffer = [...this.tensors.values()].find((t) => t.buffer.address <= x.address && x.address < t.buffer.address + t.buffer.byteLength)!.buffer;
    buffer.download(out, x.address - buffer.address, this.stream);
    return out;
  }

  /**
   * Each row's argmax and its value (host copies): one GPU's candidates when the vocabulary is split
   * over several (the tensor-parallel backend combines them).
   */
  argmaxWithValues(x: CudaTensor): { indices: Int32Array; values: Float32Array } {
    const rows = x.rows;
    const valuesAt = this.argmaxOut.address + Math.max(this.slots, this.maxRows) * 4;
    call(() => native().argmax(x.address, rows, x.cols, this.argmaxOut.address, this.stream.native, valuesAt));
    this.io.overwritten();
    const indices = new Int32Array(rows);
    const values = new Float32Array(rows);
    this.argmaxOut.download(indices, 0, this.stream);
    this.argmaxOut.download(values, valuesAt - this.argmaxOut.address, this.stream);
    return { indices, values };
  }

  argmax(x: CudaTensor): Int32Array {
    this.queueArgmax(x);
    this.io.overwritten();
    const out = new Int32Array(x.rows);
    const t0 = performance.now();
    this.argmaxOut.download(out, 0, this.stream); // waits for the step
    this.hostTimes.readBack += performance.now() - t0;
    return out;
  }

  /** `argmax` without waiting: the indices reach the host behind the step and stay on the device for setStepFromArgmax. */
  argmaxAsync(x: CudaTensor): PendingArgmax {
    this.queueArgmax(x);
    return this.io.argmaxQueued(this.argmaxOut.address, x.rows, this.stream);
  }

  /** Each row's argmax into argmaxOut, on the stream. */
  private queueArgmax(x: CudaTensor): void {
    this.time("argmax", () => call(() => native().argmax(x.address, x.rows, x.cols, this.argmaxOut.address, this.stream.native)));
  }

  /** Run an op, timed on the GPU when profiling (not counted where `counts(result)` says it did nothing). */
  private time<T>(op: string, fn: () => T, stream = this.stream, counts?: (result: T) => boolean): T {
    return this.profile ? this.profile.time(op, fn, stream, counts) : fn();
  }

  replayable<R>(key: string, fn: () => R): R {
    if (this.profile) return fn(); // per-op timing needs each op issued for real
    const recorded = this.graphs.get(key);
    if (recorded) {
      const t0 = performance.now();
      recorded.graph.launch(this.stream);
      this.hostTimes.launch += performance.now() - t0;
      return recorded.result as R;
    }
    if (!this.warmed.has(key)) {
      // First run for real: allocates what the step needs, so recording allocates nothing.
      const result = fn();
      this.warmed.add(key);
      return result;
    }
    this.stream.beginCapture();
    let result: R;
    let graph: CudaGraph;
    try {
      result = fn();
    } finally {
      graph = this.stream.endCapture();
    }
    this.graphs.set(key, { graph, result });
    graph.launch(this.stream);
    return result;
  }

  /** @internal The stream the backend's work runs on (tensor parallelism queues NCCL collectives on it). */
  get computeStream(): CudaStream {
    return this.stream;
  }

  /** @internal Start recording this GPU's work into a graph (the tensor-parallel backend records every GPU at once). */
  beginCapture(): void {
    this.stream.beginCapture();
  }

  /** @internal Stop recording: the graph of the work queued since {@link beginCapture}. */
  endCapture(): CudaGraph {
    return this.stream.endCapture();
  }

  /** @internal Bumped whenever an activation tensor moves (graphs that used it must be recorded again). */
  get tensorGeneration(): number {
    return this.generation;
  }

  private dropGraphs(): void {
    this.generation++;
    for (const g of this.graphs.values()) g.graph.dispose();
    this.graphs.clear();
    this.warmed.clear();
  }

  releaseSlot(_slot: number): void {
    // Positions are explicit per row: a slot's old keys are never read once a new sequence starts.
  }

  /** Milliseconds the GPU spends on the work `fn` queues (events on the backend's stream). */
  gpuMilliseconds(fn: () => void): number {
    using start = new CudaEvent();
    using end = new CudaEvent();
    start.record(this.stream);
    fn();
    end.record(this.stream);
    end.synchronize();
    return end.elapsedSince(start);
  }

  /** Wait for the GPU to finish the work queued so far. */
  synchronize(): void {
    this.stream.synchronize();
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    try {
      this.stream.synchronize();
      this.decodeStream.synchronize();
    } catch {
      // already failed: free what we can
    }
    this.dropGraphs();
    for (const t of this.tensors.values()) t.buffer.dispose();
    this.tensors.clear();
    for (const b of this.small) b.dispose();
    this.io.dispose();
    this.deviceWeights.dispose();
    for (const e of [...this.windowDecoded, ...this.windowConsumed, this.stepStarted]) e.dispose();
    this.profile?.dispose();
    this.decodeStream.dispose();
    this.stream.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
