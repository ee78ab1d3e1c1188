// GPU-only flags of generate, chat, serve (--gpu-weights, --max-gpu-memory): the size parser, refusals
// with --device cpu, the warning when --device auto finds no GPU. The offload itself runs on a GPU
// host (packages/cuda-kernel/test/offload.test.mjs).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { InvalidArgumentError } from "commander";
import { afterAll, describe, expect, it } from "vitest";
import { isCudaAvailable } from "@df11/cuda-kernel";
import { CliError } from "../src/errors.js";
import { GpuOptionsIgnoredWarning } from "@df11/models";
import { checkDeviceFlags } from "../src/load-model.js";
import { maxGpuMemoryOption, refuseGpuFlagsOnCpu, warningText, weightsReport } from "../src/weights-report.js";
import { df11, SMALL } from "./helpers.js";

describe("--max-gpu-memory <size>", () => {
  it("reads decimal and binary units, and plain bytes", () => {
    expect(maxGpuMemoryOption("12GB")).toBe(12e9);
    expect(maxGpuMemoryOption("12GiB")).toBe(12 * 2 ** 30);
    expect(maxGpuMemoryOption("12000MB")).toBe(12e9);
    expect(maxGpuMemoryOption("12.5gb")).toBe(12.5e9);
    expect(maxGpuMemoryOption("1e10")).toBe(1e10);
    expect(maxGpuMemoryOption("512MiB")).toBe(512 * 2 ** 20);
  });

  it("refuses junk, zero and numbers that forgot their unit, saying what it expects", () => {
    for (const junk of ["lots", "", "12XB", "GB", "-3GB", "0GB", "..GB", "12 GB extra"]) {
      expect(() => maxGpuMemoryOption(junk), junk).toThrow(InvalidArgumentError);
      expect(() => maxGpuMemoryOption(junk), junk).toThrow(/expected a size such as 12GB, 12GiB or 12000MB/);
    }
    expect(() => maxGpuMemoryOption("12")).toThrow(/12 is 12 bytes: give a unit, e\.g\. 12GB/);
  });

  it("is refused with --device cpu, like --gpu-weights", () => {
    expect(() => refuseGpuFlagsOnCpu("cpu", { maxGpuMemory: 12e9 })).toThrow(CliError);
    expect(() => refuseGpuFlagsOnCpu("cpu", { maxGpuMemory: 12e9 })).toThrow("--max-gpu-memory applies to the GPU, not --device cpu");
    expect(() => refuseGpuFlagsOnCpu("cpu", { gpuWeights: "bf16", maxGpuMemory: 12e9 })).toThrow("--gpu-weights bf16 and --max-gpu-memory apply to the GPU");
    expect(() => refuseGpuFlagsOnCpu("cpu", { gpuWeights: "auto" })).not.toThrow();
    expect(() => refuseGpuFlagsOnCpu("auto", { maxGpuMemory: 12e9 })).not.toThrow();
    expect(() => refuseGpuFlagsOnCpu("cuda", { maxGpuMemory: 12e9 })).not.toThrow();
  });

  it("reports the offload in --json / /health weights", () => {
    const offload = { layers: [30, 31], hostBytes: 1e9, slotBytes: 1e9 };
    expect(weightsReport({ kind: "df11", residentBytes: 5, layout: "fused", offload })).toEqual({ format: "df11", layout: "fused", residentBytes: 5, offload });
    expect(weightsReport({ kind: "bf16", residentBytes: 5 })).not.toHaveProperty("offload");
  });
});

describe("df11 generate / chat / serve --max-gpu-memory (command line)", () => {
  const work = mkdtempSync(join(tmpdir(), "df11-gpu-flags-"));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it("refuses junk sizes and --device cpu on every command that loads a model", async () => {
    const { writeSyntheticModel } = await import("@df11/models");
    const dir = join(work, "m");
    await writeSyntheticModel(dir, SMALL, { seed: 5 });
    for (const cmd of [["generate", dir, "--input-ids", "1,2"], ["generate", dir, "--input-ids", "1,2", "--batch-size", "2"], ["chat", dir], ["serve", dir, "--port", "0"]]) {
      await expect(df11(...cmd, "--max-gpu-memory", "plenty")).rejects.toMatchObject({ stderr: expect.stringMatching(/--max-gpu-memory.*expected a size such as 12GB, 12GiB or 12000MB, got "plenty"/) });
      await expect(df11(...cmd, "--device", "cpu", "--max-gpu-memory", "12GB")).rejects.toMatchObject({ stderr: expect.stringMatching(/--max-gpu-memory applies to the GPU, not --device cpu/) });
    }
  });

  it.skipIf(isCudaAvailable())("with --device auto and no GPU: a warning, and the run goes on on the CPU", async () => {
    const { writeSyntheticModel } = await import("@df11/models");
    const dir = join(work, "m2");
    await writeSyntheticModel(dir, SMALL, { seed: 6 });
    const r = await df11("generate", dir, "--json", "-n", "2", "--input-ids", "1,5", "--max-gpu-memory", "8GB");
    expect(r.stderr).toMatch(/warning: --max-gpu-memory is ignored: no usable GPU, running on the CPU/);
    expect(r.stderr.match(/warning: /g)).toHaveLength(1); // the library's warning, printed once (no second one from the CLI)
    expect(JSON.parse(r.stdout).device).toBe("cpu");
  });
});

describe("flags that do not combine are said before any device or model check", () => {
  it("checkDeviceFlags: --devices 0,1 with --gpu-weights huffman, as flags (--max-gpu-memory is then each GPU's budget)", () => {
    expect(() => checkDeviceFlags({ device: "auto", devices: [0, 1], gpuWeights: "huffman" })).toThrow(CliError);
    expect(() => checkDeviceFlags({ device: "auto", devices: [0, 1], gpuWeights: "huffman" })).toThrow(/^--gpu-weights: huffman keeps DF11 modules whole/);
    expect(checkDeviceFlags({ device: "auto", devices: [0, 1], maxGpuMemory: 12e9 })).toBe("cuda");
    expect(checkDeviceFlags({ device: "auto", devices: [1], maxGpuMemory: 12e9 })).toBe("cuda");
    expect(checkDeviceFlags({ device: "auto", maxGpuMemory: 12e9 })).toBe("auto");
  });

  it("every command that loads a model: the conflict, not the missing GPU or model (any machine)", async () => {
    const missing = join(tmpdir(), "df11-no-such-model-dir");
    for (const cmd of [["generate", missing, "--input-ids", "1,2"], ["generate", missing, "--input-ids", "1,2", "--batch-size", "2"], ["chat", missing], ["serve", missing, "--port", "0"]]) {
      await expect(df11(...cmd, "--devices", "0,1", "--gpu-weights", "huffman"), cmd.join(" ")).rejects.toMatchObject({
        stderr: expect.stringMatching(/^df11: error: --gpu-weights: huffman keeps DF11 modules whole/),
      });
    }
  });
});

describe("the library's warning that device auto ignored GPU-only options, as the CLI prints it", () => {
  it("names the flags as typed, and why there was no GPU", () => {
    const w = new GpuOptionsIgnoredWarning(
      [
        { option: "gpuWeights", flag: "--gpu-weights", value: "fused" },
        { option: "maxGpuMemory", flag: "--max-gpu-memory", value: "12000000000" },
      ],
      "no CUDA device",
    );
    expect(warningText(w)).toBe("--gpu-weights fused and --max-gpu-memory are ignored: no usable GPU, running on the CPU: no CUDA device");
    expect(warningText(new Error("x.bin: ignored"))).toBe("x.bin: ignored");
  });
});
