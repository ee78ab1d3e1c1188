import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { repoRoot } from "../../../test-support/fixtures.js";

export const run = promisify(execFile);
/** The built `df11` command. */
export const bin = join(repoRoot, "packages", "cli", "dist", "bin.js");
/** Run `df11 …` as a user would; rejects with { code, stdout, stderr } on a non-zero exit. */
export const df11 = (...args: string[]) => run(process.execPath, [bin, ...args]);
/** A small generated llama-shaped model (4 modules). */
export const SMALL = { vocab: 1000, hidden: 64, intermediate: 160, layers: 2, heads: 4, kvHeads: 2 };
