// Copies the third-party packages df11 needs at run time (transitively, no build tools) into
// .gpu-host/node_modules, so a GPU host with Node but no node_modules can run the built packages.
// Run here after `pnpm build`; on the host, scripts/gpu/setup.sh links them in.
import { cpSync, existsSync, mkdirSync, readFileSync, realpathSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const out = join(root, ".gpu-host", "node_modules");
const BUILD_ONLY = new Set(["cmake-js", "node-addon-api", "node-api-headers"]);
const starts = ["packages/codec", "packages/hub-loader", "packages/models", "packages/cuda-kernel", "packages/cli", "apps/bench"];

/** The directory of package `name` as seen from `fromDir` (its package.json's folder). */
function packageDir(name, fromDir) {
  let dir = fromDir;
  for (;;) {
    const candidate = join(dir, "node_modules", name);
    if (existsSync(join(candidate, "package.json"))) return realpathSync(candidate);
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cannot find ${name} from ${fromDir}`);
    dir = parent;
  }
}

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const copied = new Map();
const visit = (name, fromDir) => {
  if (name.startsWith("@df11/") || BUILD_ONLY.has(name) || copied.has(name)) return;
  const dir = packageDir(name, fromDir);
  copied.set(name, dir);
  // Only what runs: no sources, source maps, type declarations or docs (the device tool carries 64 MiB in all).
  const runs = (src) => !/\.(map|d\.ts|d\.mts|d\.cts|md|ts)$/.test(src) && !/[/\\](src|docs?|test|tests|__tests__)$/.test(src);
  cpSync(dir, join(out, name), { recursive: true, dereference: true, filter: runs });
  const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  for (const dep of Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies })) {
    try {
      visit(dep, dir);
    } catch {
      // optional dependency absent on this platform
    }
  }
};
for (const s of starts) {
  const pkg = JSON.parse(readFileSync(join(root, s, "package.json"), "utf8"));
  for (const dep of Object.keys(pkg.dependencies ?? {})) visit(dep, join(root, s));
}
console.log(`packed ${copied.size} packages into ${out}: ${[...copied.keys()].join(", ")}`);
