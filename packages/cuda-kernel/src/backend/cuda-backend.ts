import { readModelConfig, SafetensorsCollection } from "@df11/hub-loader";
import {
  ConfigError,
  parseTextModelConfig,
  readRecordedChecksums,
  ropeTable,
  WeightLayoutError,
  type Backend,
  type BackendTensor,
  type LinearWeight,
  type PatternDict,
  type StepRows,
  type TextModelConfig,
  type WeightsInfo,
} from "@df11/models";
import { OutOfDeviceMemoryError } from "../errors.js";
import { CudaEvent, CudaGraph, CudaStream, DeviceBuffer, memoryInfo, setDevice } from "../index.js";
import { OpProfile } from "./op-profile.js";
import { call, native, type Address, type NativeAttention } from "../native.js";
import { DeviceWeights, type LoadCheckReport, type LoadProgress, type MatrixSource } from "./device-weights.js";

/** An activation tensor on the GPU: [rows, cols] float32 at `address`. */
export interface CudaTensor extends BackendTensor {
  readonly address: Address;
}

export interface CudaBackendOptions {
  /** Positions each sequence may hold (KV cache size). Default: min(max_position_embeddings, 4096). */
  readonly maxContext?: number;
  /** Sequences decoded together (KV-cache slots). Default 1. */
  readonly slots?: number;
  /** Most rows per step; longer prompts are split. Default 512. */
  readonly maxRows?: number;
  /**
   * DF11: elements decoded per window before their matrix product. Two windows are in flight (one
   * decoding while the other is multiplied), so the scratch is twice this. Default 32 Mi (128 MB).
   */
  readonly decodeChunkElements?: number;
  /**
   * Steps of at least this many rows multiply on the tensor cores (BF16 activations, split over K when
   * rows are few); fewer use the float32 GEMV, whose per-row arithmetic does not depend on the batch, so
   * batched sequences get exactly their solo logits. Default 9: with more rows the GEMV is bound by
   * reading x through L1 (on an H100, 16 rows: ~33 ms per 8B step, vs ~28 ms for 64 rows on the tensor
   * cores). Up to 17 keeps batches of 16 exact.
   */
  readonly gemmMinRows?: number;
  /** CUDA device index. Default 0. */
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
  /** Testing only: break a kernel's input on purpose, to show the accuracy checks catch it. */
  readonly fault?: "rope-direction" | "attention-unscaled";
}

const GEMV_MAX_ROWS = 16; // csrc/kernels/inference.h kGemvMaxRows
const SPLIT_K_BYTES = 32 * 1024 * 1024;
const MAX_SPLITS = 64;
const F32 = 4;

/** Memory the backend will allocate besides the weights, in bytes. */
function workingBytes(c: TextModelConfig, maxRows: number, slots: number, maxContext: number, decodeChunk: number, df11: boolean): { kv: number; activations: number; scratch: number } {
  const H = c.hiddenSize;
  const qDim = c.numHeads * c.headDim;
  const kvDim = c.numKvHeads * c.headDim;
  const I = c.intermediateSize;
  const perRow = 4 * H + qDim + 2 * kvDim + 2 * qDim + 3 * I + c.vocabSize / 8;
  const partial = GEMV_MAX_ROWS * c.numHeads * MAX_SPLITS * (c.headDim + 2);
  return {
    kv: 2 * c.numLayers * slots * c.numKvHeads * maxContext * c.headDim * 2,
    activations: (maxRows * perRow + partial) * F32 + maxRows * Math.max(H, I, qDim) * 2 + slots * c.vocabSize * F32 + SPLIT_K_BYTES,
    // Two windows (decoding / being multiplied); a window never exceeds the chunk, or one row when a row
    // is longer; +16 B for the 8-element alignment.
    scratch: df11 ? 2 * (Math.max(decodeChunk, H + 8, I + 8) * 2 + 4096) : 0,
  };
}

/**
 * Runs the forward pass on an NVIDIA GPU with df11's own kernels: GEMV for decoding, tensor-core GEMM
 * for prefill, split attention over a BF16 KV cache, and — for DF11 models — the compressed weights
 * decoded window by window right before each matrix product (scratch of `decodeChunkElements`), the
 * embedding rows decoded alone. One-token steps are recorded once as a CUDA graph and replayed.
 */
