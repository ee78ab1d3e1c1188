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
