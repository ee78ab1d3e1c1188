// Install hook of the published package: use the prebuilt binary when there is one, else try to build
// from source (needs nvcc and cmake). Never fails the install: without a binary, loading the package
// throws a typed error explaining how to get one.
import { existsSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { packageRoot, prebuildPath } from "./native-paths.mjs";

const inWorkspace = existsSync(join(packageRoot, "..", "..", "pnpm-workspace.yaml"));
if (inWorkspace || existsSync(prebuildPath)) process.exit(0);
const r = spawnSync(process.execPath, [join(packageRoot, "scripts", "build-native.mjs")], { stdio: "inherit" });
if (r.status !== 0) console.warn("[@df11/cuda-kernel] building the CUDA addon from source failed; GPU features are unavailable");
