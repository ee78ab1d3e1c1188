// CPU offload planning (--max-gpu-memory): which layers stay in pinned host memory for a budget, the
// layout chosen, and the errors that say what would fit. Pure functions: no GPU needed (the copies
// themselves are tested by offload.test.mjs on a GPU host).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SafetensorsCollection } from "@df11/hub-loader";
import { OptionError, writeSyntheticModel } from "@df11/models";
import { DeviceWeights } from "../src/backend/device-weights.js";
import type { WeightFormat } from "../src/backend/formats/matrix.js";
import { choosePlacement, maxGpuMemoryFlag, offloadLast, planOffload, PlacementShortfall, type LayoutNeeds, type PlacementRequest } from "../src/backend/offload-plan.js";

const GB = 1e9;
/** 32 layers of 0.5 GB, 1 GB of everything else (embeddings, KV cache, working memory). */
const eightLike = { layerBytes: Array.from({ length: 32 }, () => 0.5 * GB), otherBytes: 1 * GB };

describe("planOffload: the fewest last layers for a budget", () => {
  it("offloads nothing when everything fits", () => {
    const r = planOffload(eightLike, 17 * GB);
    expect(r.fits).toBe(true);
    expect(r.plan.layers).toEqual([]);
    expect(r.plan.deviceBytes).toBe(17 * GB);
    expect(r.plan.slots).toBe(0);
  });

  it("offloads the last layers, two slots of the largest one taking their share", () => {
    // 17 GB resident; 12 GB allowed: 5 GB to save, 0.5 GB per layer beyond the two slots → 12 layers.
    const r = planOffload(eightLike, 12 * GB);
    expect(r.fits).toBe(true);
    expect(r.plan.layers).toEqual(Array.from({ length: 12 }, (_, i) => 20 + i));
    expect(r.plan.slots).toBe(2);
    expect(r.plan.slotBytes).toBe(0.5 * GB);
    expect(r.plan.hostBytes).toBe(6 * GB);
    expect(r.plan.deviceBytes).toBe(12 * GB);
    // One byte less needs one more layer.
    expect(planOffload(eightLike, 12 * GB - 1).plan.layers.length).toBe(13);
  });

  it("never offloads one or two layers of equal size (their slots cost what they save)", () => {
    const r = planOffload(eightLike, 17 * GB - 1);
    expect(r.plan.layers.length).toBe(3);
    expect(r.plan.deviceBytes).toBe(16.5 * GB);
  });

  it("sizes the slots by the largest offloaded layer", () => {
    const uneven = { layerBytes: [1, 1, 1, 4, 1, 1].map((x) => x * GB), otherBytes: 0 };
    expect(offloadLast(uneven, 2)).toMatchObject({ layers: [4, 5], slotBytes: 1 * GB, slots: 2, hostBytes: 2 * GB, deviceBytes: 9 * GB });
    expect(offloadLast(uneven, 3)).toMatchObject({ layers: [3, 4, 5], slotBytes: 4 * GB, deviceBytes: 3 * GB + 8 * GB });
    expect(offloadLast(uneven, 1)).toMatchObject({ slots: 1, deviceBytes: 9 * GB });
  });

  it("says it does not fit, with the plan that needs least, when even every layer offloaded is too much", () => {
    const r = planOffload(eightLike, 1.5 * GB);
    expect(r.fits).toBe(false);
    expect(r.plan.layers.length).toBe(32);
    expect(r.plan.deviceBytes).toBe(2 * GB); // 1 GB + two slots
  });

  it("refuses a layer count outside the model", () => {
    expect(() => offloadLast(eightLike, 33)).toThrow(RangeError);
    expect(() => offloadLast(eightLike, -1)).toThrow(RangeError);
    expect(() => offloadLast(eightLike, 1.5)).toThrow(RangeError);
  });
});

