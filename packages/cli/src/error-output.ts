// How the df11 command prints errors: one prefix for every error (the argument parser's and df11's own),
// and a one-line pointer to the help instead of the whole help text after a parse error.
import type { Command } from "commander";

/** The prefix of every error line the CLI prints. */
export const ERROR_PREFIX = "df11: error: ";

/**
 * An error message as the CLI prints it: `df11: error: <message>` and a newline. A leading `error: `
 * (commander's own prefix) is dropped, so the parser's errors read like df11's.
 */
export function formatError(message: string): string {
  return `${ERROR_PREFIX}${message.replace(/^error: /, "").replace(/\n+$/, "")}\n`;
}

/** The command as typed, from the program down: e.g. `df11 generate`. */
export function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(" ");
}

/** The line printed after a parse error: where the options (or the commands) are described. */
export function helpHint(cmd: Command): string {
  return `run '${commandPath(cmd)} --help' for ${cmd.commands.length > 0 ? "the commands" : "the options"}`;
}

/**
 * Make `program` and every command under it print parse errors (unknown option, bad value, missing
 * argument…) as `df11: error: …` followed by {@link helpHint}, instead of commander's `error: …` and the
 * whole help text. The exit code stays commander's (1). Call it after every command is defined.
 */
export function configureErrorOutput(program: Command): void {
  const visit = (cmd: Command) => {
    cmd.configureOutput({ outputError: (str, write) => write(formatError(str)) });
    cmd.showHelpAfterError(helpHint(cmd));
    for (const sub of cmd.commands) visit(sub);
  };
  visit(program);
}
