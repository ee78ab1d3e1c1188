// `df11-bench plot <dir>` draws decode-steps-h200.json and decode-steps-4k-h200.json (scripts/gpu/decode-steps.mjs,
// all.sh's `steps` stage; the second with STEP_POSITION=4000).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { plotResults } from "../src/plot.js";

describe("plot: decode-steps", () => {
  const dir = mkdtempSync(join(tmpdir(), "df11-plot-steps-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  /** One row count's measurement as decode-steps.mjs saves it (`extra`: fields of a POSITION run). */
  const level = (rows: number, gpuMsPerStep: number, extra: object = {}) => ({ rows, ...extra, wallMsPerStep: gpuMsPerStep + 0.05, gpuMsPerStep, host: { setStep: 0, launch: 0, readBack: 0 } });

  it("writes one bar per row count and layout, GPU ms per step", async () => {
    const result = {
      benchmark: "decode-steps",
      bf16: { levels: [level(1, 4.66), level(16, 5.84)], profileRows: 16, opsPerStep: [] },
      fused: { levels: [level(1, 4.28), level(16, 6.02)], profileRows: 16, opsPerStep: [] },
    };
    writeFileSync(join(dir, "decode-steps-h200.json"), JSON.stringify(result));
    const written = await plotResults(dir);
    expect(written.map((p) => p.slice(dir.length + 1))).toEqual(["decode-steps.svg"]);
    const svg = readFileSync(join(dir, "decode-steps.svg"), "utf8");
    for (const label of ["1 sequence, BF16", "1 sequence, DF11 fused", "16 sequences, BF16", "16 sequences, DF11 fused"]) expect(svg).toContain(label);
    expect(svg).toContain("6.02");
    expect(svg).not.toContain("at position");
  });

  it("names the position in the title when the sequences were filled beyond the default 128, and the sequences that fit", async () => {
    const dir4k = mkdtempSync(join(tmpdir(), "df11-plot-steps-4k-"));
    try {
      const at4k = (rows: number, gpuMsPerStep: number) => level(rows, gpuMsPerStep, { firstPositions: { min: 4004, max: 4004 } });
      const result = {
        benchmark: "decode-steps",
        promptTokens: 4000,
        position: 4000,
        rewound: true,
        capacity: { context: 4096, bf16: { context: 4096, sequences: 245, loaded: true }, fused: { context: 4096, sequences: 254, loaded: true } },
        bf16: { levels: [at4k(1, 4.9), at4k(64, 27.5)], profileRows: 16, opsPerStep: [] },
        fused: { levels: [at4k(1, 4.5), at4k(64, 26.1)], profileRows: 16, opsPerStep: [] },
      };
      writeFileSync(join(dir4k, "decode-steps-4k-h200.json"), JSON.stringify(result));
      const written = await plotResults(dir4k);
      expect(written.map((p) => p.slice(dir4k.length + 1))).toEqual(["decode-steps-4k.svg"]);
      const svg = readFileSync(join(dir4k, "decode-steps-4k.svg"), "utf8");
      expect(svg).toContain("at position 4,000");
      expect(svg).toContain("BF16 245, DF11 254");
      expect(svg).toContain("64 sequences, DF11 fused");
      expect(svg).toContain("4.5 ms");
    } finally {
      rmSync(dir4k, { recursive: true, force: true });
    }
  });
});
