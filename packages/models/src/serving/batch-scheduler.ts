import type { CausalLM, PendingGreedy } from "../causal-lm.js";
import { checkPromptFits, ModelsError } from "../errors.js";
import { scorePrompt } from "../generate.js";
import type { TokenLogprob } from "../logprobs.js";
import { SequenceState, type GeneratedToken, type SequenceOptions, type StopReason } from "../sequence.js";
import type { TextTokenizer } from "../tokenizer.js";
import { TokenStream } from "./token-stream.js";

/** A generation request, as the scheduler takes it (the scheduler's tokenizer makes the text). */
export interface BatchRequest extends Omit<SequenceOptions, "tokenizer"> {
  readonly prompt: readonly number[];
  /** Ids that end the sequence (default: the model's end-of-sequence ids). */
  readonly stopTokenIds?: readonly number[];
  /** Also score the prompt: each prompt token's log-probability with this many alternatives (0…20). */
  readonly promptLogprobs?: number;
  /** Aborting frees the request's slot at the next token boundary. */
  readonly signal?: AbortSignal;
}

/** The queue is full: try later (HTTP 503). */
export class QueueFullError extends ModelsError {
  override name = "QueueFullError";
}

/** How a sequence ended. */
export type FinishReason = StopReason | "aborted";

/** A submitted request's tokens, as they come; the last one carries `stop`. */
export class SequenceStream extends TokenStream<GeneratedToken> {
  /** The prompt's log-probabilities (first entry null), once prefilled, when the request asked for them. */
  promptLogprobs: Array<TokenLogprob | null> | undefined;
  /** How the sequence ended, once it has. */
  finishReason: FinishReason | undefined;
}

interface Sequence {
  readonly request: BatchRequest;
  readonly stream: SequenceStream;
  readonly state: SequenceState;
  slot: number;
  done: boolean;
  /** performance.now() at submit: the gather window counts from the oldest waiting request. */
  readonly submitted: number;
}

export interface BatchSchedulerOptions {
  /** Sequences decoded together (≤ the backend's slots). */
  readonly maxBatch?: number;
  /** Requests that may wait for a slot before submit() refuses with QueueFullError. Default 4 × maxBatch. */
  readonly maxQueue?: number;
  readonly tokenizer?: TextTokenizer;
  /**
   * Prefill the prompts of requests admitted together in shared steps of up to the backend's `maxRows`
   * rows, instead of one prompt per step: fewer, larger matrix products — and on the GPU with DF11 weights
   * in the fused layout, one unpacking of the weights per step rather than per prompt (serving throughput).
   * A prompt's logits can then differ from its solo prefill in the last bits (the GEMM's K split depends on
   * a step's rows; a step of several sequences takes the per-row attention kernel), so its greedy tokens may
   * part from a solo run's at near ties. Decode steps are unaffected: a sequence decoded in a batch gets its
   * solo logits either way. Prompts longer than `maxRows`, or that ask for prompt log-probabilities, are
   * prefilled alone. Default false (`df11 serve` turns it on; `--no-shared-prefill` turns it off).
   */
  readonly sharedPrefill?: boolean;
  /**
   * With `sharedPrefill`: before admitting waiting requests, keep yielding the event loop while more
   * requests arrive — until 1 ms and {@link GATHER_QUIET_TURNS} event-loop turns pass without one, the
   * oldest waiting request has waited this many milliseconds, or the free slots are spoken for — so that
   * a burst (say 16 HTTP requests whose bodies are still being read) is prefilled in as few shared steps
   * as possible instead of a step per straggler. Each prefill step reads all the weights (and with DF11 in the fused layout decodes them
   * for the GEMM), so this is where shared prefill pays. It adds at most this much time-to-first-token;
   * while sequences are running it waits at most 1 ms (they wait too), and not at all when no waiting
   * request can share a step. Default 0 (`df11 serve`: 5).
   */
  readonly prefillGatherMs?: number;
  /**
   * Pipelined greedy decoding: while every running sequence decodes greedily (no logits needed on the
   * host: no sampling, logprobs or constraint), each decode step is queued before the previous step's
   * tokens are read back — its input tokens taken on the device (CausalLM.stepGreedy) — so the host's work
   * per token (streaming it out, stop checks, HTTP) and the event loop's turn overlap the GPU's step
   * instead of following it. The tokens are the same; a step whose sequences change (one stops, one
   * joins) waits for the step before. Default true.
   */
  readonly pipelineGreedy?: boolean;
}

