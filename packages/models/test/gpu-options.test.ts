// GPU-only load options (devices, gpuWeights, maxGpuMemory): options that do not combine are refused
// before anything is read or any GPU looked for, and device "auto" without a GPU does not drop them
// quietly (a GpuOptionsIgnoredWarning). A stand-in CUDA provider plays "no GPU" on any machine.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkGpuOptions, GpuOptionsIgnoredWarning, gpuOnlyOptions, loadCausalLM, loadModel, OptionError, registerBackend, TP_HUFFMAN, writeSyntheticModel } from "../src/index.js";

const SMALL = { vocab: 1000, hidden: 64, intermediate: 160, layers: 2, heads: 4, kvHeads: 2 };
/** How often the stand-in provider was asked whether a GPU is there. */
let asked = 0;
registerBackend("cuda", {
  unavailableReason: () => {
    asked++;
    return "no CUDA device (stand-in)";
  },
  load: () => Promise.reject(new Error("the stand-in has no GPU")),
});

/** The warnings emitted while `job` runs (after the tick they are delivered on). */
async function warningsDuring<T>(job: () => Promise<T>): Promise<{ value: T; warnings: Error[] }> {
  const warnings: Error[] = [];
  const listener = (w: Error) => warnings.push(w);
  process.on("warning", listener);
  try {
    const value = await job();
    await new Promise((r) => setImmediate(r));
    return { value, warnings };
  } finally {
    process.off("warning", listener);
  }
}

describe("checkGpuOptions: options that do not combine", () => {
  it("several devices do not take gpuWeights huffman; they take maxGpuMemory (each GPU's budget); one device takes both", () => {
    expect(() => checkGpuOptions({ devices: [0, 1], gpuWeights: "huffman" })).toThrow(OptionError);
    expect(() => checkGpuOptions({ devices: [0, 1], gpuWeights: "huffman" })).toThrow(`gpuWeights (--gpu-weights): ${TP_HUFFMAN}`);
    expect(() => checkGpuOptions({ devices: [0, 1], maxGpuMemory: 12e9 })).not.toThrow();
    expect(() => checkGpuOptions({ devices: [0, 1], maxGpuMemory: -1 })).toThrow(/^maxGpuMemory \(--max-gpu-memory\): must be a positive number of bytes/);
    expect(() => checkGpuOptions({ devices: [1], maxGpuMemory: 12e9, gpuWeights: "huffman" })).not.toThrow();
    expect(() => checkGpuOptions({ devices: [0, 1], gpuWeights: "fused", device: "cuda" })).not.toThrow();
  });

  it("device cpu refuses GPU-only options instead of ignoring them; auto and cuda take them", () => {
    expect(() => checkGpuOptions({ device: "cpu", maxGpuMemory: 12e9 })).toThrow(/^maxGpuMemory \(--max-gpu-memory\): a device-memory budget applies to the GPU; it does not apply to device cpu/);
    expect(() => checkGpuOptions({ device: "cpu", gpuWeights: "bf16" })).toThrow(/^gpuWeights \(--gpu-weights\): bf16 applies to the GPU/);
    expect(() => checkGpuOptions({ device: "cpu", gpuWeights: "auto" })).not.toThrow();
    for (const device of ["auto", "cuda", undefined] as const) expect(() => checkGpuOptions({ device, maxGpuMemory: 12e9, gpuWeights: "fused" })).not.toThrow();
  });

  it("a gpuWeights value that is not a layout is named", () => {
    expect(() => checkGpuOptions({ gpuWeights: "int4" as never })).toThrow(/^gpuWeights \(--gpu-weights\): must be auto, fused, huffman or bf16, got "int4"/);
  });

  it("gpuOnlyOptions lists gpuWeights (not auto) and maxGpuMemory, not devices", () => {
    expect(gpuOnlyOptions({ gpuWeights: "auto", devices: [0] })).toEqual([]);
    expect(gpuOnlyOptions({ gpuWeights: "fused", maxGpuMemory: 5e9 })).toEqual([
      { option: "gpuWeights", flag: "--gpu-weights", value: "fused" },
      { option: "maxGpuMemory", flag: "--max-gpu-memory", value: "5000000000" },
    ]);
  });
});

describe("loading: the conflict first, then the device and the model", () => {
  const work = mkdtempSync(join(tmpdir(), "df11-gpu-options-"));
  const dir = join(work, "m");
  beforeAll(() => writeSyntheticModel(dir, SMALL, { seed: 4 }));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it("loadCausalLM names the conflict before the GPU is looked for or the directory read", async () => {
    asked = 0;
    await expect(loadCausalLM(join(work, "no-such-model"), { devices: [0, 1], gpuWeights: "huffman" })).rejects.toThrow(`gpuWeights (--gpu-weights): ${TP_HUFFMAN}`);
    await expect(loadCausalLM(dir, { device: "auto", devices: [0, 1], gpuWeights: "huffman" })).rejects.toThrow(OptionError);
    expect(asked).toBe(0);
    // Without the conflict, the missing GPU is what is said.
    await expect(loadCausalLM(dir, { devices: [0, 1] })).rejects.toThrow("devices 0,1: no CUDA device (stand-in)");
    expect(asked).toBe(1);
  });

  it("loadModel names it before resolving (or downloading) the model", async () => {
    asked = 0;
    await expect(loadModel("nobody/not-a-model", { devices: [0, 1], gpuWeights: "huffman" })).rejects.toThrow(OptionError);
    await expect(loadModel("nobody/not-a-model", { device: "cpu", gpuWeights: "fused" })).rejects.toThrow(/gpuWeights \(--gpu-weights\): fused applies to the GPU/);
    expect(asked).toBe(0);
  });

  it("device cpu (loadCausalLM's default) refuses maxGpuMemory rather than ignoring it", async () => {
    await expect(loadCausalLM(dir, { maxGpuMemory: 12e9 })).rejects.toThrow(OptionError);
    await expect(loadCausalLM(dir, { device: "cpu", gpuWeights: "fused" })).rejects.toThrow(OptionError);
  });

  it("device auto without a GPU: runs on the CPU and warns that the GPU-only options are ignored", async () => {
    const { value: lm, warnings } = await warningsDuring(() => loadCausalLM(dir, { device: "auto", maxGpuMemory: 12e9, gpuWeights: "fused" }));
    using _ = lm;
    expect(lm.device).toBe("cpu");
    const ignored = warnings.filter((w) => w instanceof GpuOptionsIgnoredWarning) as GpuOptionsIgnoredWarning[];
    expect(ignored).toHaveLength(1);
    expect(ignored[0].code).toBe("DF11_GPU_OPTIONS_IGNORED");
    expect(ignored[0].ignored.map((o) => o.option)).toEqual(["gpuWeights", "maxGpuMemory"]);
    expect(ignored[0].reason).toBe("no CUDA device (stand-in)");
    expect(ignored[0].message).toBe("gpuWeights (--gpu-weights) and maxGpuMemory (--max-gpu-memory) are ignored: the model runs on the CPU (device auto found no usable GPU: no CUDA device (stand-in))");
  });

  it("device auto without a GPU and no GPU-only options (gpuWeights auto): no warning", async () => {
    const { value: lm, warnings } = await warningsDuring(() => loadCausalLM(dir, { device: "auto", gpuWeights: "auto", maxContext: 64 }));
    using _ = lm;
    expect(lm.device).toBe("cpu");
    expect(warnings.filter((w) => w.name === "GpuOptionsIgnoredWarning")).toEqual([]);
  });
});
