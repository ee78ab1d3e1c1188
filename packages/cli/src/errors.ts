/** An error the CLI reports as a one-line message with a non-zero exit (bad arguments, refused work). */
export class CliError extends Error {
  override name = "CliError";
}

/** A load error about `device: "cuda"` (no GPU, no addon), worded as the flag the user gave; others as they are. */
export function asDeviceFlagError(e: unknown): unknown {
  if (!(e instanceof Error)) return e;
  if (e.message.startsWith("device cuda: ") || e.message.startsWith("devices ")) return new CliError(`--${e.message}`);
  // An option error names the library option and its flag ("devices (--devices): …"): the flag is what the user typed.
  const flag = /^\w+ \((--[\w-]+)\): ([\s\S]*)$/.exec(e.message);
  return e.name === "OptionError" && flag ? new CliError(`${flag[1]}: ${flag[2]}`) : e;
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