/**
 * Event-loop turns without a new request that, with 1 ms, end a gather window early
 * (BatchSchedulerOptions.prefillGatherMs). Requests arrive as the event loop reads their sockets, turn
 * by turn: on an idle host a turn takes tens of microseconds and 1 ms decides, but on a loaded one a
 * single turn can take milliseconds (the process descheduled, a GC pause) while nothing could arrive,
 * and 1 ms alone would end the window in the middle of a burst. Counting turns too, the quiet period is
 * one the process was awake to see requests in; the window's own limit still bounds the wait.
 */
export const GATHER_QUIET_TURNS = 8;

/** Whether `ms` is a gather window BatchSchedulerOptions.prefillGatherMs takes: a finite number ≥ 0. */
export function isPrefillGatherMs(ms: number): boolean {
  return Number.isFinite(ms) && ms >= 0;
}

/**
 * Continuous batching: requests join the running batch at token boundaries (their prompt prefilled in
 * a slot of their own, alone or — with `sharedPrefill` — in steps shared with the prompts admitted
 * with it), every step advances all running sequences in one forward pass (so a DF11
 * module is decoded once for the whole batch), and a sequence leaves — freeing its slot — as soon as it
 * stops (EOS, stop string, max tokens, end of context) or its signal aborts.
 */
export class BatchScheduler implements Disposable {
  private readonly maxBatch: number;
  private readonly maxQueue: number;
  private readonly freeSlots: number[];
  private readonly queue: Sequence[] = [];
  private readonly running: Sequence[] = [];
  private looping = false;
  private closed = false;
  /**
   * Since creation: tokens generated, decode steps run (`pipelinedSteps` of them taking the previous
   * step's tokens as pipelineGreedy says — queued before those are read, except on a backend without
   * argmaxAsync (tensor parallel), which reads them at once; one queued behind tokens that turn out to
   * end every sequence in it counts too), prefills run (`prefillSteps`: a prompt alone — however many steps
   * its length takes — or the prompts sharing one step), requests taken, and the seconds spent admitting
   * requests (their prefills) and in decode steps. An unpipelined decode step ends with its tokens on the
   * host, so its device work is included; a pipelined one runs on while the event loop turns between
   * steps, which neither counts, and a prefill admitted while it runs waits for it in `prefillSeconds`.
   */
  readonly stats = { steps: 0, pipelinedSteps: 0, prefillSteps: 0, tokens: 0, requests: 0, prefillSeconds: 0, decodeSeconds: 0 };
  /**
   * The decode step queued last whose tokens the host has not read yet (pipelined greedy decoding): its
   * sequences in output-row order, their greedy tokens, and each one's KV-cache length after the step.
   */
  private inFlight: { batch: Sequence[]; tokens: PendingGreedy; lengths: number[] } | undefined;

  constructor(
    readonly model: CausalLM,
    private readonly options: BatchSchedulerOptions = {},
  ) {
    this.maxBatch = Math.min(options.maxBatch ?? model.backend.slots, model.backend.slots, model.backend.maxRows);
    if (!(this.maxBatch >= 1)) throw new RangeError("maxBatch must be ≥ 1");
    this.maxQueue = options.maxQueue ?? 4 * this.maxBatch;
    if (options.prefillGatherMs !== undefined && !isPrefillGatherMs(options.prefillGatherMs)) throw new RangeError("prefillGatherMs must be a finite number ≥ 0");
    this.freeSlots = Array.from({ length: this.maxBatch }, (_, i) => this.maxBatch - 1 - i);
  }

