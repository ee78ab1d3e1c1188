import type { CausalLM } from "../causal-lm.js";
import { ModelsError } from "../errors.js";
import type { GeneratedToken } from "../generate.js";
import { Sampler, type SamplingOptions } from "../sampling.js";
import type { TextTokenizer } from "../tokenizer.js";
import { TokenStream } from "./token-stream.js";

/** A generation request, as the scheduler takes it. */
export interface BatchRequest extends SamplingOptions {
  readonly prompt: readonly number[];
  /** Most new tokens (default 128). */
  readonly maxTokens?: number;
  /** Ids that end the sequence (default: the model's EOS ids). */
  readonly stopTokenIds?: readonly number[];
  /** Text that ends the sequence (needs the tokenizer). */
  readonly stopStrings?: readonly string[];
  /** Aborting frees the request's slot at the next token boundary. */
  readonly signal?: AbortSignal;
}

/** The queue is full: try later (HTTP 503). */
export class QueueFullError extends ModelsError {
  override name = "QueueFullError";
}

/** How a sequence ended. */
export type FinishReason = "eos" | "stop-string" | "max-tokens" | "max-context" | "aborted";

interface Sequence {
  readonly request: BatchRequest;
  readonly stream: TokenStream<GeneratedToken>;
  readonly sampler: Sampler;
  readonly stopIds: Set<number>;
  readonly context: number[];
  readonly generated: number[];
  slot: number;
  text: string;
  done: boolean;
}

export interface BatchSchedulerOptions {
  /** Sequences decoded together (≤ the backend's slots). */
  readonly maxBatch?: number;
  /** Requests that may wait for a slot before submit() refuses with QueueFullError. Default 4 × maxBatch. */
  readonly maxQueue?: number;
  readonly tokenizer?: TextTokenizer;
}

/**
 * Continuous batching: requests join the running batch at token boundaries (their prompt prefilled in
 * a slot of their own), every step advances all running sequences in one forward pass (so a DF11
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
   * Since creation: tokens generated, decode steps run, requests taken, and the seconds spent admitting
   * requests (their prefills) and in decode steps (each ends with its tokens on the host, so device
   * work is included).
   */
  readonly stats = { steps: 0, tokens: 0, requests: 0, prefillSeconds: 0, decodeSeconds: 0 };

  constructor(
    readonly model: CausalLM,
    private readonly options: BatchSchedulerOptions = {},
  ) {
    this.maxBatch = Math.min(options.maxBatch ?? model.backend.slots, model.backend.slots, model.backend.maxRows);
    if (!(this.maxBatch >= 1)) throw new RangeError("maxBatch must be ≥ 1");
    this.maxQueue = options.maxQueue ?? 4 * this.maxBatch;
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
   * Throws {@link QueueFullError} when maxQueue requests already wait, RangeError for a prompt that
   * cannot fit the context.
   */
  submit(request: BatchRequest): AsyncIterableIterator<GeneratedToken> {
    if (this.closed) throw new ModelsError("the scheduler is closed");
    if (request.prompt.length === 0) throw new RangeError("the prompt has no tokens");
    if (request.prompt.length >= this.model.maxContext) throw new RangeError(`the prompt has ${request.prompt.length} tokens; the model holds at most ${this.model.maxContext} positions`);
    this.model.checkTokenIds(request.prompt);
    if (this.queue.length >= this.maxQueue && this.freeSlots.length === 0) throw new QueueFullError(`${this.queue.length} requests are already waiting (the queue holds ${this.maxQueue})`);
    const stream = new TokenStream<GeneratedToken>();
    const seq: Sequence = {
      request,
      stream,
      sampler: new Sampler(request),
      stopIds: new Set(request.stopTokenIds ?? this.model.config.eosTokenIds),
      context: [...request.prompt],
      generated: [],
      slot: -1,
      text: "",
      done: false,
    };
    stream.onReturn = () => this.finish(seq);
    request.signal?.addEventListener("abort", () => this.finish(seq), { once: true });
    this.queue.push(seq);
    this.stats.requests++;
    this.kick();
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
        const t0 = performance.now();
        this.admit();
        const t1 = performance.now();
        if (this.running.length > 0) this.decodeStep();
        this.stats.prefillSeconds += (t1 - t0) / 1000;
        this.stats.decodeSeconds += (performance.now() - t1) / 1000;
        // Token boundary: let clients read, new requests arrive, aborts land.
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } catch (e) {
      for (const s of [...this.running, ...this.queue]) s.stream.end(e);
      this.running.length = 0;
      this.queue.length = 0;
    } finally {
      this.looping = false;
    }
  }

  /** Move waiting requests into free slots: prefill each, emit its first token. */
  private admit(): void {
    while (this.queue.length > 0 && this.freeSlots.length > 0) {
      const seq = this.queue.shift()!;
      if (seq.done) continue;
      seq.slot = this.freeSlots.pop()!;
      this.model.reset(seq.slot);
      this.running.push(seq);
      const { prompt } = seq.request;
      if (seq.sampler.isGreedy) this.emit(seq, this.model.forwardGreedy(prompt, seq.slot));
      else this.emit(seq, seq.sampler.next(this.model.forward(prompt, { slot: seq.slot }), seq.context));
    }
  }

  /** One forward pass over every running sequence's last token. */
  private decodeStep(): void {
    const batch = this.running.filter((s) => !s.done);
    if (batch.length === 0) return;
    const logits = this.model.step(batch.map((s) => ({ slot: s.slot, tokens: [s.context[s.context.length - 1]] })));
    this.stats.steps++;
    const greedy = this.model.backend.argmax(logits);
    const vocab = this.model.config.vocabSize;
    const all = batch.some((s) => !s.sampler.isGreedy) ? this.model.backend.read(logits) : undefined;
    batch.forEach((s, i) => this.emit(s, s.sampler.isGreedy ? greedy[i] : s.sampler.next(all!.subarray(i * vocab, (i + 1) * vocab), s.context)));
  }

  private emit(seq: Sequence, id: number): void {
    if (seq.done) return;
    seq.context.push(id);
    seq.generated.push(id);
    this.stats.tokens++;
    const tokenizer = this.options.tokenizer;
    let piece = "";
    if (tokenizer) {
      const full = tokenizer.decode(seq.generated);
      piece = full.slice(seq.text.length);
      seq.text = full;
    }
    const r = seq.request;
    const stop: GeneratedToken["stop"] = seq.stopIds.has(id)
      ? "eos"
      : r.stopStrings?.some((s) => seq.text.includes(s))
        ? "stop-string"
        : seq.generated.length >= (r.maxTokens ?? 128)
          ? "max-tokens"
          : this.model.length(seq.slot) + 1 >= this.model.maxContext
            ? "max-context"
            : undefined;
    seq.stream.push({ id, text: piece, stop });
    if (stop) this.finish(seq);
  }

  /** End a sequence and free its slot at once (the last token already carries why, if it stopped). */
  private finish(seq: Sequence): void {
    if (seq.done) return;
    seq.done = true;
    seq.stream.end();
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
    for (const s of [...this.running, ...this.queue]) this.finish(s);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
