import { existsSync } from "node:fs";
import { resolveModel, type DownloadProgress } from "@df11/hub-loader";
import type { CausalLM } from "../causal-lm.js";
import { ModelsError, OptionError } from "../errors.js";
import { grammarConstraint, jsonObjectConstraint, type TokenConstraint } from "../constraint.js";
import { readGenerationConfig, resolveSampling, type GenerationConfig, type ResolvedSampling, type SamplingDefaults } from "../generation-config.js";
import { loadCausalLM } from "../load.js";
import { checkGpuOptions } from "../gpu-options.js";
import type { TokenLogprob } from "../logprobs.js";
import type { SamplingOptions } from "../sampling.js";
import type { GeneratedToken } from "../sequence.js";
import { endOfSequenceIds, TextTokenizer, type ChatMessage, type ChatTemplateOptions, type ToolDefinition } from "../tokenizer.js";
import { forcedToolCall, requireToolCallFormat, ToolCallParser, type ToolCall } from "../tool-calls.js";
import { BatchScheduler, isPrefillGatherMs, type BatchSchedulerOptions, type FinishReason, type SequenceStream } from "./batch-scheduler.js";

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
  /** Rows (tokens) one forward step takes at most (GPU; see BackendLoadOptions.maxRows). Default 512. */
  readonly maxRows?: number;
  /** Requests that may wait for a free slot (default 4 × slots); more are refused (QueueFullError). */
  readonly maxQueue?: number;
  /** Prefill prompts admitted together in shared steps (throughput; see BatchSchedulerOptions.sharedPrefill). Default false. */
  readonly sharedPrefill?: boolean;
  /** With sharedPrefill: wait up to this many ms for a burst of requests to arrive before prefilling it (see BatchSchedulerOptions.prefillGatherMs). Default 0. */
  readonly prefillGatherMs?: number;
  /** Pipelined greedy decoding (see BatchSchedulerOptions.pipelineGreedy). Default true. */
  readonly pipelineGreedy?: boolean;
  /** Check the stored tensors against the checksums the files record (default true). */
  readonly checkStored?: boolean;
  /** Also decode every DF11 module once at load and check its weights' recorded checksum. */
  readonly verifyWeights?: boolean;
  /**
   * GPU: how the weights are held (fused, huffman, bf16; default auto: fused (bf16 for tiny models, where its padding costs more), or huffman when that would not fit).
   * Not ignored off the GPU: refused with `device: "cpu"`; with `device: "auto"` and no GPU, a GpuOptionsIgnoredWarning (see BackendLoadOptions.gpuWeights).
   */
  readonly gpuWeights?: "auto" | "fused" | "huffman" | "bf16";
  /** GPU indices: one picks that GPU; several run the model tensor parallel over them (see BackendLoadOptions.devices). */
  readonly devices?: readonly number[];
  /**
   * GPU: bytes of device memory the model may use; decoder layers that do not fit are offloaded to pinned host memory (see BackendLoadOptions.maxGpuMemory).
   * With several `devices`, each GPU's budget. Not ignored off the GPU: refused with `device: "cpu"`; with `device: "auto"` and no GPU, a GpuOptionsIgnoredWarning.
   */
  readonly maxGpuMemory?: number;
  /** Apply generation_config.json's sampling defaults where a request sets none (default true; vLLM's `--generation-config`). */
  readonly samplingDefaults?: boolean;
  readonly onProgress?: (progress: LoadProgress) => void;
}

export interface ModelGenerateOptions extends SamplingOptions {
  /** Most new tokens (default 128; 0 reads the prompt only, e.g. to score it with `promptLogprobs`). */
  readonly maxTokens?: number;
  /** Stop when the text contains one of these (the stop text is not part of the result). */
  readonly stop?: readonly string[];
  /** Aborting stops generation at the next token. */
  readonly signal?: AbortSignal;
  /** Keep generating after end-of-sequence tokens (benchmarks). */
  readonly ignoreEos?: boolean;
  /** Each generated token's log-probability and this many alternatives (0…20). */
  readonly logprobs?: number;
  /** Also score the prompt: each prompt token's log-probability (the first has none) with this many alternatives. */
  readonly promptLogprobs?: number;
  /** `json_object`: the reply is constrained to one JSON object (constrained decoding). Default `text`. */
  readonly responseFormat?: "text" | "json_object";
  /**
   * Apply the model's generation_config.json sampling defaults where these options set none (default:
   * as loadModel's `samplingDefaults`, itself true).
   */
  readonly samplingDefaults?: boolean;
}

