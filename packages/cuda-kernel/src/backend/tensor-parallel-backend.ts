import { readModelConfig } from "@df11/hub-loader";
import {
  checkGpuOptions,
  combineArgmax,
  OptionError,
  parseTextModelConfig,
  tensorParallelPlan,
  TensorParallelError,
  type Backend,
  type BackendMemory,
  type BackendTensor,
  type FusedLayoutReport,
  type OffloadReport,
  type LinearWeight,
  type StepRows,
  type TensorParallelPlan,
  type TextModelConfig,
  type WeightsInfo,
} from "@df11/models";
import { CudaError } from "../errors.js";
import { NcclClique } from "../parallel/nccl-clique.js";
import { withDevice } from "../parallel/devices.js";
import type { NcclSearchOptions } from "../parallel/nccl-loader.js";
import { currentDevice, setDevice } from "../runtime/device.js";
import { CudaEvent, type CudaGraph } from "../runtime/stream.js";
import { CudaBackend, requireGpu, TP_HUFFMAN, type CudaBackendOptions, type CudaEngineConfig, type CudaTensor } from "./cuda-backend.js";

export interface TensorParallelBackendOptions extends Omit<CudaBackendOptions, "device" | "shard" | "profile" | "fault"> {
  /** The GPUs, one rank each (rank i runs on devices[i]); distinct CUDA device indices. */
  readonly devices: readonly number[];
  /** Where NCCL is looked for (default: `DF11_NCCL`, the system, Python's nvidia-nccl wheels). */
  readonly nccl?: NcclSearchOptions;
}

/** An activation tensor of every rank: one CUDA tensor per GPU, each [rows, cols] of that rank's shapes. */
export interface TensorParallelTensor extends BackendTensor {
  readonly name: string;
  readonly parts: readonly CudaTensor[];
}

/** What {@link TensorParallelBackend.engineConfig} reports: rank 0's engine, and the parallel setup. */
export interface TensorParallelEngineConfig extends CudaEngineConfig {
  readonly tensorParallel: {
    readonly devices: readonly number[];
    readonly nccl: string;
    /** Whether one-token steps replay as CUDA graphs (one per GPU); the reason when they do not. */
    readonly graphs: true | string;
  };
}

/** The all-reduced (row-parallel) projections, matched as `.<suffix>.weight`. */
const isRowParallel = (plan: TensorParallelPlan, name: string) => plan.allReduceAfter.some((s) => name.endsWith(`.${s}.weight`));
const isLmHead = (name: string) => name === "lm_head.weight" || name === "model.embed_tokens.weight";

function mergeFused(reports: ReadonlyArray<FusedLayoutReport | undefined>): FusedLayoutReport | undefined {
  const present = reports.filter((r): r is FusedLayoutReport => !!r);
  if (present.length === 0) return undefined;
  const sum = (k: "matrices" | "weights" | "escapes" | "bytes") => present.reduce((n, r) => n + r[k], 0);
  const weights = sum("weights");
  const bytes = sum("bytes");
  const escapes = sum("escapes");
  return { matrices: sum("matrices"), weights, escapes, escapeRate: escapes / weights, bytes, bitsPerWeight: (bytes * 8) / weights, ratioToBf16: bytes / (weights * 2) };
}

/** The ranks' CPU offload together: every layer any GPU offloads, host and slot bytes of all of them. */
function mergeOffload(reports: ReadonlyArray<OffloadReport | undefined>): OffloadReport | undefined {
  const present = reports.filter((r): r is OffloadReport => !!r);
  if (present.length === 0) return undefined;
  return {
    layers: [...new Set(present.flatMap((r) => r.layers))].sort((a, b) => a - b),
    hostBytes: present.reduce((n, r) => n + r.hostBytes, 0),
    slotBytes: present.reduce((n, r) => n + r.slotBytes, 0),
  };
}

/**
 * Tensor parallelism over the GPUs of one process (Megatron-LM style; the split is
 * `tensorParallelPlan` of @df11/models): each GPU holds its attention heads, KV heads, MLP features and
 * lm_head vocabulary rows — its slice of every DF11 module decoded (or transcoded into the fused layout)
 * on that GPU at load — and runs the forward pass with its own shapes. The outputs of o_proj and
 * down_proj are partial sums, completed by an NCCL all-reduce (sum, float32) on every GPU's stream;
 * greedy choice combines each GPU's best logit, and `read` gathers the vocabulary shards. Ops are
 * issued to every GPU in turn from this thread (each with its device current); one-token steps are
 * recorded as one CUDA graph spanning every GPU, NCCL collectives included, and replayed with one launch.
 *
 * Same weights, same kernels: a DF11 model gives bit for bit the logits of its BF16 twin on the same
 * GPUs and layout. Against one GPU the sums are split differently (NCCL adds the partial products), so
 * logits agree within rounding, not bit for bit.
 */
