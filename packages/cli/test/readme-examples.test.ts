// The README examples marked "runs in CI" (packages/codec, packages/models and packages/cli), run as written against a
// generated model (DF11_MODEL points them at it instead of the Hub).
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeSyntheticModel } from "@df11/models";
import { repoRoot } from "../../../test-support/fixtures.js";
import { compressModel } from "../src/index.js";

/** The ```ts blocks that follow an `<!-- example: runs in CI … -->` line. */
function markedExamples(readme: string): string[] {
  return [...readme.matchAll(/<!-- example: runs in CI[^>]*-->\s*```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
}

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "df11-readme-"));
  await writeSyntheticModel(join(work, "bf16"), { vocab: 1024, hidden: 128, intermediate: 256, layers: 2, heads: 4, kvHeads: 2 }, { tokenizer: true, seed: 5 });
  await compressModel(join(work, "bf16"), join(work, "df11"));
  process.env.DF11_MODEL = join(work, "df11");
});
afterAll(async () => {
  delete process.env.DF11_MODEL;
  await rm(work, { recursive: true, force: true });
});

describe("README examples run as written", () => {
  for (const pkg of ["codec", "models", "cli"]) {
    const examples = markedExamples(readFileSync(join(repoRoot, "packages", pkg, "README.md"), "utf8"));
    it(`packages/${pkg}/README.md has a runnable example`, () => expect(examples.length).toBeGreaterThan(0));
    examples.forEach((code, i) => {
      it(`packages/${pkg}/README.md example ${i + 1}`, async () => {
        // Inside the package so its imports resolve as a user's would.
        const file = join(repoRoot, "packages", "cli", "test", `.readme-${pkg}-${i}.tmp.ts`);
        await writeFile(file, `${code}\nexport {};\n`);
        const out: string[] = [];
        const write = process.stdout.write.bind(process.stdout);
        process.stdout.write = ((chunk: string) => (out.push(String(chunk)), true)) as typeof process.stdout.write;
        const log = console.log;
        console.log = (...args: unknown[]) => void out.push(args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(" "));
        try {
          await import(`${file}?t=${Date.now()}`);
        } finally {
          process.stdout.write = write;
          console.log = log;
          await rm(file, { force: true });
        }
        expect(out.join("").length).toBeGreaterThan(0); // it printed what it made
        expect(out.join("")).not.toMatch(/\bfalse\b/); // and no check it prints came out false
      });
    });
  }
});