  /** Sequences being decoded now. */
  get active(): number {
    return this.running.length;
  }

  /** Requests waiting for a slot. */
  get queued(): number {
    return this.queue.length;
  }

  /**
   * Queue a request; its tokens stream from the returned iterator (the last one carries `stop`).
   * Throws {@link QueueFullError} when maxQueue requests already wait, {@link ContextLengthError} for a prompt
   * that does not leave room in the context (one that fills it may only be read: `maxTokens` 0).
   */
  submit(request: BatchRequest): SequenceStream {
    if (this.closed) throw new ModelsError("the scheduler is closed");
    if (request.prompt.length === 0) throw new RangeError("the prompt has no tokens");
    checkPromptFits(request.prompt.length, this.model.maxContext, request.maxTokens);
    this.model.checkTokenIds(request.prompt);
    if (this.queue.length >= this.maxQueue && this.freeSlots.length === 0) throw new QueueFullError(`${this.queue.length} requests are already waiting (the queue holds ${this.maxQueue})`);
    const stream = new SequenceStream();
    const state = new SequenceState(request.prompt, {
      ...request,
      tokenizer: this.options.tokenizer,
      stopTokenIds: request.stopTokenIds ?? this.model.config.eosTokenIds,
    });
    const seq: Sequence = { request, stream, state, slot: -1, done: false, submitted: performance.now() };
    stream.onReturn = () => this.finish(seq, "aborted");
    request.signal?.addEventListener("abort", () => this.finish(seq, "aborted"), { once: true });
    this.queue.push(seq);
    this.stats.requests++;
    // A signal aborted before the request came sends no abort event: end it now (nothing was started).
    if (request.signal?.aborted) this.finish(seq, "aborted");
    else this.kick();
    return stream;
  }

  private kick(): void {
    if (this.looping) return;
    this.looping = true;
    setImmediate(() => void this.loop());
  }

