// How the package behaves without a binary or without a GPU: typed errors that say what to do,
// never a crash. (The GPU itself is tested by gpu.test.mjs on a GPU host.)
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { repoRoot } from "../../../test-support/fixtures.js";

const run = promisify(execFile);
const dist = join(repoRoot, "packages", "cuda-kernel", "dist", "index.js");
const probe = `
  const m = await import(${JSON.stringify(dist)});
  const out = { available: m.isCudaAvailable(), reason: m.cudaUnavailableReason() };
  try { m.DeviceBuffer.alloc(16); out.alloc = "ok"; } catch (e) { out.alloc = e.name; out.message = e.message; }
  console.log(JSON.stringify(out));`;
const probeWith = async (env: NodeJS.ProcessEnv) =>
  JSON.parse((await run(process.execPath, ["--input-type=module", "-e", probe], { env: { ...process.env, ...env } })).stdout);

describe("@df11/cuda-kernel without a binary or a GPU", () => {
  it("without a binary: loads, reports unavailable, and its calls throw CudaUnavailableError saying how to get one", async () => {
    const out = await probeWith({ DF11_CUDA_ADDON: join(repoRoot, "no-such-binary.node") });
    expect(out.available).toBe(false);
    expect(out.alloc).toBe("CudaUnavailableError");
    expect(out.message).toMatch(/no @df11\/cuda-kernel binary.*build:native/);
  });

  const binary = join(repoRoot, "packages", "cuda-kernel", "prebuilds", `${process.platform}-${process.arch}`, "df11_cuda.node");
  it.skipIf(!existsSync(binary))("with the binary but no GPU: a typed error, not a crash (skipped when a GPU is present)", async () => {
    const out = await probeWith({});
    if (out.available) return; // a GPU host: gpu.test.mjs covers it
    expect(out.alloc).toBe("CudaUnavailableError");
    expect(out.reason).toMatch(/no CUDA device/);
  });
});
