// `df11-bench plot <dir>` draws the CPU-offload benchmark's JSON (offload-generate.json, as scripts/gpu/all.sh saves it).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { plotResults } from "../src/plot.js";

describe("plot: offload-generate", () => {
  const dir = mkdtempSync(join(tmpdir(), "df11-plot-offload-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("writes decode, memory and context charts", async () => {
    const run = (label: string, weights: string, tps: number, layers: number[] | null) => ({ label, weights, decodeTokensPerSecond: tps, prefillTokensPerSecond: 100, peakGpuBytes: 11.5e9, engine: { offload: layers ? { layers, hostBytes: 1, slotBytes: 1 } : null } });
    const result = {
      benchmark: "offload-generate",
      budgetBytes: 12e9,
      promptTokens: 512,
      newTokens: 96,
      device: { name: "NVIDIA H200" },
      runs: [run("DF11 resident", "df11", 120, null), run("BF16 offloaded", "bf16", 6, [18, 19, 20]), run("DF11 offloaded", "df11", 40, [30, 31, 29])],
      ratios: { df11ResidentOverBf16Offloaded: 20, df11OffloadedOverBf16Offloaded: 6.7 },
      context: { budgetBytes: 18e9, bf16: { maxContext: 12000 }, df11: { maxContext: 46000 }, ratio: 3.83 },
    };
    writeFileSync(join(dir, "offload-generate.json"), JSON.stringify(result));
    const written = await plotResults(dir);
    expect(written.map((p) => p.slice(dir.length + 1)).sort()).toEqual(["offload-context.svg", "offload-decode.svg", "offload-memory.svg"]);
    const decode = readFileSync(join(dir, "offload-decode.svg"), "utf8");
    expect(decode).toContain("BF16 offloaded, 3 layers on the host");
    expect(decode).toContain("6.7×");
  });
});
