import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { NcclUnavailableError } from "./errors.js";
import { ncclCall, parallelAddon } from "./nccl-addon.js";

/** The NCCL library in use. */
export interface NcclLibrary {
  /** What was loaded: a file path, or the soname `libnccl.so.2` resolved by the system's loader. */
  readonly path: string;
  /** e.g. "2.27.3". */
  readonly version: string;
  /** NCCL_VERSION_CODE, e.g. 22703. */
  readonly versionCode: number;
}

/** Oldest NCCL accepted: 2.10 brought bfloat16 reductions; CUDA-graph capture came in 2.9. */
export const MIN_NCCL_VERSION = { major: 2, minor: 10 } as const;

/** The soname the system's dynamic loader resolves (ld.so.cache, LD_LIBRARY_PATH, RUNPATH). */
export const NCCL_SONAME = "libnccl.so.2";

/** Where pip puts NCCL inside a site-packages directory (nvidia-nccl-cu12 and nvidia-nccl-cu13 alike). */
const WHEEL_LIBRARY = join("nvidia", "nccl", "lib", NCCL_SONAME);

const HOW_TO_FIX =
  "To fix: install NCCL into the python3 on PATH (`pip install nvidia-nccl-cu12`, or `nvidia-nccl-cu13` for CUDA 13 drivers), " +
  "or the system package (`apt install libnccl2`), or set DF11_NCCL to the path of a libnccl.so.2.";

export interface NcclSearchOptions {
  /** Environment to read DF11_NCCL, VIRTUAL_ENV and CONDA_PREFIX from (default process.env). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /**
   * site-packages directories to look in for nvidia/nccl/lib/libnccl.so.2 (default: the usual virtualenv,
   * conda, /opt/torch/.venv, /usr/local and user locations, then those `python3` reports).
   */
  readonly sitePackages?: () => Iterable<string>;
}

/** `parent/python3*` + `tail` for each python3.x directory under parent. */
function pythonDirs(parent: string, tail: string): string[] {
  try {
    return readdirSync(parent)
      .filter((d) => /^python3(\.\d+)?$/.test(d))
      .sort()
      .reverse()
      .map((d) => join(parent, d, tail));
  } catch {
    return [];
  }
}

/** The site-packages directories where pip-installed NCCL usually lies, before asking python3. */
export function wellKnownSitePackages(env: Readonly<Record<string, string | undefined>> = process.env): string[] {
  const prefixes = [env.VIRTUAL_ENV, env.CONDA_PREFIX, "/opt/torch/.venv", "/usr/local", "/usr", join(homedir(), ".local")].filter((p): p is string => !!p);
  const dirs = prefixes.flatMap((p) => [...pythonDirs(join(p, "lib"), "site-packages"), ...pythonDirs(join(p, "lib"), "dist-packages")]);
  return [...new Set([...dirs, "/usr/lib/python3/dist-packages"])].filter((d) => existsSync(d));
}

/** The site-packages directories of the `python3` on PATH (empty when there is none). */
export function python3SitePackages(env: Readonly<Record<string, string | undefined>> = process.env): string[] {
  const r = spawnSync("python3", ["-c", "import site, sys; print('\\n'.join(site.getsitepackages() + [site.getusersitepackages()]))"], {
    encoding: "utf8",
    timeout: 10_000,
    env: env as NodeJS.ProcessEnv,
  });
  return r.status === 0 ? r.stdout.split("\n").filter(Boolean) : [];
}

function* defaultSitePackages(env: Readonly<Record<string, string | undefined>>): Generator<string> {
  yield* wellKnownSitePackages(env);
  yield* python3SitePackages(env);
}

/**
 * Where NCCL is looked for, in order (lazily: python3 is asked only when nothing before it loaded):
 * `$DF11_NCCL` alone when set; else the soname through the system loader, then
 * `<site-packages>/nvidia/nccl/lib/libnccl.so.2` in each site-packages directory where it exists.
 */
export function* ncclCandidates(options: NcclSearchOptions = {}): Generator<string> {
  const env = options.env ?? process.env;
  if (env.DF11_NCCL) {
    yield env.DF11_NCCL;
    return;
  }
  yield NCCL_SONAME;
  const seen = new Set<string>();
  for (const dir of (options.sitePackages ?? (() => defaultSitePackages(env)))()) {
    const file = join(dir, WHEEL_LIBRARY);
    if (seen.has(file)) continue;
    seen.add(file);
    if (existsSync(file)) yield file;
  }
}

/** "2.27.3" from NCCL_VERSION_CODE (X*10000+Y*100+Z since 2.9; X*1000+Y*100+Z before). */
export function ncclVersionString(code: number): { major: number; minor: number; patch: number; text: string } {
  const [major, minor, patch] = code >= 10000 ? [Math.floor(code / 10000), Math.floor(code / 100) % 100, code % 100] : [Math.floor(code / 1000), Math.floor(code / 100) % 10, code % 100];
  return { major, minor, patch, text: `${major}.${minor}.${patch}` };
}

let loaded: NcclLibrary | undefined;

/**
 * Load NCCL once per process (the first library that loads from {@link ncclCandidates}) and return it.
 * Throws {@link NcclUnavailableError} naming every place looked in, why each failed, and how to fix it;
 * `CudaUnavailableError` when the addon itself is missing.
 */
export function loadNccl(options: NcclSearchOptions = {}): NcclLibrary {
  if (loaded) return loaded;
  const env = options.env ?? process.env;
  const attempts: { path: string; reason: string }[] = [];
  const searched: string[] = [];
  const roots = options.sitePackages ?? (() => defaultSitePackages(env));
  const tracked = function* () {
    for (const dir of roots()) {
      searched.push(dir);
      yield dir;
    }
  };
  for (const path of ncclCandidates({ env, sitePackages: tracked })) {
    if (path !== NCCL_SONAME && !existsSync(path)) {
      attempts.push({ path, reason: "no such file" });
      continue;
    }
    try {
      const lib = ncclCall(() => parallelAddon().NcclClique.load(path));
      const v = ncclVersionString(lib.version);
      if (v.major < MIN_NCCL_VERSION.major || (v.major === MIN_NCCL_VERSION.major && v.minor < MIN_NCCL_VERSION.minor)) {
        throw new NcclUnavailableError(
          `NCCL ${v.text} (${lib.path}) is too old: df11 needs ${MIN_NCCL_VERSION.major}.${MIN_NCCL_VERSION.minor} or newer (bfloat16 reductions, CUDA-graph capture). ${HOW_TO_FIX}`,
          [{ path: lib.path, reason: `version ${v.text}` }],
        );
      }
      loaded = { path: lib.path, version: v.text, versionCode: lib.version };
      return loaded;
    } catch (e) {
      if (!(e instanceof NcclUnavailableError) || e.attempts.length > 0) throw e;
      attempts.push({ path, reason: e.message });
    }
  }
  const where = env.DF11_NCCL
    ? `DF11_NCCL=${env.DF11_NCCL}`
    : `${NCCL_SONAME} through the system loader, and ${WHEEL_LIBRARY} under ${[...new Set(searched)].join(", ") || "no site-packages directory (none found)"}`;
  throw new NcclUnavailableError(
    `NCCL not found: looked for ${where}.\n` + attempts.map((a) => `  ${a.path}: ${a.reason}`).join("\n") + `\n${HOW_TO_FIX}`,
    attempts,
  );
}
