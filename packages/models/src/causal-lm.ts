import type { Backend, BackendTensor, PendingArgmax, StepPlan, StepRows, WeightsInfo } from "./backend.js";
import type { TextModelConfig } from "./config.js";
import { CpuBackend } from "./cpu-backend.js";
import { WeightLayoutError } from "./errors.js";
import { forwardStep, requiredWeights } from "./forward.js";
import type { WeightStore } from "./weight-store.js";

export interface ForwardOptions {
  /** Return logits for every input position ([rows, vocab]) instead of only the last one. */
  readonly allLogits?: boolean;
  /** Called with the residual stream after each layer ([rows, hidden], a copy). */
  readonly onLayerOutput?: (layer: number, hidden: Float32Array) => void;
  /** The sequence (KV-cache slot) to extend; 0 by default. */
  readonly slot?: number;
}

/** One sequence's share of a batched step: its slot and the tokens to append to it. */
export interface SequenceInput {
  readonly slot: number;
  readonly tokens: readonly number[];
}

const isBackend = (x: WeightStore | Backend): x is Backend => "device" in x;

/**
 * The greedy tokens of a step's sequences, queued on the backend (CausalLM.greedyAsync): the next step
 * can take them on the device (CausalLM.stepGreedy) while the host has yet to read them.
 */
export interface PendingGreedy {
  /** The step's sequences (KV-cache slots), in the order of its output rows. */
  readonly slots: readonly number[];
  /** Each sequence's greedy token (in `slots` order); waits for the device on the first call. */
  read(): Int32Array;
}

/** PendingGreedy as CausalLM makes it: the backend's pending argmax, when the backend queued one. */
class GreedyTokens implements PendingGreedy {
  constructor(
    readonly slots: readonly number[],
    private readonly indices: PendingArgmax | Int32Array,
  ) {}
  get argmax(): PendingArgmax | undefined {
    return this.indices instanceof Int32Array ? undefined : this.indices;
  }
  read(): Int32Array {
    return this.indices instanceof Int32Array ? this.indices : this.indices.read();
  }
}

/**
 * A decoder-only transformer (llama, mistral, qwen2/3, gemma2/3, phi3) with a KV cache per sequence,
 * running on a {@link Backend}: the CPU (given a WeightStore) or a GPU backend from @df11/cuda-kernel.
 * BF16 and DF11 weights give bit-identical logits on the same backend.
 */
export class CausalLM implements Disposable {
  readonly backend: Backend;
  private readonly lengths = new Map<number, number>();
  /** The logits tensor of the latest `step` and its sequences' slots (in output-row order); what greedyAsync may take. */
  private latestStep: { logits: BackendTensor; slots: readonly number[] } | undefined;

  constructor(
    readonly config: TextModelConfig,
    weightsOrBackend: WeightStore | Backend,
  ) {
    this.backend = isBackend(weightsOrBackend) ? weightsOrBackend : new CpuBackend(config, weightsOrBackend);
    const missing = requiredWeights(this.backend).find((n) => !this.backend.has(n));
    if (missing) throw new WeightLayoutError(missing, "missing from the checkpoint (the config.json requires it)");
  }

  /** The weights: kind (bf16/df11) and resident bytes. On the CPU, the WeightStore itself. */
  get weights(): WeightsInfo {
    return this.backend.weights;
  }

  get device(): "cpu" | "cuda" {
    return this.backend.device;
  }

  /** Positions a sequence may hold. */
  get maxContext(): number {
    return this.backend.maxContext;
  }

  /** Positions cached for a sequence (slot). */
  length(slot = 0): number {
    return this.lengths.get(slot) ?? 0;
  }

  /**
   * Throws RangeError unless `slot` is a KV-cache slot of the backend: an integer in 0 … slots − 1 (and an
   * Int32, as steps carry it; 2^32 or 0.5 would otherwise land in slot 0's cache).
   */
  private checkSlot(slot: number): void {
    const slots = Math.min(this.backend.slots, 2 ** 31);
    if (!Number.isInteger(slot) || slot < 0 || slot >= slots) throw new RangeError(`slot ${slot} is not a KV-cache slot of this model (0…${slots - 1})`);
  }

  /** Throws RangeError for an id outside the vocabulary. */
  checkTokenIds(ids: ArrayLike<number>): void {
    const vocab = this.config.vocabSize;
    for (let i = 0; i < ids.length; i++) {
      if (!Number.isInteger(ids[i]) || ids[i] < 0 || ids[i] >= vocab) throw new RangeError(`token id ${ids[i]} is outside the vocabulary (0…${vocab - 1})`);
    }
  }

