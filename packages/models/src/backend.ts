import type { TextModelConfig } from "./config.js";

/**
 * The rows of one forward step. Each row is one token of one sequence: the sequence's KV-cache slot and
 * the token's position in it. Prefill is many rows of one slot; batched decoding is one row per slot.
 */
export interface StepRows {
  readonly tokens: Int32Array;
  readonly positions: Int32Array;
  readonly slots: Int32Array;
  /** Rows whose logits the step produces (e.g. the last row of each sequence). */
  readonly outputRows: Int32Array;
}

/** A step's rows without their tokens: a step whose tokens the device already holds (Backend.setStepFromArgmax). */
export type StepPlan = Omit<StepRows, "tokens">;

/**
 * Each row's argmax, queued on the backend without waiting for it (Backend.argmaxAsync): the indices
 * reach the host when the step is done.
 */
export interface PendingArgmax {
  /** Rows (the argmax'ed tensor's rows). */
  readonly rows: number;
  /** The indices, one per row; waits for the device on the first call, then returns the same array. */
  read(): Int32Array;
}

/** A weight matrix a linear layer uses: its tensor name, its rows (output features) and optional bias. */
export interface LinearWeight {
  readonly name: string;
  readonly rows: number;
  readonly bias?: string;
}

/** An activation tensor of a backend: [rows, cols] float32. */
export interface BackendTensor {
  readonly rows: number;
  readonly cols: number;
}

/** What a caller may know about a backend's weights. */
export interface WeightsInfo {
  /** The checkpoint's format. */
  readonly kind: "bf16" | "df11";
  /** Bytes of weights held resident (on the device for GPU backends). */
  readonly residentBytes: number;
  /**
   * How the weights are held while running: `bf16` (plain), `huffman` (DF11 modules as stored, decoded
   * before use — the CPU backend's way with DF11), or `fused` (the GPU's DF11 fused layout, decoded in
   * the matrix kernels). Absent: as `kind` says.
   */
  readonly layout?: "bf16" | "huffman" | "fused";
  /** The fused layout's cost, when it is used: escapes, bits per weight, ratio to BF16. */
  readonly fused?: FusedLayoutReport;
  /**
   * CPU offload, when the GPU holds only part of the weights (`maxGpuMemory`): the decoder layers kept
   * in pinned host memory and copied into device slots just ahead of use. `residentBytes` counts the
   * slots, not the offloaded layers.
   */
  readonly offload?: OffloadReport;
}

/** Decoder layers a GPU backend keeps in pinned host memory (CPU offload). */
export interface OffloadReport {
  /** Indices of the offloaded decoder layers (their matrices; norms stay on the device). */
  readonly layers: readonly number[];
  /** Bytes of pinned host memory holding them (in the layout the GPU runs: fused or BF16). */
  readonly hostBytes: number;
  /** Bytes of device memory of the slots they are copied into (two, double-buffered; one for one layer). */
  readonly slotBytes: number;
}

/** What the GPU's DF11 fused layout costs, for reports (`df11 generate --json`, /health, the GPU bench). */
export interface FusedLayoutReport {
  readonly matrices: number;
  readonly weights: number;
  readonly escapes: number;
  /** escapes / weights. */
  readonly escapeRate: number;
  /** Device bytes of the layout (blocks, tables, escape offsets and escapes). */
  readonly bytes: number;
  readonly bitsPerWeight: number;
  /** bytes / (weights · 2). */
  readonly ratioToBf16: number;
}

/**
 * Memory a backend holds, in bytes, as `df11 generate` reports it (the counterpart of DFloat11's
 * `torch.cuda.memory_allocated()` / `max_memory_allocated()`).
 */
export interface BackendMemory {
  /**
   * What is counted. `device-allocated`: the bytes of device memory the backend has allocated (weights,
   * KV cache, activations, scratch; not the CUDA context). `process-rss`: the resident set of the whole
   * process (a CPU backend's weights, KV cache and activations live in it).
   */
  readonly measure: "device-allocated" | "process-rss";
  /** Bytes in use now. */
  readonly inUseBytes: number;
  /** Most bytes in use at once so far, loading included (device: since counting began; RSS: since the process started). */
  readonly peakBytes: number;
  /** Several GPUs (tensor parallelism): each one's share; the totals above are their sums. */
  readonly devices?: ReadonlyArray<{ readonly device: number; readonly inUseBytes: number; readonly peakBytes: number }>;
}