export class TensorParallelBackend implements Backend<TensorParallelTensor> {
  readonly device = "cuda";
  readonly weights: WeightsInfo;
  readonly shardConfig: TextModelConfig;
  readonly maxRows: number;
  readonly maxContext: number;
  readonly slots: number;
  private readonly graphs = new Map<string, { graph: CudaGraph; result: unknown }>();
  /** One event per GPU (made on it): forks and joins of the streams around recording and replays. */
  private readonly events: CudaEvent[];
  private readonly warmed = new Set<string>();
  private readonly vocabSharded = new Set<string>();
  private generations = "";
  private graphsOff: string | undefined = process.env.DF11_TP_GRAPHS === "0" ? "turned off by DF11_TP_GRAPHS=0" : undefined;
  private disposed = false;

  private constructor(
    readonly config: TextModelConfig,
    readonly plan: TensorParallelPlan,
    private readonly ranks: readonly CudaBackend[],
    private readonly clique: NcclClique,
  ) {
    const r0 = ranks[0];
    this.shardConfig = r0.config;
    this.maxRows = r0.maxRows;
    this.maxContext = r0.maxContext;
    this.slots = r0.slots;
    this.events = this.each(() => new CudaEvent({ timing: false }));
    const fused = mergeFused(ranks.map((r) => r.weights.fused));
    const offload = mergeOffload(ranks.map((r) => r.weights.offload ?? undefined));
    this.weights = { kind: r0.weights.kind, layout: r0.weights.layout, residentBytes: ranks.reduce((n, r) => n + r.weights.residentBytes, 0), ...(fused ? { fused } : {}), ...(offload ? { offload } : {}) };
  }

  /**
   * Load a model directory split over `options.devices`. Checks the split first (TensorParallelError
   * names num_attention_heads, num_key_value_heads, intermediate_size or vocab_size when it does not
   * divide), then NCCL (NcclUnavailableError saying what is missing), then loads each GPU's slice in turn
   * (OutOfDeviceMemoryError names the GPU that lacks memory). The huffman layout is refused (OptionError:
   * its modules stay whole). `maxGpuMemory` is each GPU's budget: each rank offloads the last decoder
   * layers' slices that do not fit it to pinned host memory (CPU offload, as on one GPU; with equal GPUs
   * the ranks pick the same layers), copied in one layer ahead inside the step's graph. `verifyWeights` decodes each DF11 module once (on the first GPU) and checks its
   * recorded checksum; the GPUs' slices of it have no recorded checksum of their own and are not summed.
   */
  static async load(directory: string, options: TensorParallelBackendOptions): Promise<TensorParallelBackend> {
    const devices = [...options.devices];
    if (devices.length === 0) throw new RangeError("tensor parallelism: devices is empty");
    const config = parseTextModelConfig(await readModelConfig(directory));
    const plan = tensorParallelPlan(config, devices.length);
    if (config.vocabSize % devices.length !== 0) {
      throw new TensorParallelError("vocab_size", `${config.vocabSize} vocabulary rows do not divide over ${devices.length} GPUs (lm_head is split by vocabulary)`, devices.length);
    }
    if (options.gpuWeights === "huffman") throw new OptionError("gpuWeights", TP_HUFFMAN, "--gpu-weights");
    checkGpuOptions({ devices }); // indices, repeats
    for (const d of devices) requireGpu(d, "devices");
    const clique = NcclClique.create(devices, options.nccl);
    const ranks: CudaBackend[] = [];
    const previous = currentDevice();
    try {
      for (const [r, device] of devices.entries()) {
        const onProgress = options.onProgress && ((done: number, total: number) => options.onProgress!(r * total + done, devices.length * total));
        // Decoded-weight checks cover whole modules: once (rank 0) is enough.
        ranks.push(await CudaBackend.load(directory, { ...options, onProgress, device, shard: plan.ranks[r], verifyWeights: r === 0 && options.verifyWeights }));
      }
      return new TensorParallelBackend(config, plan, ranks, clique);
    } catch (e) {
      for (const r of ranks) withDevice(r.deviceIndex, () => r.dispose());
      clique.dispose();
      throw e;
    } finally {
      setDevice(previous);
    }
  }

  /** The GPUs, rank order. */
  get devices(): readonly number[] {
    return this.clique.devices;
  }

  /** Run `fn` on every rank with its GPU current. */
  private each<R>(fn: (rank: CudaBackend, i: number) => R): R[] {
    return this.ranks.map((rank, i) => withDevice(rank.deviceIndex, () => fn(rank, i)));
  }