/** Which tool the model must call: none, any it likes (auto), at least one (required), or this one. */
export type ToolChoice = "none" | "auto" | "required" | { readonly name: string };

export interface ModelChatOptions extends ModelGenerateOptions {
  /** Functions the model may call; rendered through its chat template, calls read from its output. */
  readonly tools?: readonly ToolDefinition[];
  /** Default "auto" when tools are given. "required" and a named tool constrain the reply to a call. */
  readonly toolChoice?: ToolChoice;
  /** false: at most one call (generation stops after it). Default true. */
  readonly parallelToolCalls?: boolean;
  /** More chat-template variables, e.g. `{ enable_thinking: false }` for Qwen3. */
  readonly templateVariables?: Readonly<Record<string, unknown>>;
}

/**
 * A generated token as `Model` streams it: `text` is the reply's content, `toolCalls` the calls it
 * completed. With tools, text the tool-call reader still held when generation was cut short comes last
 * with `id` -1 (no token).
 */
export interface ModelToken extends GeneratedToken {
  readonly toolCalls?: readonly ToolCall[];
}

/** How a generation ended: a stop rule, the client, or (chat with tools) tool calls. */
export type GenerationFinish = FinishReason | "tool-calls";

/** The settings a generation ran with. */
export interface GenerationSettings {
  /** Sampling settings used (temperature 0 = greedy) and where each came from. */
  readonly sampling: SamplingOptions;
  readonly sources: ResolvedSampling["sources"];
  /** Token ids that end it (none with ignoreEos). */
  readonly stopTokenIds: readonly number[];
}

/** A finished generation. */
export interface GenerationResult {
  /** The reply's text (without tool calls, cut before a stop string): the streamed pieces joined. */
  readonly text: string;
  readonly tokenIds: number[];
  readonly finishReason: GenerationFinish;
  readonly usage: { readonly promptTokens: number; readonly completionTokens: number };
  /** Per generated token, with `logprobs`. */
  readonly logprobs?: TokenLogprob[];
  /** Per prompt token (the first null), with `promptLogprobs`. */
  readonly promptLogprobs?: ReadonlyArray<TokenLogprob | null>;
  /** Chat with tools: the calls the model made. */
  readonly toolCalls?: readonly ToolCall[];
}

/** A running generation: iterate it for tokens as they come, or await `result()` for all of it. */
export class Generation implements AsyncIterable<ModelToken> {
  private consumed = false;
  private finish: GenerationFinish | undefined;

  constructor(
    private readonly tokens: SequenceStream,
    /** The prompt as the model reads it (text and chat messages encoded, the chat template applied). */
    readonly promptTokenIds: readonly number[],
    /** What it runs with. */
    readonly settings: GenerationSettings,
    private readonly signal: AbortSignal | undefined,
    private readonly tools?: { readonly parser: ToolCallParser; readonly stop: () => void },
  ) {}

  /** The prompt's length in tokens. */
  get promptTokens(): number {
    return this.promptTokenIds.length;
  }

  /** How it ended (once the tokens are read). */
  get finishReason(): GenerationFinish | undefined {
    return this.finish;
  }

  /** The prompt's log-probabilities (with `promptLogprobs`), once it is prefilled. */
  get promptLogprobs(): ReadonlyArray<TokenLogprob | null> | undefined {
    return this.tokens.promptLogprobs;
  }

  [Symbol.asyncIterator](): AsyncIterator<ModelToken> {
    if (this.consumed) throw new ModelsError("a Generation can be read once");
    this.consumed = true;
    return this.read();
  }

  private async *read(): AsyncGenerator<ModelToken> {
    const tools = this.tools;
    for await (const t of this.tokens) {
      if (!tools) {
        yield t;
        continue;
      }
      const a = tools.parser.push(t.text);
      const b = t.stop ? tools.parser.finish() : { content: "", calls: [] };
      const calls = [...a.calls, ...b.calls];
      if (tools.parser.done) tools.stop(); // parallel_tool_calls: false — one call is all
      yield { ...t, text: a.content + b.content, ...(calls.length > 0 ? { toolCalls: calls } : {}) };
    }
    let reason: GenerationFinish = this.signal?.aborted ? "aborted" : (this.tokens.finishReason ?? "aborted");
    if (tools) {
      const rest = tools.parser.finish(); // ended without a stop token (aborted after the last allowed call)
      if (rest.content || rest.calls.length > 0) yield { id: -1, text: rest.content, ...(rest.calls.length > 0 ? { toolCalls: rest.calls } : {}) };
      if (tools.parser.callCount > 0 && (reason === "eos" || reason === "stop-string" || tools.parser.done)) reason = "tool-calls";
    }
    this.finish = reason;
  }

