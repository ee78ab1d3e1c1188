// The GPU generation bench's per-matrix fused-layout report, shaped from figures the reference encoder
// (@df11/codec, byte-identical to the GPU's transcoder) gives on the CPU: every matrix, per-kind spreads.
import { describe, expect, it } from "vitest";
import { encodeFusedMatrix, fusedLayoutStats, fusedMatrixBytes, syntheticWeights } from "@df11/codec";
import { fusedMatricesReport, groupName, matrixKind, PER_MATRIX_COLUMNS, type FusedMatrixFigures } from "../src/fused-matrices.js";

/** A matrix encoded in the fused layout on the CPU: its figures, and the encoder's own stats. */
function encoded(names: string[], rows: number, cols: number, seed: number, std: number) {
  const m = encodeFusedMatrix(syntheticWeights(rows * cols, seed, std), rows, cols);
  const figures: FusedMatrixFigures = { names, rows, cols, escapes: m.escapePositions.length, bytes: fusedMatrixBytes(m) };
  return { figures, stats: fusedLayoutStats(m) };
}

/** A 2-layer llama-shaped model's fused matrices as the GPU holds them (q|k|v and gate|up fused), shuffled. */
function tinyModel() {
  const out: ReturnType<typeof encoded>[] = [];
  let seed = 1;
  const std = () => 0.01 + 0.01 * (seed % 3); // a little spread between matrices
  for (let l = 1; l >= 0; l--) {
    const p = `model.layers.${l}`;
    out.push(encoded([`${p}.mlp.down_proj.weight`], 256, 512, seed++, std()));
    out.push(encoded([`${p}.self_attn.q_proj.weight`, `${p}.self_attn.k_proj.weight`, `${p}.self_attn.v_proj.weight`], 512, 256, seed++, std()));
    out.push(encoded([`${p}.mlp.gate_proj.weight`, `${p}.mlp.up_proj.weight`], 1024, 256, seed++, std()));
    out.push(encoded([`${p}.self_attn.o_proj.weight`], 256, 256, seed++, std()));
  }
  out.push(encoded(["lm_head.weight"], 512, 256, seed++, std()));
  out.push(encoded(["model.embed_tokens.weight"], 512, 256, seed++, std()));
  return out;
}

