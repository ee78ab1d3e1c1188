import { createInterface } from "node:readline/promises";
import {
  ChatTemplateError,
  checkPromptFits,
  ContextLengthError,
  DEFAULT_SEED,
  endOfSequenceIds,
  generate,
  peakRssBytes,
  readGenerationConfig,
  resolveSampling,
  TextTokenizer,
  type BackendMemory,
  type CausalLM,
  type ChatMessage,
  type GenerateOptions,
  type GenerationStats,
  type ResolvedSampling,
} from "@df11/models";
import { CliError } from "./errors.js";
import { formatError } from "./error-output.js";
import { loadModelOn, type DeviceChoice, type LoadOptions } from "./load-model.js";
import { weightsReport, type GpuWeightsChoice, type WeightsReport } from "./weights-report.js";

/** Options shared by `df11 generate` and `df11 chat`. */
export interface GenerationFlags {
  readonly maxTokens: number;
  /** Unset: the model's generation_config.json default, else 0 (greedy). */
  readonly temperature?: number;
  readonly topK?: number;
  readonly topP?: number;
  readonly minP?: number;
  readonly repetitionPenalty?: number;
  readonly seed?: number;
  readonly stop?: string[];
  /** Where to run (default: the GPU when one is present). */
  readonly device?: DeviceChoice;
  /** GPU: KV-cache positions per sequence. */
  readonly maxContext?: number;
  /** Decode every DF11 module once at load and check its weights' recorded checksum. */
  readonly verifyWeights?: boolean;
  /** GPU: how the weights are held (default auto: fused (bf16 for tiny models, where its padding costs more), or huffman when that would not fit). */
  readonly gpuWeights?: GpuWeightsChoice;
  /** GPU indices (--devices): one picks that GPU, several run tensor parallel over them. */
  readonly devices?: readonly number[];
  /** GPU: bytes of device memory df11 may use (--max-gpu-memory); what does not fit is offloaded to pinned host memory. */
  readonly maxGpuMemory?: number;
  /** false (--no-sampling-defaults): ignore generation_config.json's sampling defaults. */
  readonly samplingDefaults?: boolean;
}

/** The model-loading flags of generate, chat and generate --batch-size. */
export const loadOptionsOf = (f: GenerationFlags): LoadOptions => ({ device: f.device, maxContext: f.maxContext, verifyWeights: f.verifyWeights, gpuWeights: f.gpuWeights, devices: f.devices, maxGpuMemory: f.maxGpuMemory });

/** What a generation ran with (`--json` reports it). */
export interface ReportedSettings {
  /** Sampling used: temperature 0 is greedy; topK 0, topP 1, minP 0, repetitionPenalty 1 are off. */
  readonly sampling: { temperature: number; topK: number; topP: number; minP: number; repetitionPenalty: number; seed: number };
  /** Where each sampling setting came from: a flag, the model's generation_config.json, or df11's default. */
  readonly sources: ResolvedSampling["sources"];
  /** Token ids that end generation: config.json's, generation_config.json's and the tokenizer's EOS. */
  readonly stopTokenIds: number[];
  readonly stopStrings: string[];
}

/** The result `df11 generate --json` prints. */
export interface GenerateResult {
  readonly model: string;
  /** The checkpoint's format. */
  readonly weights: "bf16" | "df11";
  /** The weights as held while running: layout, resident bytes, the fused layout's cost. */
  readonly weightsInUse: WeightsReport;
  readonly device: "cpu" | "cuda";
  readonly promptTokenIds: number[];
  readonly tokenIds: number[];
  readonly text: string | null;
  readonly stopReason: string;
  readonly tokensPerSecond: { readonly prefill: number; readonly decode: number };
  readonly peakRssBytes: number;
  /** The backend's memory in use and peak after the run (GPU: device allocations; CPU: process RSS); null when it does not say. */
  readonly memory: BackendMemory | null;
  /** Whether Ctrl-C (or the signal) ended generation early. */
  readonly interrupted: boolean;
  readonly settings: ReportedSettings;
}

/** Settings as `--json` reports them: every filter with its value ("off" ones too) and where it came from. */
export function reportSettings(resolved: ResolvedSampling, seed: number, stopTokenIds: readonly number[], stopStrings: readonly string[]): ReportedSettings {
  const o = resolved.options;
  return {
    sampling: { temperature: o.temperature ?? 0, topK: o.topK ?? 0, topP: o.topP ?? 1, minP: o.minP ?? 0, repetitionPenalty: o.repetitionPenalty ?? 1, seed },
    sources: resolved.sources,
    stopTokenIds: [...stopTokenIds],
    stopStrings: [...stopStrings],
  };
}

/**
 * The flags' sampling and stopping options (stop strings as `stopStrings`). Sampling the flags leave
 * unset is undefined: the model's generation_config.json defaults fill it in (see {@link settingsOf}).
 */
