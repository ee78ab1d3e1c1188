/** An error the CLI reports as a one-line message with a non-zero exit (bad arguments, refused work). */
export class CliError extends Error {
  override name = "CliError";
}

/** A load error about `device: "cuda"` (no GPU, no addon), worded as the flag the user gave; others as they are. */
export function asDeviceFlagError(e: unknown): unknown {
  return e instanceof Error && e.message.startsWith("device cuda: ") ? new CliError(`--${e.message}`) : e;
}

/** `df11 verify` found a module or tensor that does not decode or does not match. */
export class VerificationError extends Error {
  override name = "VerificationError";
  constructor(
    readonly tensor: string,
    detail: string,
  ) {
    super(`${tensor}: ${detail}`);
  }
}
