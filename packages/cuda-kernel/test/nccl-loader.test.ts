// How NCCL is found and what is said when it is not: runs on any machine (no GPU, no NCCL needed).
// The collectives themselves are tested by nccl.test.mjs on a GPU host.
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { repoRoot } from "../../../test-support/fixtures.js";
import { ncclCandidates, ncclVersionString, NCCL_SONAME } from "../src/parallel/nccl-loader.js";

const run = promisify(execFile);
const dist = join(repoRoot, "packages", "cuda-kernel", "dist", "index.js");
const binary = join(repoRoot, "packages", "cuda-kernel", "prebuilds", `${process.platform}-${process.arch}`, "df11_cuda.node");

/** loadNccl() in a fresh process (the library is loaded once per process), with `env` and `sitePackages`. */
async function probe(env: NodeJS.ProcessEnv, sitePackages?: string[]) {
  const code = `
    const m = await import(${JSON.stringify(dist)});
    const options = ${sitePackages ? `{ sitePackages: () => ${JSON.stringify(sitePackages)} }` : "{}"};
    try { console.log(JSON.stringify({ ok: m.loadNccl(options) })); }
    catch (e) { console.log(JSON.stringify({ name: e.name, code: e.code, message: e.message, attempts: e.attempts, isCudaError: e instanceof m.CudaError })); }`;
  return JSON.parse((await run(process.execPath, ["--input-type=module", "-e", code], { env: { ...process.env, DF11_NCCL: "", ...env } })).stdout);
}

const work = mkdtempSync(join(tmpdir(), "df11-nccl-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A site-packages directory holding `nvidia/nccl/lib/libnccl.so.2` with these bytes (or none). */
function sitePackages(name: string, library?: string): string {
  const dir = join(work, name, "site-packages");
  mkdirSync(join(dir, "nvidia", "nccl", "lib"), { recursive: true });
  if (library !== undefined) writeFileSync(join(dir, "nvidia", "nccl", "lib", NCCL_SONAME), library);
  return dir;
}

describe("finding NCCL", () => {
  it("looks at $DF11_NCCL alone when it is set", () => {
    expect([...ncclCandidates({ env: { DF11_NCCL: "/x/libnccl.so.2" }, sitePackages: () => [sitePackages("a", "")] })]).toEqual(["/x/libnccl.so.2"]);
  });

  it("otherwise: the soname through the system loader, then nvidia/nccl/lib/libnccl.so.2 in each site-packages that has it", () => {
    const without = sitePackages("empty");
    const withLib = sitePackages("wheel", "");
    expect([...ncclCandidates({ env: {}, sitePackages: () => [without, withLib, withLib] })]).toEqual([NCCL_SONAME, join(withLib, "nvidia", "nccl", "lib", NCCL_SONAME)]);
  });

  it("decodes NCCL_VERSION_CODE in both encodings", () => {
    expect(ncclVersionString(22703).text).toBe("2.27.3");
    expect(ncclVersionString(21005)).toMatchObject({ major: 2, minor: 10, patch: 5 });
    expect(ncclVersionString(2804).text).toBe("2.8.4");
  });

  it("DF11_NCCL naming a missing file: NcclUnavailableError naming it and how to fix it (no addon needed)", async () => {
    const missing = join(work, "nowhere", "libnccl.so.2");
    const out = await probe({ DF11_NCCL: missing, DF11_CUDA_ADDON: join(work, "no-addon.node") });
    expect(out.name).toBe("NcclUnavailableError");
    expect(out.code).toBe("NCCL_UNAVAILABLE");
    expect(out.isCudaError).toBe(true);
    expect(out.attempts).toEqual([{ path: missing, reason: "no such file" }]);
    expect(out.message).toContain(`DF11_NCCL=${missing}`);
    expect(out.message).toMatch(/nvidia-nccl-cu12.*nvidia-nccl-cu13.*libnccl2.*DF11_NCCL/s);
  });

  it.skipIf(!existsSync(binary))("DF11_NCCL naming a shared library that is not NCCL: the missing symbol is named", async () => {
    const out = await probe({ DF11_NCCL: binary });
    expect(out.name).toBe("NcclUnavailableError");
    expect(out.attempts).toHaveLength(1);
    expect(out.attempts[0].reason).toMatch(/has no symbol ncclGetVersion \(not an NCCL library\?\)/);
  });

  it.skipIf(!existsSync(binary))("nothing loads: every place looked in is listed with dlopen's reason (skipped where a system NCCL exists)", async (ctx) => {
    const broken = sitePackages("broken", "not an ELF file");
    const out = await probe({}, [sitePackages("none"), broken]);
    if (out.ok) ctx.skip(`a system NCCL loaded (${out.ok.path}); nothing to refuse here`);
    expect(out.name).toBe("NcclUnavailableError");
    expect(out.attempts.map((a: { path: string }) => a.path)).toEqual([NCCL_SONAME, join(broken, "nvidia", "nccl", "lib", NCCL_SONAME)]);
    expect(out.attempts[0].reason).toMatch(/libnccl\.so\.2/);
    expect(out.attempts[1].reason).toMatch(/invalid ELF header|file too short/);
    expect(out.message).toContain(`under ${join(work, "none", "site-packages")}, ${broken}`);
  });
});