  private async loop(): Promise<void> {
    try {
      while (!this.closed && (this.queue.length > 0 || this.running.length > 0)) {
        await this.gather();
        const t0 = performance.now();
        this.admit();
        const t1 = performance.now();
        if (this.running.length > 0) this.decodeStep();
        this.stats.prefillSeconds += (t1 - t0) / 1000;
        this.stats.decodeSeconds += (performance.now() - t1) / 1000;
        // Token boundary: let clients read, new requests arrive, aborts land (while a pipelined step runs).
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      this.land(); // every sequence ended while a step was in flight (aborts): wait for it all the same
    } catch (e) {
      this.inFlight = undefined;
      for (const s of [...this.running, ...this.queue]) {
        s.done = true;
        s.stream.end(e);
        if (s.slot >= 0) this.model.reset(s.slot);
      }
      this.freeSlots.splice(0, this.freeSlots.length, ...Array.from({ length: this.maxBatch }, (_, i) => this.maxBatch - 1 - i));
      this.running.length = 0;
      this.queue.length = 0;
    } finally {
      this.looping = false;
    }
  }

  /**
   * Yield while requests keep arriving, before a shared prefill (see BatchSchedulerOptions.prefillGatherMs):
   * until 1 ms and GATHER_QUIET_TURNS turns pass without a new one, or the oldest waiting request has
   * waited the window — at most 1 ms while sequences are running (a decode step is itself a window, and
   * every running sequence would wait) — or the free slots are spoken for. Not at all when no waiting
   * request can share a step.
   */
  private async gather(): Promise<void> {
    const limit = this.options.prefillGatherMs ?? 0;
    if (!this.options.sharedPrefill || limit <= 0 || !this.queue.some((s) => this.canShare(s))) return;
    const window = this.running.length > 0 ? Math.min(1, limit) : limit;
    const quietMs = Math.min(1, limit);
    const oldest = this.queue[0].submitted;
    let last = this.queue[this.queue.length - 1].submitted;
    let seen = this.queue.length;
    let quietTurns = 0;
    while (!this.closed && this.queue.length > 0 && this.queue.length < this.freeSlots.length) {
      const now = performance.now();
      if (now - oldest >= window || (now - last >= quietMs && quietTurns >= GATHER_QUIET_TURNS)) break;
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (this.queue.length > seen) {
        last = performance.now();
        quietTurns = 0;
      } else quietTurns++;
      seen = this.queue.length;
    }
  }

  /** Whether a request's prompt can be prefilled in a step shared with others. */
  private canShare(seq: Sequence): boolean {
    return !!this.options.sharedPrefill && seq.request.promptLogprobs === undefined && seq.state.maxTokens > 0 && seq.request.prompt.length <= this.model.backend.maxRows;
  }

  /** Move waiting requests into free slots: prefill each (alone, or in shared steps), emit its first token. */
  private admit(): void {
    const shared: Sequence[] = [];
    while (this.queue.length > 0 && this.freeSlots.length > 0) {
      const seq = this.queue.shift()!;
      if (seq.done) continue;
      seq.slot = this.freeSlots.pop()!;
      this.model.reset(seq.slot);
      this.running.push(seq);
      const { prompt, promptLogprobs } = seq.request;
      if (this.canShare(seq)) {
        shared.push(seq);
        continue;
      }
      const { state } = seq;
      this.stats.prefillSteps++;
      if (promptLogprobs !== undefined) {
        const scored = scorePrompt(this.model, prompt, promptLogprobs, seq.slot);
        seq.stream.promptLogprobs = scored.promptLogprobs;
        if (state.maxTokens > 0) this.emit(seq, () => state.choose(scored.logits));
      } else if (state.maxTokens === 0) this.model.forward(prompt, { slot: seq.slot }); // nothing to generate; the prompt is still read
      else if (!state.needsLogits) {
        const id = this.model.forwardGreedy(prompt, seq.slot);
        this.emit(seq, () => state.choose(undefined, id));
      } else {
        const logits = this.model.forward(prompt, { slot: seq.slot });
        this.emit(seq, () => state.choose(logits));
      }
      if (state.maxTokens === 0) this.finish(seq, "max-tokens");
    }
    this.prefillShared(shared);
  }

  /** Prefill sequences' whole prompts in steps of up to maxRows rows (see {@link BatchSchedulerOptions.sharedPrefill}). */
  private prefillShared(sequences: readonly Sequence[]): void {
    const maxRows = this.model.backend.maxRows;
    for (let i = 0; i < sequences.length; ) {
      const group: Sequence[] = [];
      let rows = 0;
      while (i < sequences.length && (group.length === 0 || rows + sequences[i].request.prompt.length <= maxRows)) {
        rows += sequences[i].request.prompt.length;
        group.push(sequences[i++]);
      }
      const live = group.filter((s) => !s.done);
      if (live.length === 0) continue;
      const logits = this.model.step(live.map((s) => ({ slot: s.slot, tokens: s.request.prompt })));
      this.stats.prefillSteps++;
      this.chooseFrom(live, logits);
    }
  }

  /** Each sequence's next token from its row of a step's logits ([sequences, vocab] on the backend). */
  private chooseFrom(batch: readonly Sequence[], logits: ReturnType<CausalLM["step"]>): void {
    const greedy = this.model.backend.argmax(logits);
    const vocab = this.model.config.vocabSize;
    const all = batch.some((s) => s.state.needsLogits) ? this.model.backend.read(logits) : undefined;
    batch.forEach((s, i) => this.emit(s, () => (s.state.needsLogits ? s.state.choose(all!.subarray(i * vocab, (i + 1) * vocab)) : s.state.choose(undefined, greedy[i]))));
  }

  /**
   * One forward pass over every running sequence's last token. Pipelined (BatchSchedulerOptions.pipelineGreedy):
   * when the running sequences are the in-flight step's and all continue greedily, the next step is queued
   * first, taking the in-flight step's tokens on the device, and those tokens are then read and emitted
   * while it runs; otherwise the in-flight step lands first and the step starts from the host's tokens.
   */
  private decodeStep(): void {
    const flight = this.inFlight;
    const batch = this.running.filter((s) => !s.done);
    if (flight && this.canChain(flight, batch)) {
      this.fly(batch, this.model.stepGreedy(flight.tokens));
      this.stats.steps++;
      this.stats.pipelinedSteps++;
      this.emitGreedy(flight);
      return;
    }
    this.land();
    const live = this.running.filter((s) => !s.done);
    if (live.length === 0) return;
    const logits = this.model.step(live.map((s) => ({ slot: s.slot, tokens: [s.state.context[s.state.context.length - 1]] })));
    this.stats.steps++;
    if (this.options.pipelineGreedy !== false && live.every((s) => !s.state.needsLogits)) this.fly(live, logits);
    else this.chooseFrom(live, logits);
  }

  /** Leave a step's greedy tokens on the device, in flight: read and emitted after the next step is queued (or by land). */
  private fly(batch: Sequence[], logits: ReturnType<CausalLM["step"]>): void {
    this.inFlight = { batch, tokens: this.model.greedyAsync(logits), lengths: batch.map((s) => this.model.length(s.slot)) };
  }

  /**
   * Whether the next step can take the in-flight step's tokens on the device: the same sequences in the
   * same order, none of which stops at the in-flight token for a reason known now (its last token, or the
   * end of its KV cache: that step would be wasted) and all greedy.
   */
  private canChain(flight: NonNullable<typeof this.inFlight>, batch: readonly Sequence[]): boolean {
    if (batch.length !== flight.batch.length || !batch.every((s, i) => s === flight.batch[i])) return false;
    return batch.every((s) => !s.state.needsLogits && s.state.generated.length + 1 < s.state.maxTokens && this.model.length(s.slot) < this.model.maxContext);
  }

  /** Wait for the in-flight step's tokens, if any, and emit them. */
  private land(): void {
    const flight = this.inFlight;
    this.inFlight = undefined;
    if (flight) this.emitGreedy(flight);
  }

  /** Emit a pipelined step's tokens to its sequences that have not ended since (waits for the step). */
  private emitGreedy(flight: NonNullable<typeof this.inFlight>): void {
    const ids = flight.tokens.read();
    flight.batch.forEach((s, i) => this.emit(s, () => s.state.choose(undefined, ids[i]), flight.lengths[i]));
  }

  /**
   * Choose and record a sequence's next token; an error there (e.g. a constraint no token can meet) ends
   * that sequence only. `length`: the sequence's KV-cache length after the step the token comes from
   * (default: now; a pipelined step's tokens are emitted after the next step has been queued).
   */
  private emit(seq: Sequence, choose: () => ReturnType<SequenceState["choose"]>, length = this.model.length(seq.slot)): void {
    if (seq.done) return;
    let token: GeneratedToken;
    try {
      token = seq.state.accept(choose(), length >= this.model.maxContext);
    } catch (e) {
      this.finish(seq, "aborted", e);
      return;
    }
    this.stats.tokens++;
    seq.stream.push(token);
    if (token.stop) this.finish(seq, token.stop);
  }

  /** End a sequence and free its slot at once (the last token already carries why, if it stopped; an error goes to its reader). */
  private finish(seq: Sequence, reason: FinishReason, error?: unknown): void {
    if (seq.done) return;
    seq.done = true;
    seq.stream.finishReason = reason;
    seq.stream.end(error);
    const i = this.running.indexOf(seq);
    if (i >= 0) {
      this.running.splice(i, 1);
      this.model.reset(seq.slot);
      this.freeSlots.push(seq.slot);
    } else {
      const q = this.queue.indexOf(seq);
      if (q >= 0) this.queue.splice(q, 1);
    }
  }

  /** Stop: running and waiting requests end now. */
  dispose(): void {
    this.closed = true;
    for (const s of [...this.running, ...this.queue]) this.finish(s, "aborted");
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
