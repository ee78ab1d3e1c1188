// The GPU tests and workloads (*.mjs here and in scripts/gpu) only run on a GPU host, so a name they use but never define or
// import would go unseen in CI until then (it happened: attention-prefill lost its fromBf16 import). The
// TypeScript checker, run over them as JavaScript, finds every such name and every import a module does
// not export; type errors in the untyped JavaScript are not this test's business.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { repoRoot } from "../../../test-support/fixtures.js";

const pkg = join(repoRoot, "packages/cuda-kernel");
const dirs = [join(pkg, "test"), join(pkg, "scripts"), join(repoRoot, "scripts/gpu")];
const files = dirs.flatMap((d) => readdirSync(d).filter((f) => f.endsWith(".mjs")).map((f) => join(d, f)));
// TS2304 cannot find name, TS2552 cannot find name (did you mean), TS2305 / TS2724 module has no exported
// member, TS2307 cannot find module (an unbuilt dist would let every import from it through unchecked:
// build first).
const UNKNOWN_NAME = /error (TS2304|TS2552|TS2305|TS2724|TS2307):/;

describe("GPU test scripts (checked here, run on the GPU host)", () => {
  it(`name nothing they do not define or import (${files.length} files)`, () => {
    const tsc = join(repoRoot, "node_modules/typescript/bin/tsc");
    const r = spawnSync(process.execPath, [tsc, "--allowJs", "--checkJs", "--noEmit", "--skipLibCheck", "--module", "nodenext", "--moduleResolution", "nodenext", "--target", "es2022", ...files], {
      encoding: "utf8",
      cwd: repoRoot,
      maxBuffer: 1 << 26,
    });
    expect(r.error).toBeUndefined();
    const unknown = r.stdout.split("\n").filter((l) => UNKNOWN_NAME.test(l));
    expect(unknown).toEqual([]);
  }, 120_000);
});