  has(name: string): boolean {
    return this.ranks[0].has(name);
  }

  tensor(name: string, rows: number, cols: number): TensorParallelTensor {
    return { name, rows, cols, parts: this.each((r) => r.tensor(name, rows, cols)) };
  }

  setStep(step: StepRows): void {
    this.each((r) => r.setStep(step));
  }

  /** CPU offload: each GPU waits for (and queues) its own slices of the offloaded layers (see LayerOffload). */
  beginLayer(layer: number): void {
    this.each((r) => r.beginLayer(layer));
  }

  embed(out: TensorParallelTensor, scale: number): void {
    this.each((r, i) => r.embed(out.parts[i], scale));
  }

  rmsNorm(x: TensorParallelTensor, weight: string, out: TensorParallelTensor): void {
    this.each((r, i) => r.rmsNorm(x.parts[i], weight, out.parts[i]));
  }

  rmsNormAdd(x: TensorParallelTensor, weight: string, residual: TensorParallelTensor): void {
    this.each((r, i) => r.rmsNormAdd(x.parts[i], weight, residual.parts[i]));
  }

  linear(x: TensorParallelTensor, weights: readonly LinearWeight[], out: TensorParallelTensor, accumulate = false): void {
    if (weights.some((w) => isLmHead(w.name))) {
      // Each GPU's vocabulary rows (a tied model's: of its embedding table, as `lm_head.weight`).
      const shard = weights.map((w) => ({ ...w, name: "lm_head.weight" }));
      this.each((r, i) => r.linear(x.parts[i], shard, out.parts[i], accumulate));
      this.vocabSharded.add(out.name);
      return;
    }
    if (!weights.some((w) => isRowParallel(this.plan, w.name))) {
      this.each((r, i) => r.linear(x.parts[i], weights, out.parts[i], accumulate));
      return;
    }
    // Row-parallel: partial sums. Rank 0 adds its partial (and the bias) to what `out` holds; the others
    // write theirs alone; the sum over the GPUs completes every GPU's copy.
    const partial = weights.map(({ bias: _bias, ...w }) => w);
    this.each((r, i) => r.linear(x.parts[i], i === 0 ? weights : partial, out.parts[i], i === 0 && accumulate));
    const count = out.rows * out.cols;
    this.clique.allReduce(
      out.parts.map((p, i) => ({ device: this.ranks[i].deviceIndex, address: p.address, count })),
      "float32",
      "sum",
      this.ranks.map((r) => r.computeStream),
    );
  }

  attention(layer: number, qkv: TensorParallelTensor, out: TensorParallelTensor): void {
    this.each((r, i) => r.attention(layer, qkv.parts[i], out.parts[i]));
  }

  gatedActivation(gu: TensorParallelTensor, out: TensorParallelTensor): void {
    this.each((r, i) => r.gatedActivation(gu.parts[i], out.parts[i]));
  }

  add(a: TensorParallelTensor, b: TensorParallelTensor): void {
    this.each((r, i) => r.add(a.parts[i], b.parts[i]));
  }

  gatherOutputRows(x: TensorParallelTensor, out: TensorParallelTensor): void {
    this.each((r, i) => r.gatherOutputRows(x.parts[i], out.parts[i]));
  }

  softcap(x: TensorParallelTensor, cap: number): void {
    this.each((r, i) => r.softcap(x.parts[i], cap));
  }

  /** Host copy: the logits over the whole vocabulary ([rows, vocab], shards side by side); other tensors as GPU 0 holds them. */
  read(x: TensorParallelTensor): Float32Array {
    if (!this.vocabSharded.has(x.name)) return withDevice(this.ranks[0].deviceIndex, () => this.ranks[0].read(x.parts[0]));
    const shards = this.each((r, i) => r.read(x.parts[i]));
    const S = x.cols;
    const V = S * shards.length;
    const out = new Float32Array(x.rows * V);
    shards.forEach((shard, g) => {
      for (let row = 0; row < x.rows; row++) out.set(shard.subarray(row * S, (row + 1) * S), row * V + g * S);
    });
    return out;
  }

  /** Each row's argmax over the whole vocabulary: every GPU's best (value, global index), ties to the lowest index. */
  argmax(x: TensorParallelTensor): Int32Array {
    if (!this.vocabSharded.has(x.name)) return withDevice(this.ranks[0].deviceIndex, () => this.ranks[0].argmax(x.parts[0]));
    const best = this.each((r, i) => r.argmaxWithValues(x.parts[i]));
    const out = new Int32Array(x.rows);
    for (let row = 0; row < x.rows; row++) out[row] = combineArgmax(best.map((b, g) => ({ value: b.values[row], index: g * x.cols + b.indices[row] })));
    return out;
  }