export const samplingOf = (f: GenerationFlags): GenerateOptions => ({
  maxTokens: f.maxTokens,
  temperature: f.temperature,
  topK: f.topK,
  topP: f.topP,
  minP: f.minP,
  repetitionPenalty: f.repetitionPenalty,
  seed: f.seed,
  stopStrings: f.stop,
});

/** The generation options from the flags and the model's generation_config.json defaults, and what they came to. */
async function settingsOf(modelDir: string, model: CausalLM, tokenizer: TextTokenizer | undefined, f: GenerationFlags): Promise<{ options: GenerateOptions; settings: ReportedSettings }> {
  const defaults = f.samplingDefaults === false ? undefined : (await readGenerationConfig(modelDir))?.sampling;
  const resolved = resolveSampling(samplingOf(f), defaults, { temperature: 0 });
  const stopTokenIds = endOfSequenceIds(model.config.eosTokenIds, tokenizer);
  const stopStrings = f.stop ?? [];
  return {
    options: { ...resolved.options, stopStrings, stopTokenIds, tokenizer },
    settings: reportSettings(resolved, f.seed ?? DEFAULT_SEED, stopTokenIds, stopStrings),
  };
}

/** An AbortSignal that fires on Ctrl-C (SIGINT) until `release` is called; a second Ctrl-C exits at once. */
export function interruptSignal(): { signal: AbortSignal; release: () => void } {
  const controller = new AbortController();
  const onSigint = () => {
    if (controller.signal.aborted) process.exit(130);
    controller.abort();
  };
  process.on("SIGINT", onSigint);
  return { signal: controller.signal, release: () => process.off("SIGINT", onSigint) };
}

/**
 * Parse `--input-ids 1,2,3` (commas and/or spaces between ids). Every entry must be a token id in decimal
 * digits: an empty one (`1,,2`, a trailing comma) or anything else (`x`, `1.5`, `0x10`, `1e3`) is a
 * {@link CliError} naming it, rather than dropped or read as another id.
 */
export function parseIds(text: string): number[] {
  const entries = text.trim().split(/\s*,\s*|\s+/);
  const expected = "--input-ids: expected comma-separated token ids, e.g. 1,17,42";
  if (text.trim() === "") throw new CliError(`${expected}, got "${text}"`);
  const bad = entries.findIndex((e) => !/^\d+$/.test(e) || !Number.isSafeInteger(Number(e)));
  if (bad >= 0) throw new CliError(`${expected}: entry ${bad + 1} of "${text}" ${entries[bad] === "" ? "is empty" : `("${entries[bad]}") is not a token id`}`);
  return entries.map(Number);
}

/**
 * `df11 generate`: load a BF16 or DF11 model, run the prompt, stream the tokens to `write` (text, or
 * ids without a tokenizer) and return the result with its speed and peak memory.
 */
export async function runGenerate(
  modelDir: string,
  input: { prompt?: string; inputIds?: number[]; chat?: boolean; ignoreEos?: boolean },
  flags: GenerationFlags,
  write: (piece: string) => void = () => {},
  signal?: AbortSignal,
): Promise<GenerateResult> {
  if (input.prompt !== undefined && input.inputIds) throw new CliError("give --prompt or --input-ids, not both");
  if (input.chat && input.inputIds) throw new CliError("--chat wraps a text prompt in the chat template; it does not apply to --input-ids");
  // A missing prompt is said before the model loads (a 70B model takes a while to load).
  if (!input.inputIds && input.prompt === undefined) throw new CliError("give --prompt TEXT or --input-ids 1,2,3");
  using model = await loadModelOn(modelDir, loadOptionsOf(flags));
  const tokenizer = await TextTokenizer.load(modelDir);
  let prompt: number[];
  if (input.inputIds) prompt = input.inputIds;
  else {
    if (input.prompt === undefined) throw new CliError("give --prompt TEXT or --input-ids 1,2,3");
    if (!tokenizer) throw new CliError(`${modelDir} has no tokenizer.json: use --input-ids`);
    const text = input.chat ? tokenizer.applyChatTemplate([{ role: "user", content: input.prompt }]) : input.prompt;
    prompt = tokenizer.encode(text, !input.chat);
  }
  const resolved = await settingsOf(modelDir, model, tokenizer, flags);
  checkContext(model, prompt.length, flags.maxTokens);
  // --ignore-eos: no end-of-sequence id stops it (a run of exactly -n tokens; benchmarks), as the settings then say.
  const options = input.ignoreEos ? { ...resolved.options, stopTokenIds: [] } : resolved.options;
  const settings = input.ignoreEos ? { ...resolved.settings, stopTokenIds: [] } : resolved.settings;
  const stats: { value?: GenerationStats } = {};
  const ids: number[] = [];
  let text = "";
  let stopReason: string | undefined;
  for await (const t of generate(model, prompt, { ...options, signal }, stats)) {
    ids.push(t.id);
    text += t.text;
    write(tokenizer ? t.text : `${ids.length > 1 ? "," : ""}${t.id}`);
    if (t.stop) stopReason = t.stop;
  }
  // The last token names why generation ended; without one it was interrupted (Ctrl-C), as generate --batch-size says it.
  stopReason ??= signal?.aborted ? "aborted" : "max-tokens";
  const s = stats.value!;
  return {
    model: modelDir,
    weights: model.weights.kind,
    weightsInUse: weightsReport(model.weights),
    device: model.device,
    promptTokenIds: prompt,
    tokenIds: ids,
    text: tokenizer ? text : null,
    stopReason,
    tokensPerSecond: { prefill: s.promptTokens / s.prefillSeconds, decode: s.generatedTokens > 1 ? (s.generatedTokens - 1) / s.decodeSeconds : 0 },
    peakRssBytes: peakRssBytes(),
    memory: model.backend.memory?.() ?? null,
    interrupted: signal?.aborted ?? false,
    settings,
  };
}