describe("fusedMatricesReport", () => {
  const model = tinyModel();
  const report = fusedMatricesReport(model.map((m) => m.figures));

  it("lists every matrix, embedding first, by layer and kind, lm_head last, with the encoder's figures", () => {
    expect(report.matrixCount).toBe(10);
    expect(report.perMatrixColumns).toEqual(PER_MATRIX_COLUMNS);
    expect(report.perMatrix.map((r) => r[0])).toEqual([
      "model.embed_tokens.weight",
      "model.layers.0.self_attn.{q,k,v}_proj.weight",
      "model.layers.0.self_attn.o_proj.weight",
      "model.layers.0.mlp.{gate,up}_proj.weight",
      "model.layers.0.mlp.down_proj.weight",
      "model.layers.1.self_attn.{q,k,v}_proj.weight",
      "model.layers.1.self_attn.o_proj.weight",
      "model.layers.1.mlp.{gate,up}_proj.weight",
      "model.layers.1.mlp.down_proj.weight",
      "lm_head.weight",
    ]);
    for (const { figures, stats } of model) {
      const row = report.perMatrix.find((r) => r[0] === groupName(figures.names))!;
      expect(row).toEqual([groupName(figures.names), matrixKind(figures.names), figures.rows, figures.cols, Number(stats.bitsPerWeight.toFixed(4)), Number(stats.escapeRate.toPrecision(4)), figures.bytes]);
    }
    // Real figures: about 11 bits per weight, some escapes.
    for (const r of report.perMatrix) {
      expect(r[4]).toBeGreaterThan(9);
      expect(r[4]).toBeLessThan(14);
      expect(r[5]).toBeGreaterThan(0);
    }
  });

  it("summarises each kind: min, mean and max of bits per weight and escape rate", () => {
    expect(report.byKind.map((k) => [k.kind, k.matrices])).toEqual([
      ["embed_tokens", 1],
      ["q+k+v", 2],
      ["o", 2],
      ["gate+up", 2],
      ["down", 2],
      ["lm_head", 1],
    ]);
    for (const k of report.byKind) {
      const of = model.filter((m) => matrixKind(m.figures.names) === k.kind);
      const bits = of.map((m) => m.stats.bitsPerWeight);
      expect(k.bitsPerWeight.min).toBeCloseTo(Math.min(...bits), 12);
      expect(k.bitsPerWeight.max).toBeCloseTo(Math.max(...bits), 12);
      expect(k.bitsPerWeight.mean).toBeCloseTo(bits.reduce((a, b) => a + b) / bits.length, 12);
      expect(k.escapeRate.min).toBeLessThanOrEqual(k.escapeRate.mean);
      expect(k.escapeRate.mean).toBeLessThanOrEqual(k.escapeRate.max);
      expect(k.bytes).toBe(of.reduce((n, m) => n + m.figures.bytes, 0));
      expect(k.weights).toBe(of.reduce((n, m) => n + m.figures.rows * m.figures.cols, 0));
    }
    const down = report.byKind.find((k) => k.kind === "down")!;
    expect(down.bitsPerWeight.min).toBeLessThan(down.bitsPerWeight.max); // the two layers differ
  });

  it("keeps all 130 matrices of an 8B-shaped model in a small JSON", () => {
    const figures: FusedMatrixFigures[] = [
      { names: ["model.embed_tokens.weight"], rows: 128256, cols: 4096, escapes: 6.7e6, bytes: 744e6 },
      { names: ["lm_head.weight"], rows: 128256, cols: 4096, escapes: 6.7e6, bytes: 744e6 },
    ];
    for (let l = 0; l < 32; l++) {
      const p = `model.layers.${l}`;
      figures.push({ names: ["q", "k", "v"].map((x) => `${p}.self_attn.${x}_proj.weight`), rows: 6144, cols: 4096, escapes: 322e3 + l, bytes: 35.6e6 + l });
      figures.push({ names: [`${p}.self_attn.o_proj.weight`], rows: 4096, cols: 4096, escapes: 215e3, bytes: 23.7e6 });
      figures.push({ names: ["gate", "up"].map((x) => `${p}.mlp.${x}_proj.weight`), rows: 28672, cols: 4096, escapes: 1.5e6, bytes: 166e6 });
      figures.push({ names: [`${p}.mlp.down_proj.weight`], rows: 4096, cols: 14336, escapes: 752e3, bytes: 83e6 });
    }
    const r = fusedMatricesReport(figures);
    expect(r.perMatrix).toHaveLength(130);
    expect(new Set(r.perMatrix.map((x) => x[0])).size).toBe(130);
    expect(r.byKind.find((k) => k.kind === "q+k+v")!.matrices).toBe(32);
    expect(JSON.stringify(r).length).toBeLessThan(16_000);
  });

  it("names matrices compactly and refuses a matrix without weights", () => {
    expect(groupName(["a.b.weight"])).toBe("a.b.weight");
    expect(groupName(["lm_head.weight", "model.embed_tokens.weight"])).toBe("{lm_head,model.embed_tokens}.weight");
    expect(groupName(["m.qkv_proj.weight", "m.qk_norm.weight"])).toBe("m.{qkv_proj,qk_norm}.weight");
    expect(matrixKind(["m.layers.0.self_attn.qkv_proj.weight"])).toBe("qkv");
    expect(matrixKind(["m.layers.0.mlp.gate_up_proj.weight"])).toBe("gate_up");
    expect(() => fusedMatricesReport([{ names: ["x"], rows: 0, cols: 256, escapes: 0, bytes: 0 }])).toThrow(RangeError);
  });
});