  replayable<R>(key: string, fn: () => R): R {
    // A tensor that moved on any GPU invalidates every recording.
    const generations = this.ranks.map((r) => r.tensorGeneration).join(",");
    if (generations !== this.generations) {
      this.dropGraphs();
      this.generations = generations;
    }
    const recorded = this.graphs.get(key);
    if (recorded) {
      this.launch(recorded.graph);
      return recorded.result as R;
    }
    if (!this.warmed.has(key) || this.graphsOff) {
      // First run for real: allocates what the step needs (NCCL's buffers too), so recording allocates nothing.
      const result = fn();
      this.warmed.add(key);
      return result;
    }
    // One graph spanning every GPU (collectives over several devices cannot be recorded per device):
    // the other GPUs' streams join rank 0's capture through an event and rejoin it at the end.
    const [first, ...others] = this.ranks;
    withDevice(first.deviceIndex, () => {
      first.beginCapture();
      this.events[0].record(first.computeStream);
    });
    this.each((r, i) => i > 0 && r.computeStream.waitEvent(this.events[0]));
    let result: R | undefined;
    let failure: unknown;
    try {
      result = fn();
    } catch (e) {
      failure = e;
    }
    let graph: CudaGraph | undefined;
    try {
      others.forEach((r, i) => withDevice(r.deviceIndex, () => this.events[i + 1].record(r.computeStream)));
      withDevice(first.deviceIndex, () => others.forEach((_, i) => first.computeStream.waitEvent(this.events[i + 1])));
    } catch (e) {
      failure ??= e;
    }
    try {
      graph = withDevice(first.deviceIndex, () => first.endCapture());
    } catch (e) {
      failure ??= e;
    }
    if (failure !== undefined) {
      graph?.dispose();
      if (!(failure instanceof CudaError)) throw failure;
      // Recording collectives failed (NCCL or driver too old for it): run every step as issued.
      this.graphsOff = `recording failed: ${(failure as Error).message}`;
      process.stderr.write(`df11: tensor-parallel steps run without CUDA graphs (${this.graphsOff})\n`);
      return fn();
    }
    this.graphs.set(key, { graph: graph!, result });
    this.launch(graph!);
    return result as R;
  }

  /**
   * Replay a recorded step on rank 0's stream, after the work queued on every GPU's stream (the step's
   * inputs), and make every stream's later work wait for it.
   */
  private launch(graph: CudaGraph): void {
    const [first, ...others] = this.ranks;
    others.forEach((r, i) => withDevice(r.deviceIndex, () => this.events[i + 1].record(r.computeStream)));
    withDevice(first.deviceIndex, () => {
      others.forEach((_, i) => first.computeStream.waitEvent(this.events[i + 1]));
      graph.launch(first.computeStream);
      this.events[0].record(first.computeStream);
    });
    this.each((r, i) => i > 0 && r.computeStream.waitEvent(this.events[0]));
  }

  private dropGraphs(): void {
    for (const g of this.graphs.values()) withDevice(this.ranks[0].deviceIndex, () => g.graph.dispose());
    this.graphs.clear();
    this.warmed.clear();
  }

  releaseSlot(slot: number): void {
    this.each((r) => r.releaseSlot(slot));
  }

  /** Device memory df11 holds, summed over the GPUs, and each GPU's share. */
  memory(): BackendMemory {
    const per = this.ranks.map((r) => ({ device: r.deviceIndex, ...r.memory() }));
    return {
      measure: "device-allocated",
      inUseBytes: per.reduce((n, d) => n + d.inUseBytes, 0),
      peakBytes: per.reduce((n, d) => n + d.peakBytes, 0),
      devices: per.map(({ device, inUseBytes, peakBytes }) => ({ device, inUseBytes, peakBytes })),
    };
  }

  /** What the backend runs with (rank 0's engine; the GPUs, NCCL version and whether steps replay as graphs). */
  get engineConfig(): TensorParallelEngineConfig {
    return { ...this.ranks[0].engineConfig, tensorParallel: { devices: this.devices, nccl: this.clique.version, graphs: this.graphsOff ?? true } };
  }

  /** Wait for every GPU to finish the work queued so far. */
  synchronize(): void {
    this.each((r) => r.synchronize());
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    try {
      this.synchronize();
    } catch {
      // already failed: free what we can
    }
    // NCCL's destroy waits for the graphs that recorded its collectives: they go first.
    this.dropGraphs();
    this.each((r, i) => {
      this.events[i].dispose();
      r.dispose();
    });
    this.clique.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