/**
 * A prompt of the context's length or more is refused (a {@link CliError} naming both numbers and the flag), as
 * `df11 serve` and the library refuse it: to generate, a prompt may have at most --max-context − 1 tokens.
 */
export function checkContext(model: CausalLM, promptTokens: number, maxTokens: number, what = "the prompt"): void {
  try {
    checkPromptFits(promptTokens, model.maxContext, maxTokens);
  } catch (e) {
    if (!(e instanceof ContextLengthError)) throw e;
    throw new CliError(`${e.message.replace(/^the prompt/, what)} (--max-context; this model's maximum is ${model.config.maxPositionEmbeddings})`);
  }
}

/** `df11 chat`: an interactive conversation using the model's chat template. */
export async function runChat(modelDir: string, flags: GenerationFlags, system?: string): Promise<void> {
  using model = await loadModelOn(modelDir, loadOptionsOf(flags));
  const tokenizer = await TextTokenizer.load(modelDir);
  if (!tokenizer?.hasChatTemplate) throw new CliError(`${modelDir} has no tokenizer with a chat template; use df11 generate`);
  const { options } = await settingsOf(modelDir, model, tokenizer, flags);
  const messages: ChatMessage[] = system ? [{ role: "system", content: system }] : [];
  if (system) {
    try {
      tokenizer.applyChatTemplate([...messages, { role: "user", content: "Hi" }]);
    } catch (e) {
      if (e instanceof ChatTemplateError) throw new CliError(`--system: ${e.message}`);
      throw e;
    }
  }
  const rl = createInterface({ input: process.stdin, output: process.stdout, prompt: "> " });
  // Lines are read through the iterator, which queues those that arrive while a reply is generated (piped
  // input); the end of input (or Ctrl-C at the prompt, which closes readline) ends the chat.
  const lines = rl[Symbol.asyncIterator]();
  const nextLine = async () => {
    rl.prompt();
    const r = await lines.next();
    return r.done ? "/exit" : r.value.trim();
  };
  process.stdout.write(`df11 chat — ${modelDir} (${model.weights.kind} on ${model.device}). /reset starts over, /exit quits; Ctrl-C stops a reply.\n`);
  try {
    for (;;) {
      const line = await nextLine();
      if (line === "/exit" || line === "/quit") break;
      if (line === "/reset") {
        messages.splice(system ? 1 : 0);
        continue;
      }
      if (!line) continue;
      messages.push({ role: "user", content: line });
      let prompt: number[];
      try {
        prompt = tokenizer.encode(tokenizer.applyChatTemplate(messages), false);
      } catch (e) {
        if (!(e instanceof ChatTemplateError)) throw e;
        messages.pop(); // the template refused this turn: say why, keep the conversation as it was
        process.stdout.write(formatError(e.message));
        continue;
      }
      try {
        checkContext(model, prompt.length, options.maxTokens ?? flags.maxTokens, "the conversation with this turn");
      } catch (e) {
        messages.pop(); // the conversation has outgrown the KV cache: say so and keep it as it was, rather than end the chat
        process.stdout.write(formatError(`${(e as Error).message}: /reset starts over`));
        continue;
      }
      let reply = "";
      let full = false;
      // Ctrl-C while a reply streams stops that reply; at the prompt it ends the chat.
      const interrupt = new AbortController();
      const onSigint = () => interrupt.abort();
      rl.on("SIGINT", onSigint);
      try {
        for await (const t of generate(model, prompt, { ...options, signal: interrupt.signal })) {
          reply += t.text;
          process.stdout.write(t.text);
          if (t.stop === "max-context") full = true;
        }
      } finally {
        rl.off("SIGINT", onSigint);
      }
      process.stdout.write(interrupt.signal.aborted ? " [stopped]\n" : full ? " [the context is full: /reset starts over]\n" : "\n");
      messages.push({ role: "assistant", content: reply.trim() });
    }
  } finally {
    rl.close();
  }
}
