// Builds the CUDA addon with cmake-js when nvcc is available, then copies it into prebuilds/.
// Without nvcc it says so and exits 0: the package still loads, and throws a typed error when used.
import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, statSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { buildPath, packageRoot, prebuildDir, prebuildPath } from "./native-paths.mjs";

const force = process.argv.includes("--force");
const which = (cmd) => spawnSync("sh", ["-c", `command -v ${cmd}`], { encoding: "utf8" }).stdout.trim();
const nvcc = process.env.CUDACXX || which("nvcc") || (existsSync("/usr/local/cuda/bin/nvcc") ? "/usr/local/cuda/bin/nvcc" : "");

if (process.env.DF11_SKIP_NATIVE_BUILD) {
  console.log("[@df11/cuda-kernel] DF11_SKIP_NATIVE_BUILD set: not building the CUDA addon");
  process.exit(0);
}
if (!nvcc) {
  console.log("[@df11/cuda-kernel] nvcc not found: CUDA addon not built (CPU features of df11 are unaffected)");
  process.exit(0);
}

// Newest modification time of any file under dir (sources live in csrc/addon and csrc/kernels).
const newest = (dir) =>
  Math.max(0, ...readdirSync(dir, { withFileTypes: true }).map((e) => (e.isDirectory() ? newest(join(dir, e.name)) : statSync(join(dir, e.name)).mtimeMs)));
const sourcesTime = Math.max(newest(join(packageRoot, "csrc")), statSync(join(packageRoot, "CMakeLists.txt")).mtimeMs);
if (!force && existsSync(prebuildPath) && statSync(prebuildPath).mtimeMs > sourcesTime) {
  console.log(`[@df11/cuda-kernel] up to date: ${prebuildPath}`);
  process.exit(0);
}

const cmakeJs = join(packageRoot, "node_modules", "cmake-js", "bin", "cmake-js");
const args = [cmakeJs, "compile", "--directory", packageRoot, "--CDCMAKE_CUDA_COMPILER=" + nvcc];
// Other architectures build in a folder of their own: cmake-js reuses a configured build folder, so a
// DF11_CUDA_ARCHS given to the default one would be ignored (e.g. a sm_90a-only addon, ~10 MB instead of
// the 34 MB fat binary, for carrying to a GPU host).
const archs = process.env.DF11_CUDA_ARCHS;
const out = archs ? join(packageRoot, "build-archs", archs.replace(/[^0-9a-z]+/gi, "_")) : undefined;
if (archs) args.push(`--CDDF11_CUDA_ARCHS=${archs}`, "--out", out);
console.log(`[@df11/cuda-kernel] building with ${nvcc}${archs ? ` for ${archs}` : ""}`);
execFileSync(process.execPath, args, { stdio: "inherit", cwd: packageRoot });
mkdirSync(prebuildDir, { recursive: true });
copyFileSync(out ? join(out, "Release", "df11_cuda.node") : buildPath, prebuildPath);
console.log(`[@df11/cuda-kernel] built ${prebuildPath}`);
