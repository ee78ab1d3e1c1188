// How df11 prints errors: one prefix (`df11: error: `) for the argument parser's errors and df11's own,
// and after a parse error a one-line pointer to the help, not the help itself.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeSyntheticModel } from "@df11/models";
import { commandPath, configureErrorOutput, formatError, helpHint } from "../src/error-output.js";
import { df11, SMALL } from "./helpers.js";

/** Run df11 expecting it to fail; its exit code and stderr. */
async function failing(...args: string[]): Promise<{ code: number; stderr: string }> {
  try {
    await df11(...args);
  } catch (e) {
    const { code, stderr } = e as { code: number; stderr: string };
    return { code, stderr };
  }
  throw new Error(`df11 ${args.join(" ")} succeeded`);
}

describe("formatError / helpHint", () => {
  it("gives commander's errors df11's prefix, once", () => {
    expect(formatError("error: unknown option '--bogus'\n")).toBe("df11: error: unknown option '--bogus'\n");
    expect(formatError("--devices 0,1: no CUDA device")).toBe("df11: error: --devices 0,1: no CUDA device\n");
    // Only a leading "error: " is commander's: one inside the message stays.
    expect(formatError("chat template: error: x")).toBe("df11: error: chat template: error: x\n");
  });

  it("names the command as typed, and the options or the commands", () => {
    const program = new Command("df11");
    const generate = program.command("generate");
    expect(commandPath(generate)).toBe("df11 generate");
    expect(helpHint(generate)).toBe("run 'df11 generate --help' for the options");
    expect(helpHint(program)).toBe("run 'df11 --help' for the commands");
  });

  it("configures every command: the error with the prefix, the hint, no help text", () => {
    const program = new Command("df11").exitOverride();
    program.command("generate").option("--max-tokens <n>").action(() => {});
    let written = "";
    configureErrorOutput(program);
    for (const c of [program, ...program.commands]) c.configureOutput({ writeErr: (s) => (written += s) });
    expect(() => program.parse(["generate", "--bogus"], { from: "user" })).toThrow();
    expect(written).toBe("df11: error: unknown option '--bogus'\nrun 'df11 generate --help' for the options\n");
  });
});

describe("df11 errors on the command line", () => {
  const work = mkdtempSync(join(tmpdir(), "df11-errors-"));
  const model = join(work, "m");
  beforeAll(() => writeSyntheticModel(model, SMALL, { seed: 9 }));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it("an unknown flag: the error and one line pointing at the help, exit 1", async () => {
    const r = await failing("generate", model, "--input-ids", "1", "--bogus");
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("df11: error: unknown option '--bogus'\nrun 'df11 generate --help' for the options\n");
  });

  it("a bad value, a missing argument, an unknown command: the same two lines", async () => {
    const bad = await failing("generate", model, "--max-gpu-memory", "plenty");
    expect(bad.code).toBe(1);
    expect(bad.stderr.split("\n")).toEqual([expect.stringMatching(/^df11: error: option '--max-gpu-memory <size>' argument 'plenty' is invalid\. expected a size such as 12GB/), "run 'df11 generate --help' for the options", ""]);
    const range = await failing("generate", model, "--top-p", "2");
    expect(range.stderr.split("\n")[0]).toBe("df11: error: option '--top-p <p>' argument '2' is invalid. top-p: expected 0 < p ≤ 1");
    const missing = await failing("serve");
    expect(missing.stderr).toBe("df11: error: missing required argument 'model'\nrun 'df11 serve --help' for the options\n");
    const unknown = await failing("frobnicate");
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^df11: error: unknown command 'frobnicate'\nrun 'df11 --help' for the commands\n$/);
  });

  it("df11's own errors carry the same prefix", async () => {
    const r = await failing("generate", model);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("df11: error: give --prompt TEXT or --input-ids 1,2,3\n");
  });
});
