import { existsSync } from "node:fs";
import { resolveModel, type DownloadProgress } from "@df11/hub-loader";
import type { CausalLM } from "../causal-lm.js";
import { ModelsError } from "../errors.js";
import type { GeneratedToken } from "../generate.js";
import { loadCausalLM } from "../load.js";
import type { SamplingOptions } from "../sampling.js";
import { endOfSequenceIds, TextTokenizer, type ChatMessage } from "../tokenizer.js";
import { BatchScheduler, type FinishReason } from "./batch-scheduler.js";

/** Where generation runs: a CUDA GPU, the CPU, or (auto) the GPU when one is usable. */
export type Device = "auto" | "cpu" | "cuda";

/** Loading progress: a phase and its bytes. */
export interface LoadProgress {
  readonly phase: "download" | "load";
  readonly done: number;
  readonly total: number;
}

export interface LoadModelOptions {
  readonly device?: Device;
  /** Positions per sequence (GPU: the KV cache is sized for it). */
  readonly maxContext?: number;
  /** Sequences generated together (GPU KV-cache slots; concurrent generate() calls batch up to this). */
  readonly slots?: number;
  /** Requests that may wait for a free slot (default 4 × slots); more are refused (QueueFullError). */
  readonly maxQueue?: number;
  /** Check the stored tensors against the checksums the files record (default true). */
  readonly checkStored?: boolean;
  /** Also decode every DF11 module once at load and check its weights' recorded checksum. */
  readonly verifyWeights?: boolean;
  /** GPU: how the weights are held (fused, huffman, bf16; default auto: fused, or huffman when fused would not fit). */
  readonly gpuWeights?: "auto" | "fused" | "huffman" | "bf16";
  readonly onProgress?: (progress: LoadProgress) => void;
}

export interface ModelGenerateOptions extends SamplingOptions {
  /** Most new tokens (default 128). */
  readonly maxTokens?: number;
  /** Stop when the text contains one of these (the stop text is not part of the result). */
  readonly stop?: readonly string[];
  /** Aborting stops generation at the next token. */
  readonly signal?: AbortSignal;
  /** Keep generating after end-of-sequence tokens (benchmarks). */
  readonly ignoreEos?: boolean;
}

/** A finished generation. */
export interface GenerationResult {
  readonly text: string;
  readonly tokenIds: number[];
  readonly finishReason: FinishReason;
  readonly usage: { readonly promptTokens: number; readonly completionTokens: number };
}

/** A running generation: iterate it for tokens as they come, or await `result()` for all of it. */
export class Generation implements AsyncIterable<GeneratedToken> {
  private consumed = false;

  constructor(
    private readonly tokens: AsyncIterableIterator<GeneratedToken>,
    readonly promptTokens: number,
    private readonly stop: readonly string[],
    private readonly signal: AbortSignal | undefined,
  ) {}

  [Symbol.asyncIterator](): AsyncIterator<GeneratedToken> {
    if (this.consumed) throw new ModelsError("a Generation can be read once");
    this.consumed = true;
    return this.tokens;
  }

  /** Read the whole generation. */
  async result(): Promise<GenerationResult> {
    const tokenIds: number[] = [];
    let text = "";
    let finishReason: FinishReason = "aborted";
    for await (const t of this) {
      tokenIds.push(t.id);
      text += t.text;
      if (t.stop) finishReason = t.stop;
    }
    if (this.signal?.aborted) finishReason = "aborted";
    return { text: cutAtStop(text, this.stop), tokenIds, finishReason, usage: { promptTokens: this.promptTokens, completionTokens: tokenIds.length } };
  }
}

/** Text up to the first stop string (OpenAI semantics: the stop text is not returned). */
export function cutAtStop(text: string, stop: readonly string[]): string {
  let end = text.length;
  for (const s of stop) {
    const i = text.indexOf(s);
    if (s && i >= 0 && i < end) end = i;
  }
  return text.slice(0, end);
}