/**
 * The seam between the architecture (written once, in forward.ts) and the hardware that runs it. A
 * backend owns the weights, the KV cache and the activation tensors; the forward pass calls these ops
 * in order. Ops are asynchronous on GPU backends; `read` and `argmax` return host data.
 */
export interface Backend<T extends BackendTensor = BackendTensor> extends Disposable {
  readonly device: "cpu" | "cuda";
  readonly config: TextModelConfig;
  /**
   * Tensor-parallel backends: the shapes of one GPU's share (its attention heads, KV heads, intermediate
   * features and vocabulary shard; see `tensorParallelPlan`), which the forward pass sizes the step's
   * tensors by. Such a backend all-reduces the row-parallel outputs itself, and its `read`/`argmax` of the
   * logits answer for the whole vocabulary. Absent: `config`.
   */
  readonly shardConfig?: TextModelConfig;
  readonly weights: WeightsInfo;
  /** Most rows in one step (longer prompts are split into steps). */
  readonly maxRows: number;
  /** Positions each KV-cache slot holds. */
  readonly maxContext: number;
  /** Number of KV-cache slots (sequences decoded together). */
  readonly slots: number;
  has(name: string): boolean;
  /** The activation tensor `name` with `rows` rows of `cols`; the same name reuses its storage. */
  tensor(name: string, rows: number, cols: number): T;
  /** Set the step's inputs (validated by the caller). */
  setStep(step: StepRows): void;
  /** out[r] = embedding row of token r × scale. */
  embed(out: T, scale: number): void;
  /** out = RMSNorm(x) · weight per row (out may be x). */
  rmsNorm(x: T, weight: string, out: T): void;
  /** residual += RMSNorm(x) · weight (gemma's post-norms). */
  rmsNormAdd(x: T, weight: string, residual: T): void;
  /** out (+)= x · [W₁; W₂; …]ᵀ (+ biases): the weights' outputs side by side in out's columns. */
  linear(x: T, weights: readonly LinearWeight[], out: T, accumulate?: boolean): void;
  /** From qkv ([q heads | k heads | v heads] per row): q/k norms, RoPE, KV-cache write, attention → out. */
  attention(layer: number, qkv: T, out: T): void;
  /** out = act(gu[:, :I]) · gu[:, I:] */
  gatedActivation(gu: T, out: T): void;
  /** a += b */
  add(a: T, b: T): void;
  /** out[i] = x[step.outputRows[i]] */
  gatherOutputRows(x: T, out: T): void;
  /** x = tanh(x / cap) · cap */
  softcap(x: T, cap: number): void;
  /** The tensor's values on the host. */
  read(x: T): Float32Array;
  /** Index of the largest value of each row. */
  argmax(x: T): Int32Array;
  /**
   * Optional (pipelined greedy decoding): `argmax` without waiting — the indices are copied to the host
   * behind the step's work and stay on the device, where {@link setStepFromArgmax} can take them as the
   * next step's tokens before the host has seen them.
   */
  argmaxAsync?(x: T): PendingArgmax;
  /**
   * Optional, with `argmaxAsync`: set a step whose row r's token is row r of `previous`'s indices, taken
   * on the device. Returns false (and sets nothing) unless `previous` is this backend's latest argmax (no
   * `argmax`/`argmaxAsync` since) with one index per row of `step`; the caller then sets the step from
   * `previous.read()` instead.
   */
  setStepFromArgmax?(step: StepPlan, previous: PendingArgmax): boolean;
  /**
   * Run `fn` (a step's ops) and return its result. Backends that can record it (CUDA graphs) replay the
   * recording on later calls with the same key instead of issuing the ops again, returning the result
   * of the recorded run; `fn` must then depend only on the key.
   */
  replayable<R>(key: string, fn: () => R): R;
  /** Forget what a KV-cache slot holds (its sequence ended). */
  releaseSlot(slot: number): void;
  /**
   * Optional: called by the forward pass before each layer's first op (`layer` from 0), and once more
   * with `layer` = the model's layer count when the last layer's ops are queued. A backend that streams
   * weights per layer (CPU offload) fetches and releases them here; others need not implement it.
   */
  beginLayer?(layer: number): void;
  /** Memory in use and its peak; optional: a backend without it reports nothing (callers print "n/a"). */
  memory?(): BackendMemory;
  dispose(): void;
}
