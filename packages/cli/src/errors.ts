/** An error the CLI reports as a one-line message with a non-zero exit (bad arguments, refused work). */
export class CliError extends Error {
  override name = "CliError";
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
