import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";

/** Run `script` with `args` in a Node process of its own (its GPU memory and peak RSS are its own); its last stdout line is JSON. */
export function runChild<T>(script: string, args: readonly string[], env?: Record<string, string>): T {
  const out = execFileSync(process.execPath, [script, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], maxBuffer: 1 << 26, env: { ...process.env, ...env } });
  return JSON.parse(out.trim().split("\n").pop()!) as T;
}

/** Write a result as JSON (creating the folder) and return the absolute path. */
export function saveJson(path: string, value: unknown): string {
  const out = resolve(path);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(value, null, 2) + "\n");
  return out;
}

/**
 * The options every GPU generation benchmark takes (--bf16 DIR, --df11 DIR, --layout for its child runs,
 * --out FILE, --prompt-tokens, --new-tokens), for node:util's parseArgs.
 */
export const benchOptions = (defaults: { out: string; promptTokens: number; newTokens: number }) =>
  ({
    bf16: { type: "string" },
    df11: { type: "string" },
    layout: { type: "string" },
    out: { type: "string", default: defaults.out },
    "prompt-tokens": { type: "string", default: String(defaults.promptTokens) },
    "new-tokens": { type: "string", default: String(defaults.newTokens) },
  }) as const;
