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
