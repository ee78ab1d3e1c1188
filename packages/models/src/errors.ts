/** Base class of every error thrown by @df11/models. */
export class ModelsError extends Error {
  override name = "ModelsError";
}

/** A config.json key that is missing, of the wrong type, or set to something unsupported. */
export class ConfigError extends ModelsError {
  override name = "ConfigError";
  constructor(
    readonly key: string,
    detail: string,
  ) {
    super(`config.json: ${key}: ${detail}`);
  }
}

/**
 * A load option (a `loadModel`/backend option and the CLI flag behind it) that is invalid or does not
 * combine with the others: names the option, e.g. `maxGpuMemory (--max-gpu-memory): …`.
 */
export class OptionError extends ModelsError {
  override name = "OptionError";
  constructor(
    /** The option as the library names it, e.g. `devices`. */
    readonly option: string,
    detail: string,
    /** The CLI flag behind it, e.g. `--devices`. */
    readonly flag?: string,
  ) {
    super(`${option}${flag ? ` (${flag})` : ""}: ${detail}`);
  }
}

/** Weights that do not fit the pattern_dict or the architecture (missing, misshapen). */
export class WeightLayoutError extends ModelsError {
  override name = "WeightLayoutError";
  constructor(
    readonly tensor: string,
    detail: string,
  ) {
    super(`${tensor}: ${detail}`);
  }
}

/** A tensor or decoded weights whose df11-sum64 differs from the checksum recorded when the model was written. */
export class ChecksumMismatchError extends ModelsError {
  override name = "ChecksumMismatchError";
  constructor(
    /** The stored tensor (`<module>.sign_mantissa`, a plain weight) or the module whose decoded weights differ. */
    readonly tensor: string,
    readonly expected: string,
    readonly actual: string,
    /** `stored` for a tensor as stored, `weights` for a module's decoded BF16 weights. */
    readonly kind: "stored" | "weights",
  ) {
    super(
      kind === "weights"
        ? `${tensor}: its decoded weights have checksum ${actual}, but ${expected} was recorded when it was compressed: the module is corrupt`
        : `${tensor}: checksum ${actual}, but ${expected} was recorded when it was written: the file is corrupt`,
    );
  }
}

/**
 * A prompt that does not fit the context (positions per sequence: `maxContext`, `--max-context`). To generate
 * after a prompt of P tokens, P must be below the context length C, as vLLM's and llama.cpp's servers require:
 * a prompt that fills the context leaves no position to store a generated token in, and is refused rather than
 * answered with a single token. A prompt only read (`maxTokens` 0, e.g. scored) may fill it. Generation then
 * ends at the context's end (stop reason `max-context`, OpenAI's finish_reason `length`). A RangeError, as any
 * input the model cannot take.
 */
export class ContextLengthError extends RangeError {
  override name = "ContextLengthError";
  constructor(
    /** The prompt's tokens (with `cachedTokens`: those it adds). */
    readonly promptTokens: number,
    /** Positions a sequence may hold. */
    readonly contextLength: number,
    /** Whether a token is to be generated after the prompt. */
    readonly generates: boolean,
    /** Positions the sequence already holds (a prompt that continues it). */
    readonly cachedTokens = 0,
  ) {
    const room = Math.max(0, contextLength - cachedTokens - (generates ? 1 : 0));
    const tokens = (n: number, more = "") => `${n}${more} token${n === 1 ? "" : "s"}`;
    const prompt = `the prompt has ${tokens(promptTokens)}${cachedTokens > 0 ? ` after the ${cachedTokens} the sequence holds` : ""}`;
    const limit = `${generates ? "to generate, a prompt may have" : "a prompt may have"} at most ${tokens(room, cachedTokens > 0 ? " more" : "")}`;
    super(`${prompt} and the context length is ${contextLength}: ${limit}`);
  }
}

/** Throws {@link ContextLengthError} unless a prompt fits the context (see there); `maxTokens` 0: the prompt is only read. */
export function checkPromptFits(promptTokens: number, contextLength: number, maxTokens: number | undefined, cachedTokens = 0): void {
  const generates = maxTokens !== 0;
  if (cachedTokens + promptTokens + (generates ? 1 : 0) > contextLength) throw new ContextLengthError(promptTokens, contextLength, generates, cachedTokens);
}