  /** Read the whole generation. */
  async result(): Promise<GenerationResult> {
    const tokenIds: number[] = [];
    const logprobs: TokenLogprob[] = [];
    const toolCalls: ToolCall[] = [];
    let text = "";
    for await (const t of this) {
      if (t.id >= 0) tokenIds.push(t.id);
      if (t.logprob) logprobs.push(t.logprob);
      if (t.toolCalls) toolCalls.push(...t.toolCalls);
      text += t.text;
    }
    return {
      text,
      tokenIds,
      finishReason: this.finish!,
      usage: { promptTokens: this.promptTokens, completionTokens: tokenIds.length },
      ...(logprobs.length > 0 ? { logprobs } : {}),
      ...(this.promptLogprobs ? { promptLogprobs: this.promptLogprobs } : {}),
      ...(this.tools ? { toolCalls } : {}),
    };
  }
}

/**
 * A loaded model, ready to generate: tokenizer, chat template, generation_config.json defaults and a
 * continuous-batching scheduler (so concurrent `generate` calls share forward passes).
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
  /** What the model's generation_config.json says (end-of-sequence ids, sampling defaults), if it has one. */
  readonly generationConfig: GenerationConfig | undefined;
  private readonly samplingDefaults: boolean;

  constructor(
    /** The model's id (repo id or directory). */
    readonly id: string,
    readonly directory: string,
    readonly lm: CausalLM,
    readonly tokenizer: TextTokenizer | undefined,
    options: Pick<BatchSchedulerOptions, "maxBatch" | "maxQueue" | "sharedPrefill" | "prefillGatherMs" | "pipelineGreedy"> & { generationConfig?: GenerationConfig; samplingDefaults?: boolean } = {},
  ) {
    // The CPU keeps a KV cache per sequence as it comes; a GPU backend has its fixed slots.
    const { maxQueue, sharedPrefill, prefillGatherMs, pipelineGreedy } = options;
    this.scheduler = new BatchScheduler(lm, { tokenizer, maxBatch: options.maxBatch ?? Math.min(lm.backend.slots, 8), maxQueue, sharedPrefill, prefillGatherMs, pipelineGreedy });
    this.generationConfig = options.generationConfig;
    this.samplingDefaults = options.samplingDefaults ?? true;
  }

  get device(): "cpu" | "cuda" {
    return this.lm.device;
  }

  /** End-of-sequence ids: config.json's, generation_config.json's and the tokenizer's. */
  get eosTokenIds(): number[] {
    return endOfSequenceIds([...this.lm.config.eosTokenIds, ...(this.generationConfig?.eosTokenIds ?? [])], this.tokenizer);
  }

  /**
   * Sampling settings for a request: its own, else the model's generation_config.json defaults (unless
   * switched off), else `fallback`.
   */
  samplingFor(options: SamplingOptions & { samplingDefaults?: boolean }, fallback: SamplingDefaults = {}): ResolvedSampling {
    const useDefaults = options.samplingDefaults ?? this.samplingDefaults;
    return resolveSampling(options, useDefaults ? this.generationConfig?.sampling : undefined, fallback);
  }

  /** Token ids of a prompt: text (tokenized), ids as they are, or chat messages (chat template). */
  promptIds(input: string | readonly number[] | readonly ChatMessage[], template: ChatTemplateOptions = {}): number[] {
    if (typeof input !== "string" && (input.length === 0 || typeof input[0] === "number")) return [...(input as readonly number[])];
    if (!this.tokenizer) throw new ModelsError(`${this.id} has no tokenizer.json: pass token ids`);
    if (typeof input === "string") return this.tokenizer.encode(input);
    return this.tokenizer.encode(this.tokenizer.applyChatTemplate(input as readonly ChatMessage[], template), false);
  }

  /** Generate after a prompt (text, token ids, or chat messages). */
  generate(input: string | readonly number[] | readonly ChatMessage[], options: ModelGenerateOptions = {}): Generation {
    return this.start(this.promptIds(input), options);
  }

  /**
   * Generate the assistant's reply to chat messages, with the model's chat template. With `tools`, the
   * template renders them and the reply's tool calls come as `toolCalls` (Hermes/Qwen and Llama 3.x
   * formats); a template without tool support throws {@link ToolsNotSupportedError}. A template that
   * raises (e.g. Gemma's "System role not supported") throws {@link ChatTemplateError}.
   */
  chat(messages: readonly ChatMessage[], options: ModelChatOptions = {}): Generation {
    if (!this.tokenizer?.hasChatTemplate) throw new ModelsError(`${this.id} has no chat template`);
    const choice = options.toolChoice ?? "auto";
    const useTools = !!options.tools && options.tools.length > 0 && choice !== "none";
    if (!useTools) {
      if (choice !== "auto" && choice !== "none") throw new ModelsError(`toolChoice ${JSON.stringify(choice)} needs tools`);
      return this.start(this.promptIds(messages, { variables: options.templateVariables }), options);
    }
    const tools = options.tools!;
    const format = requireToolCallFormat(this.tokenizer.chatTemplate(true));
    if (options.responseFormat === "json_object") throw new ModelsError("responseFormat json_object cannot be combined with tools");
    const names = tools.map((t) => t.function.name);
    if (typeof choice === "object" && !names.includes(choice.name)) throw new ModelsError(`toolChoice names "${choice.name}", which is not among the tools (${names.join(", ")})`);
    const prompt = this.promptIds(messages, { tools, variables: options.templateVariables });
    const forced = choice === "required" ? names : typeof choice === "object" ? [choice.name] : undefined;
    const constraint = forced && grammarConstraint(forcedToolCall(format, forced), this.tokenizer, this.eosTokenIds, "tool_choice");
    const parser = new ToolCallParser(format, options.parallelToolCalls === false || forced ? 1 : Infinity);
    const stopper = new AbortController();
    const signal = options.signal ? AbortSignal.any([options.signal, stopper.signal]) : stopper.signal;
    return this.start(prompt, { ...options, signal }, constraint, { parser, stop: () => stopper.abort() }, options.signal);
  }

  private start(
    prompt: number[],
    options: ModelGenerateOptions,
    constraint?: TokenConstraint,
    tools?: { parser: ToolCallParser; stop: () => void },
    userSignal: AbortSignal | undefined = options.signal,
  ): Generation {
    const stopTokenIds = options.ignoreEos ? [] : this.eosTokenIds;
    if (options.responseFormat === "json_object") {
      if (!this.tokenizer) throw new ModelsError(`${this.id} has no tokenizer.json, so its output cannot be constrained to JSON`);
      constraint = jsonObjectConstraint(this.tokenizer, this.eosTokenIds);
    }
    const { options: sampling, sources } = this.samplingFor(options);
    const tokens = this.scheduler.submit({ ...options, ...sampling, prompt, stopStrings: options.stop ?? [], stopTokenIds, constraint });
    return new Generation(tokens, prompt, { sampling, sources, stopTokenIds }, userSignal, tools);
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
  // Options that do not combine are said before a download starts.
  checkGpuOptions({ ...options, device: options.devices ? options.device : (options.device ?? "auto") });
  if (options.maxRows !== undefined && !(Number.isInteger(options.maxRows) && options.maxRows >= 1)) {
    throw new OptionError("maxRows", `must be a positive integer, got ${options.maxRows}`, "--max-batch-tokens");
  }
  if (options.prefillGatherMs !== undefined && !isPrefillGatherMs(options.prefillGatherMs)) {
    throw new OptionError("prefillGatherMs", `must be a finite number ≥ 0, got ${options.prefillGatherMs}`, "--prefill-gather-ms");
  }
  const directory = existsSync(source)
    ? source
    : (await resolveModel(source, { onProgress: (p: DownloadProgress) => options.onProgress?.({ phase: "download", done: p.bytesDone, total: p.bytesTotal }) })).dir;
  const lm = await loadCausalLM(directory, {
    device: options.device ?? "auto",
    maxContext: options.maxContext,
    slots: options.slots,
    maxRows: options.maxRows,
    checkStored: options.checkStored,
    verifyWeights: options.verifyWeights,
    gpuWeights: options.gpuWeights,
    devices: options.devices,
    maxGpuMemory: options.maxGpuMemory,
    onProgress: (done, total) => options.onProgress?.({ phase: "load", done, total }),
  });
  try {
    return new Model(source, directory, lm, await TextTokenizer.load(directory), {
      maxBatch: options.slots,
      maxQueue: options.maxQueue,
      sharedPrefill: options.sharedPrefill,
      prefillGatherMs: options.prefillGatherMs,
      pipelineGreedy: options.pipelineGreedy,
      generationConfig: await readGenerationConfig(directory),
      samplingDefaults: options.samplingDefaults,
    });
  } catch (e) {
    lm.dispose();
    throw e;
  }
}