export class CudaBackend implements Backend<CudaTensor> {
  readonly device = "cuda";
  readonly weights: WeightsInfo;
  private readonly stream = new CudaStream();
  /** DF11: windows decode on their own stream, overlapping the previous window's matrix product. */
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
  private readonly hostInputs: Int32Array;
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
  private rows = 0;
  private outputRows = 0;
  /** Host milliseconds spent per phase of the steps so far (cheap counters; reset them to measure). */
  readonly hostTimes = { steps: 0, setStep: 0, launch: 0, readBack: 0 };
  private disposed = false;

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
  ) {
    this.profile = profile ? new OpProfile(this.stream) : undefined;
    this.weights = { kind: deviceWeights.kind, residentBytes: deviceWeights.residentBytes };
    this.decodeChunk = decodeChunk;
    const c = config;
    const alloc = (bytes: number) => {
      const b = DeviceBuffer.alloc(Math.max(bytes, 16));
      this.small.push(b);
      return b;
    };
    this.inputs = alloc(4 * maxRows * 4);
    this.hostInputs = new Int32Array(4 * maxRows);
    const kvBytes = c.numLayers * slots * c.numKvHeads * maxContext * c.headDim * 2;
    this.keys = alloc(kvBytes);
    this.values = alloc(kvBytes);
    const w = workingBytes(c, maxRows, slots, maxContext, decodeChunk, deviceWeights.kind === "df11");
    if (w.scratch > 0) this.scratch.push(alloc(w.scratch / 2), alloc(w.scratch / 2));
    this.xBf16 = alloc(maxRows * Math.max(c.hiddenSize, c.intermediateSize, c.numHeads * c.headDim) * 2);
    this.partial = alloc(GEMV_MAX_ROWS * c.numHeads * MAX_SPLITS * (c.headDim + 2) * F32);
    this.argmaxOut = alloc(Math.max(slots, maxRows) * 4);
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
   * Load a model directory (BF16, or DF11 detected by `dfloat11_config`) onto the GPU. Before anything
   * is allocated, checks that weights + KV cache + working memory fit in free GPU memory, and throws
   * {@link OutOfDeviceMemoryError} saying how much is needed otherwise.
   */
  static async load(directory: string, options: CudaBackendOptions = {}): Promise<CudaBackend> {
    if (options.device !== undefined) setDevice(options.device);
    const raw = await readModelConfig(directory);
    const config = parseTextModelConfig(raw);
    const df11 = raw.dfloat11_config as { pattern_dict?: PatternDict } | undefined;
    if (df11 !== undefined && (typeof df11 !== "object" || !df11.pattern_dict)) throw new ConfigError("dfloat11_config.pattern_dict", "missing");
    if (config.headDim % 8 !== 0 || config.headDim > 256) throw new ConfigError("head_dim", `${config.headDim}: the CUDA backend needs a multiple of 8 up to 256`);
    const maxContext = options.maxContext ?? Math.min(config.maxPositionEmbeddings, 4096);
    const slots = options.slots ?? 1;
    const maxRows = options.maxRows ?? 512;
    const chunk = options.decodeChunkElements ?? 64 * 1024 * 1024;
    for (const [k, v] of Object.entries({ maxContext, slots, maxRows, decodeChunkElements: chunk })) {
      if (!Number.isInteger(v) || v < 1) throw new RangeError(`${k} must be a positive integer, got ${v}`);
    }
    await using weights = await SafetensorsCollection.openDirectory(directory);
    const w = workingBytes(config, maxRows, slots, maxContext, chunk, !!df11);
    const needed = DeviceWeights.plannedBytes(weights, !!df11) + w.kv + w.activations + w.scratch + 64 * 1024 * 1024;
    const { free } = memoryInfo();
    if (needed > free) {
      const gb = (n: number) => `${(n / 1e9).toFixed(2)} GB`;
      throw new OutOfDeviceMemoryError(
        `${directory} needs ${gb(needed)} of GPU memory (weights ${gb(needed - w.kv - w.activations - w.scratch)}, KV cache ${gb(w.kv)} for ${slots} × ${maxContext} positions, working ${gb(w.activations + w.scratch)}); ${gb(free)} is free. ` +
          `Try a smaller --max-context, a DF11 model, or --device cpu.`,
        needed,
        free,
      );
    }
    const checks = { recorded: readRecordedChecksums(weights), stored: options.checkStored !== false, weights: !!options.verifyWeights };
    const deviceWeights = await DeviceWeights.load(weights, df11?.pattern_dict, options.onProgress, checks);
    try {
      return new CudaBackend(config, deviceWeights, maxRows, slots, maxContext, chunk, options.fault, options.profile ?? false, options.gemmMinRows ?? 9);
    } catch (e) {
      deviceWeights.dispose();
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
    const t0 = performance.now();
    const n = step.tokens.length;
    if (n > this.maxRows) throw new RangeError(`a step takes at most ${this.maxRows} rows, got ${n}`);
    for (const s of step.slots) if (s < 0 || s >= this.slots) throw new RangeError(`slot ${s} is outside 0…${this.slots - 1}`);
    const h = this.hostInputs;
    const m = this.maxRows;
    h.set(step.tokens, 0);
    h.set(step.positions, m);
    h.set(step.slots, 2 * m);
    h.set(step.outputRows, 3 * m);
    call(() => this.inputs.native.upload(h, 0, this.stream.native));
    this.rows = n;
    this.outputRows = step.outputRows.length;
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
    const source = this.deviceWeights.matrix("model.embed_tokens.weight");
    this.checkElements("model.embed_tokens.weight", source, this.config.vocabSize, H);
    const s = this.stream.native;
    if (source.kind === "resident") {
      this.time("embedding", () => call(() => native().embedding(source.address, this.ids, out.rows, H, scale, out.address, s)));
    } else {
      // Only the blocks holding the step's rows are decoded, chosen on the GPU from the token ids.
      if (source.start % H !== 0) throw new WeightLayoutError("model.embed_tokens.weight", "does not start on a row boundary of its DF11 module");
      const rowOffset = source.start / H;
      if (rowOffset !== 0) throw new WeightLayoutError("model.embed_tokens.weight", "shares its DF11 module with other weights; the GPU embedding lookup needs it alone");
      const staging = this.xBf16.address; // free until the first linear of the step
      this.time("embedding (DF11 rows)", () => source.module.decodeRows(this.ids, out.rows, H, staging, this.stream));
      this.time("embedding", () => call(() => native().embedding(staging, 0, out.rows, H, scale, out.address, s)));
    }
  }

  rmsNorm(x: CudaTensor, weight: string, out: CudaTensor): void {
    const c = this.config;
    this.time("rmsNorm", () => call(() => native().rmsNorm(x.address, x.rows, x.cols, this.deviceWeights.vector(weight, x.cols), c.rmsNormEps, c.gemmaNorms, out.address, 0, this.stream.native)));
  }

  rmsNormAdd(x: CudaTensor, weight: string, residual: CudaTensor): void {
    const c = this.config;
    this.time("rmsNorm", () => call(() => native().rmsNorm(x.address, x.rows, x.cols, this.deviceWeights.vector(weight, x.cols), c.rmsNormEps, c.gemmaNorms, 0, residual.address, this.stream.native)));
  }

  private checkElements(name: string, source: MatrixSource, rows: number, cols: number): void {
    if (source.elements !== rows * cols || (source.kind === "resident" && source.shape.length === 2 && (source.shape[0] !== rows || source.shape[1] !== cols))) {
      const shape = source.kind === "resident" ? JSON.stringify(source.shape) : `${source.elements} elements`;
      throw new WeightLayoutError(name, `shape ${shape} does not fit the config's [${rows}, ${cols}]`);
    }
  }

  /** Whether `next` directly follows `prev` in memory (resident) or in the same compressed stream (DF11). */
  private static adjacent(prev: MatrixSource, next: MatrixSource): boolean {
    if (prev.kind === "resident" && next.kind === "resident") return prev.address + prev.elements * 2 === next.address;
    if (prev.kind === "df11" && next.kind === "df11") return prev.module === next.module && prev.start + prev.elements === next.start;
    return false;
  }

  linear(x: CudaTensor, weights: readonly LinearWeight[], out: CudaTensor, accumulate = false): void {
    const K = x.cols;
    const sources = weights.map((w) => {
      const s = this.deviceWeights.matrix(w.name);
      this.checkElements(w.name, s, w.rows, K);
      return s;
    });
    const useGemm = x.rows >= Math.min(this.gemmMinRows, GEMV_MAX_ROWS + 1);
    if (useGemm) this.time("toBf16", () => call(() => native().toBf16(x.address, x.rows * K, this.xBf16.address, this.stream.native)));
    let column = 0;
    for (let i = 0; i < weights.length; ) {
      // Adjacent weights (q|k|v, gate|up) run as one matrix.
      let j = i + 1;
      while (j < weights.length && CudaBackend.adjacent(sources[j - 1], sources[j]) && !!weights[j].bias === !!weights[i].bias) j++;
      const group = weights.slice(i, j);
      const rows = group.reduce((n, w) => n + w.rows, 0);
      const bias = group[0].bias ? this.deviceWeights.fusedVector(group.map((w) => w.bias!), group.map((w) => w.rows)) : 0;
      this.matmul(x, sources[i], rows, out, column, bias, accumulate, useGemm);
      column += rows;
      i = j;
    }
  }

  /** out[:, column … column + N) (+)= x · Wᵀ for the N×K matrix starting at `source`. */
  private matmul(x: CudaTensor, source: MatrixSource, N: number, out: CudaTensor, column: number, bias: Address, accumulate: boolean, useGemm: boolean): void {
    const K = x.cols;
    const s = this.stream.native;
    const xb = useGemm ? this.xBf16.address : 0;
    const op = useGemm ? "gemm" : "gemv";
    const run = (weight: Address, n: number, firstRow: number) =>
      this.time(op, () =>
        call(() => native().linear(weight, n, K, x.address, K, x.rows, bias ? bias + firstRow * F32 : 0, out.address + (column + firstRow) * F32, out.cols, accumulate, xb, s, this.splitK.address, this.splitK.byteLength)),
      );
    if (source.kind === "resident") return run(source.address, N, 0);
    // DF11: windows of whole rows, decoded on the decode stream into one of two buffers while the
    // previous window is multiplied on the compute stream.
    if (!this.decodeForked) {
      this.stepStarted.record(this.stream);
      this.decodeStream.waitEvent(this.stepStarted);
      this.decodeForked = true;
    }
    const rowsPerChunk = Math.max(1, Math.floor(this.decodeChunk / K));
    const chunkRows = useGemm && rowsPerChunk >= 128 ? rowsPerChunk - (rowsPerChunk % 128) : rowsPerChunk;
    for (let r0 = 0; r0 < N; r0 += chunkRows) {
      const n = Math.min(chunkRows, N - r0);
      const lo = source.start + r0 * K;
      const alignedLo = lo - (lo % 8);
      const k = this.windows++ % 2;
      const buffer = this.scratch[k].address;
      if (this.windowUsed[k]) this.decodeStream.waitEvent(this.windowConsumed[k]);
      this.time("df11 decode", () => source.module.decodeRange(buffer, alignedLo, lo + n * K, this.decodeStream), this.decodeStream);
      this.windowDecoded[k].record(this.decodeStream);
      this.stream.waitEvent(this.windowDecoded[k]);
      run(buffer + (lo - alignedLo) * 2, n, r0);
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
    // give every SM work: about two warps per SM. The kernel takes each split's share of the current length.
    const keys = Math.min(c.slidingWindow[layer] ?? this.maxContext, this.maxContext);
    const warps = qkv.rows * c.numKvHeads;
    const splits = qkv.rows <= GEMV_MAX_ROWS ? Math.max(1, Math.min(MAX_SPLITS, Math.ceil(keys / 32), Math.ceil(264 / warps))) : 1;
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

  argmax(x: CudaTensor): Int32Array {
    this.time("argmax", () => call(() => native().argmax(x.address, x.rows, x.cols, this.argmaxOut.address, this.stream.native)));
    const out = new Int32Array(x.rows);
    const t0 = performance.now();
    this.argmaxOut.download(out, 0, this.stream); // waits for the step
    this.hostTimes.readBack += performance.now() - t0;
    return out;
  }

  /** Run an op, timed on the GPU when profiling. */
  private time<T>(op: string, fn: () => T, stream = this.stream): T {
    return this.profile ? this.profile.time(op, fn, stream) : fn();
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

  private dropGraphs(): void {
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