/** Needs per layout of an 8B-like model: BF16 16 GB of layers, fused 71 %, Huffman 68 %. */
const needs = (layout: WeightFormat): LayoutNeeds => {
  const ratio = { bf16: 1, fused: 0.71, huffman: 0.68 }[layout];
  const layerBytes = Array.from({ length: 32 }, () => (ratio * 0.5 * GB));
  return { weightBytes: 32 * ratio * 0.5 * GB + ratio * 1 * GB, layerBytes: layout === "huffman" ? layerBytes.map(() => 0) : layerBytes, kvBytes: 0.5 * GB, workingBytes: 0.5 * GB };
};
const request = (r: Partial<PlacementRequest>): PlacementRequest => ({
  candidates: ["fused", "huffman"],
  needs,
  free: 80 * GB,
  describe: { directory: "/models/x", slots: 1, maxContext: 4096, df11: true },
  ...r,
});

describe("choosePlacement: layout and offload before anything is allocated", () => {
  it("keeps everything resident when it fits the budget, in the first layout that fits", () => {
    expect(choosePlacement(request({}))).toEqual({ layout: "fused" });
    expect(choosePlacement(request({ budget: 14 * GB }))).toEqual({ layout: "fused" }); // 13.07 GB
    // auto's fallback: the Huffman modules resident before offloading anything.
    expect(choosePlacement(request({ budget: 13 * GB }))).toEqual({ layout: "huffman" }); // 12.56 GB
  });

  it("offloads the fewest last layers of the first offloadable layout when no layout fits", () => {
    const bf16 = choosePlacement(request({ candidates: ["bf16"], budget: 12 * GB, describe: { directory: "d", slots: 1, maxContext: 4096, df11: false } }));
    expect(bf16.layout).toBe("bf16");
    // 18 GB resident: 6 GB to save at 0.5 GB per layer, + 2 slots → 14 layers.
    expect(bf16.plan!.layers).toEqual(Array.from({ length: 14 }, (_, i) => 18 + i));
    const fused = choosePlacement(request({ budget: 8 * GB }));
    expect(fused.layout).toBe("fused");
    expect(fused.plan!.deviceBytes).toBeLessThanOrEqual(8 * GB);
    expect(fused.plan!.layers.at(-1)).toBe(31);
  });

  it("never uses more than what is free, budget or not", () => {
    const r = choosePlacement(request({ candidates: ["bf16"], free: 10 * GB, budget: 40 * GB }));
    expect(r.plan!.deviceBytes).toBeLessThanOrEqual(10 * GB);
  });

  it("offloadLayers (testing) offloads exactly that many", () => {
    const r = choosePlacement(request({ offloadLayers: 5 }));
    expect(r.layout).toBe("fused");
    expect(r.plan!.layers).toEqual([27, 28, 29, 30, 31]);
  });

  it("names the options when nothing fits: huffman, --max-gpu-memory, a smaller --max-context", () => {
    let e: unknown;
    try {
      choosePlacement(request({ candidates: ["fused"], free: 10 * GB }));
    } catch (x) {
      e = x;
    }
    expect(e).toBeInstanceOf(PlacementShortfall);
    const s = e as PlacementShortfall;
    expect(s.message).toMatch(/^\/models\/x needs 13\.07 GB of GPU memory with fused weights .*; 10\.00 GB is free\./);
    expect(s.message).toContain("--gpu-weights huffman (needs 12.56 GB)");
    expect(s.message).toMatch(/--max-gpu-memory 10GB \(keeps \d+ of 32 layers in pinned host memory/);
    expect(s.message).toContain("a smaller --max-context (the KV cache takes 0.50 GB)");
    expect(s.message).not.toContain("tokens per step"); // the default step size: nothing to suggest
    expect(s.neededBytes).toBeGreaterThan(s.availableBytes);
  });

  it("suggests fewer tokens per step when steps are larger than the default (df11 serve --max-batch-tokens)", () => {
    let e: unknown;
    try {
      choosePlacement(request({ candidates: ["fused"], free: 10 * GB, describe: { directory: "/models/x", slots: 1, maxContext: 4096, maxRows: 2048, df11: true } }));
    } catch (x) {
      e = x;
    }
    expect(e).toBeInstanceOf(PlacementShortfall);
    expect((e as PlacementShortfall).message).toMatch(/fewer tokens per step \(--max-batch-tokens \/ maxRows: steps of 2048 tokens; working buffers \d+\.\d\d GB\)/);
  });

  it("with a budget too small even to offload every layer: how much offloading needs, and the budget that would do", () => {
    let e: unknown;
    try {
      choosePlacement(request({ candidates: ["bf16"], budget: 2 * GB, describe: { directory: "d", slots: 1, maxContext: 4096, df11: false } }));
    } catch (x) {
      e = x;
    }
    const s = e as PlacementShortfall;
    expect(s).toBeInstanceOf(PlacementShortfall);
    // Everything but the layers (1 GB embeddings + 1 GB KV and working) + two 0.5 GB slots.
    expect(s.neededBytes).toBe(3 * GB);
    expect(s.availableBytes).toBe(2 * GB);
    expect(s.message).toContain("and --max-gpu-memory allows 2.00 GB");
    expect(s.message).toContain("Offloading layers to pinned host memory (bf16 layout) needs at least 3.00 GB (32 of 32 layers offloaded, 2 slots of 0.50 GB)");
    expect(s.message).toContain("--max-gpu-memory 3GB or more");
    expect(s.message).toContain("a DF11 model (df11 compress)");
  });

  it("refuses to offload the huffman layout, naming the option", () => {
    expect(() => choosePlacement(request({ candidates: ["huffman"], budget: 8 * GB }))).toThrow(OptionError);
    expect(() => choosePlacement(request({ candidates: ["huffman"], budget: 8 * GB }))).toThrow(/use fused or bf16/);
    expect(() => choosePlacement(request({ candidates: ["huffman"], offloadLayers: 2 }))).toThrow(OptionError);
    // Resident within the budget: fine.
    expect(choosePlacement(request({ candidates: ["huffman"], budget: 13 * GB }))).toEqual({ layout: "huffman" });
  });

  it("formats budgets as --max-gpu-memory values", () => {
    expect(maxGpuMemoryFlag(10.27e9, "floor")).toBe("10.2GB");
    expect(maxGpuMemoryFlag(10.21e9, "ceil")).toBe("10.3GB");
    expect(maxGpuMemoryFlag(3e9, "ceil")).toBe("3GB");
  });
});

describe("planned bytes per decoder layer (what offloading a layer moves)", () => {
  const dir = mkdtempSync(join(tmpdir(), "df11-offload-plan-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("counts each layer's matrices, in the layout asked for, within the planned total", async () => {
    const shape = { vocab: 512, hidden: 64, intermediate: 96, layers: 5, heads: 4, kvHeads: 2 };
    await writeSyntheticModel(dir, shape, { seed: 3 });
    await using files = await SafetensorsCollection.openDirectory(dir);
    for (const layout of ["bf16", "fused"] as const) {
      const p = DeviceWeights.plannedLayout(files, undefined, {}, layout);
      expect(p.layers.length).toBe(5);
      expect(new Set(p.layers).size).toBe(1); // layers of one shape cost the same
      const H = shape.hidden;
      const qkvo = 2 * H * H + 2 * (H / 2) * H; // q, o: H×H; k, v: (kvHeads·headDim)×H
      const mlp = 3 * shape.intermediate * H;
      if (layout === "bf16") expect(p.layers[0]).toBeGreaterThanOrEqual((qkvo + mlp) * 2);
      expect(p.layers.reduce((a, b) => a + b, 0)).toBeLessThan(p.total);
      expect(DeviceWeights.plannedBytes(files, undefined, {}, layout)).toBe(p.total);
    }
  });
});