/**
 * A loaded model, ready to generate: tokenizer, chat template and a continuous-batching scheduler (so
 * concurrent `generate` calls share forward passes).
 *
 * @example
 * ```ts
 * using model = await loadModel("DFloat11/Qwen3-8B-DF11", { onProgress: (p) => console.log(p.phase, p.done) });
 * for await (const t of model.chat([{ role: "user", content: "Hi!" }], { maxTokens: 64 })) process.stdout.write(t.text);
 * const { text } = await model.generate("The capital of France is", { maxTokens: 8 }).result();
 * ```
 */
export class Model implements Disposable {
  readonly scheduler: BatchScheduler;

  constructor(
    /** The model's id (repo id or directory). */
    readonly id: string,
    readonly directory: string,
    readonly lm: CausalLM,
    readonly tokenizer: TextTokenizer | undefined,
    options: { maxBatch?: number; maxQueue?: number } = {},
  ) {
    // The CPU keeps a KV cache per sequence as it comes; a GPU backend has its fixed slots.
    this.scheduler = new BatchScheduler(lm, { tokenizer, maxBatch: options.maxBatch ?? Math.min(lm.backend.slots, 8), maxQueue: options.maxQueue });
  }

  get device(): "cpu" | "cuda" {
    return this.lm.device;
  }

  /** End-of-sequence ids: the config's and the tokenizer's. */
  get eosTokenIds(): number[] {
    return endOfSequenceIds(this.lm.config.eosTokenIds, this.tokenizer);
  }

  /** Token ids of a prompt: text (tokenized), ids as they are, or chat messages (chat template). */
  promptIds(input: string | readonly number[] | readonly ChatMessage[]): number[] {
    if (typeof input !== "string" && (input.length === 0 || typeof input[0] === "number")) return [...(input as readonly number[])];
    if (!this.tokenizer) throw new ModelsError(`${this.id} has no tokenizer.json: pass token ids`);
    if (typeof input === "string") return this.tokenizer.encode(input);
    return this.tokenizer.encode(this.tokenizer.applyChatTemplate(input as readonly ChatMessage[]), false);
  }

  /** Generate after a prompt (text, token ids, or chat messages). */
  generate(input: string | readonly number[] | readonly ChatMessage[], options: ModelGenerateOptions = {}): Generation {
    const prompt = this.promptIds(input);
    const stop = options.stop ?? [];
    const tokens = this.scheduler.submit({ ...options, prompt, stopStrings: stop, stopTokenIds: options.ignoreEos ? [] : this.eosTokenIds });
    return new Generation(tokens, prompt.length, stop, options.signal);
  }

  /** Generate the assistant's reply to chat messages, with the model's chat template. */
  chat(messages: readonly ChatMessage[], options: ModelGenerateOptions = {}): Generation {
    if (!this.tokenizer?.hasChatTemplate) throw new ModelsError(`${this.id} has no chat template`);
    return this.generate(messages, options);
  }

  dispose(): void {
    this.scheduler.dispose();
    this.lm.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/**
 * Load a model for generation: a local directory or a Hub repo id (`org/name[@revision]`, fetched into
 * the shared Hugging Face cache), BF16 or DF11, on the GPU when one is usable (`device: "auto"`).
 */
export async function loadModel(source: string, options: LoadModelOptions = {}): Promise<Model> {
  const directory = existsSync(source)
    ? source
    : (await resolveModel(source, { onProgress: (p: DownloadProgress) => options.onProgress?.({ phase: "download", done: p.bytesDone, total: p.bytesTotal }) })).dir;
  const lm = await loadCausalLM(directory, {
    device: options.device ?? "auto",
    maxContext: options.maxContext,
    slots: options.slots,
    checkStored: options.checkStored,
    verifyWeights: options.verifyWeights,
    gpuWeights: options.gpuWeights,
    onProgress: (done, total) => options.onProgress?.({ phase: "load", done, total }),
  });
  try {
    return new Model(source, directory, lm, await TextTokenizer.load(directory), { maxBatch: options.slots, maxQueue: options.maxQueue });
  } catch (e) {
    lm.dispose();
    throw e;
  }
}
