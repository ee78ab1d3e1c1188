// fusedMatrixStats: one entry per fused matrix, every weight it holds named (runs without a GPU).
import { describe, expect, it } from "vitest";
import { fusedMatrixStats, type FusedMatrixCost } from "../src/backend/formats/fused-stats.js";

type Fake = { kind: "fused" | "bf16" } & FusedMatrixCost;
const fused = (rows: number, cols: number, escapes: number, deviceBytes: number): Fake => ({ kind: "fused", rows, cols, escapes, deviceBytes });
const isFused = (m: Fake): m is Fake => m.kind === "fused";

describe("fusedMatrixStats", () => {
  it("groups a fused projection's weights under one matrix, in row order, and leaves other layouts out", () => {
    const qkv = fused(12, 256, 30, 12 * 256 * 1.5);
    const o = fused(8, 256, 4, 8 * 256 * 1.25);
    const norm: Fake = { kind: "bf16", rows: 1, cols: 256, escapes: 0, deviceBytes: 512 };
    const placed: Array<[string, { matrix: Fake; firstRow: number }]> = [
      ["l.0.k_proj.weight", { matrix: qkv, firstRow: 8 }],
      ["l.0.q_proj.weight", { matrix: qkv, firstRow: 0 }],
      ["l.0.norm.weight", { matrix: norm, firstRow: 0 }],
      ["l.0.v_proj.weight", { matrix: qkv, firstRow: 10 }],
      ["l.0.o_proj.weight", { matrix: o, firstRow: 0 }],
    ];
    const stats = fusedMatrixStats(placed, isFused);
    expect(stats).toHaveLength(2);
    expect(stats[0]).toEqual({
      name: "l.0.k_proj.weight",
      names: ["l.0.q_proj.weight", "l.0.k_proj.weight", "l.0.v_proj.weight"],
      rows: 12,
      cols: 256,
      escapes: 30,
      bytes: 4608,
      bitsPerWeight: 12,
      escapeRate: 30 / 3072,
    });
    expect(stats[1]).toMatchObject({ names: ["l.0.o_proj.weight"], bitsPerWeight: 10, escapeRate: 4 / 2048 });
  });
});
