import { createInterface } from "node:readline/promises";
import { endOfSequenceIds, generate, peakRssBytes, TextTokenizer, type CausalLM, type ChatMessage, type GenerateOptions, type GenerationStats } from "@df11/models";
import { CliError } from "./errors.js";
import { loadModelOn, type DeviceChoice } from "./load-model.js";

/** Options shared by `df11 generate` and `df11 chat`. */
export interface GenerationFlags {
  readonly maxTokens: number;
  readonly temperature: number;
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
}

/** The result `df11 generate --json` prints. */
export interface GenerateResult {
  readonly model: string;
  readonly weights: "bf16" | "df11";
  readonly device: "cpu" | "cuda";
  readonly promptTokenIds: number[];
  readonly tokenIds: number[];
  readonly text: string | null;
  readonly stopReason: string;
  readonly tokensPerSecond: { readonly prefill: number; readonly decode: number };
  readonly peakRssBytes: number;
  /** Whether Ctrl-C (or the signal) ended generation early. */
  readonly interrupted: boolean;
}



/** The flags' sampling and stopping options (stop strings as `stopStrings`). */
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

/** End-of-sequence ids: the config's, plus the tokenizer's EOS token. */
const stopTokenIds = (model: CausalLM, tokenizer: TextTokenizer | undefined): number[] => endOfSequenceIds(model.config.eosTokenIds, tokenizer);

/** Parse `--input-ids 1,2,3`. */
export function parseIds(text: string): number[] {
  const ids = text.split(/[\s,]+/).filter(Boolean).map(Number);
  if (ids.length === 0 || ids.some((v) => !Number.isInteger(v) || v < 0)) throw new CliError(`--input-ids: expected comma-separated token ids, got "${text}"`);
  return ids;
}

/**
 * `df11 generate`: load a BF16 or DF11 model, run the prompt, stream the tokens to `write` (text, or
 * ids without a tokenizer) and return the result with its speed and peak memory.
 */
export async function runGenerate(
  modelDir: string,
  input: { prompt?: string; inputIds?: number[]; chat?: boolean },
  flags: GenerationFlags,
  write: (piece: string) => void = () => {},
  signal?: AbortSignal,
): Promise<GenerateResult> {
  using model = await loadModelOn(modelDir, { device: flags.device, maxContext: flags.maxContext, verifyWeights: flags.verifyWeights });
  const tokenizer = await TextTokenizer.load(modelDir);
  let prompt: number[];
  if (input.inputIds) prompt = input.inputIds;
  else {
    if (input.prompt === undefined) throw new CliError("give --prompt TEXT or --input-ids 1,2,3");
    if (!tokenizer) throw new CliError(`${modelDir} has no tokenizer.json: use --input-ids`);
    const text = input.chat ? tokenizer.applyChatTemplate([{ role: "user", content: input.prompt }]) : input.prompt;
    prompt = tokenizer.encode(text, !input.chat);
  }
  const eos = stopTokenIds(model, tokenizer);
  const stats: { value?: GenerationStats } = {};
  const ids: number[] = [];
  let stopReason = "max-tokens";
  for await (const t of generate(model, prompt, { ...samplingOf(flags), tokenizer, stopTokenIds: eos, signal }, stats)) {
    ids.push(t.id);
    write(tokenizer ? t.text : `${ids.length > 1 ? "," : ""}${t.id}`);
    if (t.stop) stopReason = t.stop;
  }
  const s = stats.value!;
  return {
    model: modelDir,
    weights: model.weights.kind,
    device: model.device,
    promptTokenIds: prompt,
    tokenIds: ids,
    text: tokenizer ? tokenizer.decode(ids) : null,
    stopReason,
    tokensPerSecond: { prefill: s.promptTokens / s.prefillSeconds, decode: s.generatedTokens > 1 ? (s.generatedTokens - 1) / s.decodeSeconds : 0 },
    peakRssBytes: peakRssBytes(),
    interrupted: signal?.aborted ?? false,
  };
}

/** `df11 chat`: an interactive conversation using the model's chat template. */
export async function runChat(modelDir: string, flags: GenerationFlags, system?: string): Promise<void> {
  using model = await loadModelOn(modelDir, { device: flags.device, maxContext: flags.maxContext, verifyWeights: flags.verifyWeights });
  const tokenizer = await TextTokenizer.load(modelDir);
  if (!tokenizer?.hasChatTemplate) throw new CliError(`${modelDir} has no tokenizer with a chat template; use df11 generate`);
  const eos = stopTokenIds(model, tokenizer);
  const messages: ChatMessage[] = system ? [{ role: "system", content: system }] : [];
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  process.stdout.write(`df11 chat — ${modelDir} (${model.weights.kind} on ${model.device}). /reset starts over, /exit quits; Ctrl-C stops a reply.\n`);
  try {
    for (;;) {
      const line = (await rl.question("> ").catch(() => "/exit")).trim();
      if (line === "/exit" || line === "/quit") break;
      if (line === "/reset") {
        messages.splice(system ? 1 : 0);
        continue;
      }
      if (!line) continue;
      messages.push({ role: "user", content: line });
      const prompt = tokenizer.encode(tokenizer.applyChatTemplate(messages), false);
      let reply = "";
      // Ctrl-C while a reply streams stops that reply; at the prompt it ends the chat.
      const interrupt = new AbortController();
      const onSigint = () => interrupt.abort();
      rl.on("SIGINT", onSigint);
      try {
        for await (const t of generate(model, prompt, { ...samplingOf(flags), tokenizer, stopTokenIds: eos, signal: interrupt.signal })) {
          reply += t.text;
          process.stdout.write(t.text);
        }
      } finally {
        rl.off("SIGINT", onSigint);
      }
      process.stdout.write(interrupt.signal.aborted ? " [stopped]\n" : "\n");
      messages.push({ role: "assistant", content: reply.trim() });
    }
  } finally {
    rl.close();
  }
}
