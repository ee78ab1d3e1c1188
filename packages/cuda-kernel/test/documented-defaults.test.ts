// The defaults the docs state are the code's: the README's options table, the options' JSDoc and the
// CLI's help all name the same values as the constants the backend falls back to (issue #18).
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { DEFAULT_DECODE_CHUNK, DEFAULT_GEMM_MIN_ROWS, DEFAULT_MAX_CONTEXT, DEFAULT_MAX_ROWS } from "../src/index.js";

const pkg = join(dirname(fileURLToPath(import.meta.url)), "..");
const read = (path: string) => readFileSync(join(pkg, path), "utf8");
const backendSource = read("src/backend/cuda-backend.ts");
const constants: Record<string, number> = { DEFAULT_DECODE_CHUNK, DEFAULT_GEMM_MIN_ROWS, DEFAULT_MAX_CONTEXT, DEFAULT_MAX_ROWS };

/** README "Options and defaults" rows: option name → default cell. */
function readmeDefaults(): Map<string, string> {
  const readme = read("README.md");
  const start = readme.indexOf("### Options and defaults");
  expect(start, "README has an 'Options and defaults' section").toBeGreaterThan(0);
  const section = readme.slice(start, readme.indexOf("\n### ", start + 1));
  const rows = new Map<string, string>();
  for (const line of section.split("\n")) {
    const m = /^\| `(\w+)`[^|]*\| ([^|]+) \|/.exec(line);
    if (m) rows.set(m[1], m[2].trim());
  }
  return rows;
}

/** CudaBackendOptions' properties with their JSDoc, from the source. */
function optionDocs(): Map<string, string> {
  const body = /export interface CudaBackendOptions \{([\s\S]*?)\n\}/.exec(backendSource)![1];
  const docs = new Map<string, string>();
  for (const m of body.matchAll(/\/\*\*([\s\S]*?)\*\/\s*readonly (\w+)\??:/g)) docs.set(m[2], m[1].replace(/\s*\*\s*/g, " "));
  for (const m of body.matchAll(/^\s*readonly (\w+)\??:/gm)) if (!docs.has(m[1])) docs.set(m[1], "");
  return docs;
}

/** What a stated default should read as, per option: the constant it falls back to, or a literal. */
const expected: Record<string, (cell: string) => boolean> = {
  gpuWeights: (c) => c === "`auto`",
  maxContext: (c) => c.includes(`${DEFAULT_MAX_CONTEXT}`) && c.includes("DEFAULT_MAX_CONTEXT"),
  slots: (c) => c === "1",
  maxRows: (c) => c.startsWith(`${DEFAULT_MAX_ROWS} `) && c.includes("DEFAULT_MAX_ROWS"),
  gemmMinRows: (c) => c.startsWith(`${DEFAULT_GEMM_MIN_ROWS} `) && c.includes("DEFAULT_GEMM_MIN_ROWS"),
  decodeChunkElements: (c) => c.startsWith(`${DEFAULT_DECODE_CHUNK / 2 ** 20} Mi = ${DEFAULT_DECODE_CHUNK.toLocaleString("en")} `) && c.includes("DEFAULT_DECODE_CHUNK"),
  checkStored: (c) => c === "true",
  verifyWeights: (c) => c === "false",
  device: (c) => c.startsWith("the current device (0 unless"),
  maxGpuMemory: (c) => c === "none (what is free)",
};
/** Options for testing and tooling, not listed in the table (`shard`: set by TensorParallelBackend for each GPU). */
const undocumented = new Set(["onProgress", "profile", "fault", "offloadLayers", "shard"]);

describe("documented defaults = the code's (README table, JSDoc, CLI help)", () => {
  it("the README table lists every option of CudaBackendOptions, each default as the code has it", () => {
    const table = readmeDefaults();
    const options = [...optionDocs().keys()].filter((k) => !undocumented.has(k));
    expect([...table.keys()].sort()).toEqual(options.sort());
    for (const [name, cell] of table) {
      expect(expected[name], `no expectation for README option ${name}`).toBeDefined();
      expect(expected[name](cell), `README: ${name}'s default reads "${cell}"`).toBe(true);
    }
  });

  it("each option's JSDoc default names the constant the code falls back to (or the README's literal)", () => {
    const table = readmeDefaults();
    for (const [name, doc] of optionDocs()) {
      const stated = /[Dd]efault:? ([^.;]*)/.exec(doc)?.[1];
      if (!stated || undocumented.has(name)) continue;
      const linked = /\{@link (DEFAULT_\w+)\}/.exec(stated)?.[1];
      if (linked) {
        expect(constants[linked], `${name}: JSDoc links ${linked}, which is not exported`).toBeDefined();
        expect(table.get(name), `${name}: README names ${linked}`).toContain(linked);
        expect(backendSource, `${name}: the code falls back to ${linked}`).toMatch(new RegExp(`options\\.${name} \\?\\? [^;]*${linked}`));
      } else {
        const literal = /^(`?\w+`?)/.exec(stated)![1];
        expect(table.get(name)!.split(" ")[0], `${name}: JSDoc says default ${literal}`).toBe(literal);
        const fallback = new RegExp(`options\\.${name} \\?\\? ([^;)]+)`).exec(backendSource)?.[1];
        if (fallback !== undefined) expect(fallback.replace(/"/g, ""), `${name}: the code falls back to ${fallback}`).toBe(literal.replace(/`/g, ""));
      }
    }
  });

  it("df11's --max-context help states DEFAULT_MAX_CONTEXT", () => {
    const bin = readFileSync(join(pkg, "../cli/src/bin.ts"), "utf8");
    const help = /"--max-context <n>", "positions the KV cache holds [^"]*"/.exec(bin)?.[0]; // its GPU default
    expect(help).toBeDefined();
    expect(help).toContain(`min(model's maximum, ${DEFAULT_MAX_CONTEXT})`);
  });
});

describe("decode windows", () => {
  it("are the chunk asked for, capped at the model's largest matrix", async () => {
    const { decodeWindowElements } = await import("../src/backend/cuda-backend.js");
    const { parseTextModelConfig } = await import("@df11/models");
    const llama8b = parseTextModelConfig({ model_type: "llama", hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8, vocab_size: 128256 });
    expect(decodeWindowElements(llama8b, DEFAULT_DECODE_CHUNK)).toBe(DEFAULT_DECODE_CHUNK);
    const tiny = parseTextModelConfig({ model_type: "llama", hidden_size: 64, intermediate_size: 256, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 1000 });
    expect(decodeWindowElements(tiny, DEFAULT_DECODE_CHUNK)).toBe(1000 * 64); // lm_head
    expect(decodeWindowElements(tiny, 4096)).toBe(4096);
  });
});