  /**
   * Run `ids` through the model at the sequence's next positions, append them to its KV cache and
   * return the logits of the last position (or of all, with `allLogits`). Long inputs run in steps of
   * at most `backend.maxRows` rows.
   */
  forward(ids: ArrayLike<number>, options: ForwardOptions = {}): Float32Array {
    const vocab = this.config.vocabSize;
    const out = new Float32Array((options.allLogits ? ids.length : 1) * vocab);
    this.extend(ids, options, (logits, done) => out.set(this.backend.read(logits), options.allLogits ? done * vocab : 0));
    return out;
  }

  /**
   * Like `forward(ids, { allLogits: true })`, but hands each step's logits ([rows, vocab], host copies)
   * to `visit` instead of holding all positions' logits at once (prompt scoring). Returns the last row's.
   */
  forwardRows(ids: ArrayLike<number>, visit: (logits: Float32Array, firstRow: number) => void, slot = 0): Float32Array {
    const vocab = this.config.vocabSize;
    let last = new Float32Array(0);
    this.extend(ids, { allLogits: true, slot }, (tensor, firstRow) => {
      const logits = this.backend.read(tensor);
      visit(logits, firstRow);
      last = logits.slice(logits.length - vocab);
    });
    return last;
  }

  /** Greedy next token after `ids` (appended to the sequence), chosen on the backend: no logits copied to the host. */
  forwardGreedy(ids: ArrayLike<number>, slot = 0): number {
    return this.backend.argmax(this.extend(ids, { slot }))[0];
  }

  /** Append ids to a sequence in steps of at most maxRows rows; returns the last step's logits tensor. */
  private extend(ids: ArrayLike<number>, options: ForwardOptions, onLogits?: (logits: BackendTensor, firstRow: number) => void): BackendTensor {
    if (ids.length === 0) throw new RangeError("forward() needs at least one token");
    this.checkTokenIds(ids);
    const slot = options.slot ?? 0;
    this.checkSlot(slot);
    const start = this.length(slot);
    if (start + ids.length > this.maxContext) {
      throw new RangeError(`the sequence would hold ${start + ids.length} positions; this model was loaded for at most ${this.maxContext} (maxContext)`);
    }
    let logits: BackendTensor | undefined;
    for (let done = 0; done < ids.length; ) {
      const rows = Math.min(this.backend.maxRows, ids.length - done);
      const last = done + rows === ids.length;
      const outputRows = options.allLogits ? Int32Array.from({ length: rows }, (_, i) => i) : last ? Int32Array.of(rows - 1) : new Int32Array(0);
      const step: StepRows = {
        tokens: Int32Array.from({ length: rows }, (_, i) => ids[done + i]),
        positions: Int32Array.from({ length: rows }, (_, i) => start + done + i),
        slots: new Int32Array(rows).fill(slot),
        outputRows,
      };
      logits = this.runStep(step, options);
      if (outputRows.length > 0) onLogits?.(logits, done);
      done += rows;
    }
    this.lengths.set(slot, start + ids.length);
    return logits!;
  }

  /**
   * One step over several sequences at once (continuous batching): each appends its tokens; returns the
   * logits tensor of each sequence's last token, [sequences, vocab], on the backend. The rows of all
   * sequences must fit in `backend.maxRows`.
   */
  step(sequences: readonly SequenceInput[], options: Pick<ForwardOptions, "onLayerOutput"> = {}): BackendTensor {
    const rows = sequences.reduce((n, s) => n + s.tokens.length, 0);
    if (rows === 0 || rows > this.backend.maxRows) throw new RangeError(`a step takes 1…${this.backend.maxRows} rows, got ${rows}`);
    const tokens = new Int32Array(rows);
    const positions = new Int32Array(rows);
    const slots = new Int32Array(rows);
    const outputRows = new Int32Array(sequences.length);
    let r = 0;
    const seen = new Set<number>();
    sequences.forEach((s, i) => {
      this.checkSlot(s.slot);
      // Two entries of one slot would both write from its current length: one position, two tokens.
      if (seen.has(s.slot)) throw new RangeError(`slot ${s.slot} appears twice in one step (give a sequence's tokens as one entry)`);
      seen.add(s.slot);
      if (s.tokens.length === 0) throw new RangeError(`sequence ${s.slot} has no tokens in this step`);
      this.checkTokenIds(s.tokens);
      const start = this.length(s.slot);
      if (start + s.tokens.length > this.maxContext) throw new RangeError(`sequence ${s.slot} would exceed maxContext ${this.maxContext}`);
      s.tokens.forEach((t, j) => {
        tokens[r] = t;
        positions[r] = start + j;
        slots[r++] = s.slot;
      });
      outputRows[i] = r - 1;
    });
    const logits = this.runStep({ tokens, positions, slots, outputRows }, options);
    for (const s of sequences) this.lengths.set(s.slot, this.length(s.slot) + s.tokens.length);
    this.latestStep = { logits, slots: sequences.map((s) => s.slot) };
    return logits;
  }

