// Where the addon binary lives: the published package carries prebuilds/<platform>-<arch>/, a local
// build writes build/Release/ and is copied into prebuilds/.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const packageRoot = join(dirname(fileURLToPath(import.meta.url)), "..");
export const prebuildDir = join(packageRoot, "prebuilds", `${process.platform}-${process.arch}`);
export const prebuildPath = join(prebuildDir, "df11_cuda.node");
export const buildPath = join(packageRoot, "build", "Release", "df11_cuda.node");