  /**
   * Each sequence's greedy token from the latest `step`'s (or `stepGreedy`'s) logits, queued on the
   * backend without waiting for it: hand the result to {@link stepGreedy} to run the next step before the
   * host reads the tokens, and do the host's work on them (streaming them out, stop checks) while that
   * step runs — pipelined greedy decoding. Backends without a queued argmax (the tensor-parallel one)
   * answer at once.
   * @throws RangeError unless `logits` is the latest step's logits tensor.
   */
  greedyAsync(logits: BackendTensor): PendingGreedy {
    const latest = this.latestStep;
    if (!latest || latest.logits !== logits) throw new RangeError("greedyAsync takes the logits of the latest step()");
    return new GreedyTokens(latest.slots, this.backend.argmaxAsync ? this.backend.argmaxAsync(logits) : this.backend.argmax(logits));
  }

  /**
   * One decode step of `previous`'s sequences, each appending its greedy token from `previous` — taken on
   * the device when the backend can (the step is queued before the host has the tokens), else from
   * `previous.read()`. Same logits as `step` with those tokens (the same kernels, bit for bit). Returns
   * the logits tensor ([sequences, vocab], on the backend).
   * @throws RangeError when a sequence's KV cache is full (maxContext) or `previous` came from elsewhere.
   */
  stepGreedy(previous: PendingGreedy): BackendTensor {
    if (!(previous instanceof GreedyTokens)) throw new RangeError("stepGreedy takes what greedyAsync returned");
    const n = previous.slots.length;
    if (n > this.backend.maxRows) throw new RangeError(`a step takes 1…${this.backend.maxRows} rows, got ${n}`);
    const plan: StepPlan = {
      positions: new Int32Array(n),
      slots: Int32Array.from(previous.slots),
      outputRows: Int32Array.from({ length: n }, (_, i) => i),
    };
    previous.slots.forEach((slot, i) => {
      const start = this.length(slot);
      if (start + 1 > this.maxContext) throw new RangeError(`sequence ${slot} would exceed maxContext ${this.maxContext}`);
      plan.positions[i] = start;
    });
    const argmax = previous.argmax;
    const logits = argmax && this.backend.setStepFromArgmax?.(plan, argmax) ? this.runSetStep(n, n, {}) : this.runStep({ ...plan, tokens: Int32Array.from(previous.read()) }, {});
    for (const slot of previous.slots) this.lengths.set(slot, this.length(slot) + 1);
    this.latestStep = { logits, slots: previous.slots };
    return logits;
  }

  /** Run one step; decode steps without hooks are replayable (CUDA graphs on the GPU). */
  private runStep(step: StepRows, options: Pick<ForwardOptions, "onLayerOutput">): BackendTensor {
    this.backend.setStep(step);
    return this.runSetStep(step.tokens.length, step.outputRows.length, options);
  }

  /** Run the step the backend was set to (rows, output rows). */
  private runSetStep(rows: number, outRows: number, options: Pick<ForwardOptions, "onLayerOutput">): BackendTensor {
    this.latestStep = undefined;
    const run = () => forwardStep(this.backend, rows, outRows, options);
    // One-token-per-sequence steps (decoding, batches up to 16) are replayable: CUDA graphs on the GPU.
    return !options.onLayerOutput && rows === outRows && rows <= 16 ? this.backend.replayable(`decode:${rows}`, run) : run();
  }

  /**
   * Keep only the first `length` cached positions of a sequence (slot): its next step continues at
   * position `length`, overwriting the KV cache from there — to retry from an earlier point, or drop
   * tokens a caller rejected (e.g. a speculative draft). The steps that follow attend only to the kept
   * positions: on the CPU their logits are bit for bit those of a sequence that never held the dropped
   * ones; on a GPU, up to the kept positions' keys and values having been computed by the step that wrote
   * them (a longer prefill may have taken another matrix kernel).
   * @throws RangeError when `slot` is not a KV-cache slot, or `length` not an integer in 0 … length(slot).
   */
  truncate(slot: number, length: number): void {
    this.checkSlot(slot);
    const now = this.length(slot);
    if (!Number.isInteger(length) || length < 0 || length > now) throw new RangeError(`cannot truncate sequence ${slot} to ${length} positions: it holds ${now}`);
    if (length === 0) this.reset(slot);
    else this.lengths.set(slot, length);
  }

  /** Forget a sequence's cached positions (start it anew). */
  reset(slot = 0): void {
    this.lengths.delete(slot);
    this.backend.releaseSlot(slot);
  }

  dispose(): void {
    this.lengths.clear();
    this.backend.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
