// Runs every test suite — the GPU tests (node:test; each skips with its reason where no GPU is found)
// and the vitest suites — then prints one closing line that CI reads: `tests: N passed, N failed, N skipped`.
// Exit status is non-zero when any test failed or a runner broke.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const work = mkdtempSync(join(tmpdir(), "df11-tests-"));
const totals = { passed: 0, failed: 0, skipped: 0 };
let broken = false;

/**
 * node:test over the GPU test files. Its TAP goes to a file and is summarised here a line per test, without
 * node's own closing block: CI reads that block, and on a machine without a GPU it says "pass 0", which reads
 * as "no test ran" although every test was counted as skipped. Our closing line below is the one that counts.
 */
function runNodeTests() {
  const dirs = ["packages/cuda-kernel/test"].filter(existsSync);
  const files = dirs.flatMap((d) => readdirSync(d).filter((f) => f.endsWith(".test.mjs")).map((f) => join(d, f)));
  if (files.length === 0) return;
  const tap = join(work, "node.tap");
  const r = spawnSync(process.execPath, ["--test", "--test-reporter=tap", `--test-reporter-destination=${tap}`, ...files], { stdio: "inherit" });
  const text = existsSync(tap) ? readFileSync(tap, "utf8") : "";
  const count = (key) => Number(new RegExp(`^# ${key} (\\d+)$`, "m").exec(text)?.[1] ?? 0);
  console.log(`GPU tests (node:test, ${files.length} files):`);
  for (const m of text.matchAll(/^(not )?ok \d+ - (.*?)(?: # (SKIP|TODO) ?(.*))?$/gm)) {
    console.log(m[1] ? `  FAILED   ${m[2]}` : m[3] ? `  skipped  ${m[2]} (${m[4]})` : `  ok       ${m[2]}`);
  }
  if (count("fail") + count("cancelled") > 0) console.log(`\nnode:test's report of the failures:\n${text}`);
  if (!/^# pass \d+$/m.test(text)) broken = true;
  totals.passed += count("pass");
  totals.failed += count("fail") + count("cancelled");
  totals.skipped += count("skipped") + count("todo");
  console.log(`GPU tests: ${count("pass")} ran and passed, ${count("fail") + count("cancelled")} did not pass, ${count("skipped") + count("todo")} were skipped\n`);
  if (r.status !== 0 && count("fail") === 0) broken = true;
}

/** vitest; the summary reporter writes its counts to a file. */
function runVitest() {
  const counts = join(work, "vitest.json");
  const r = spawnSync(process.execPath, ["node_modules/vitest/vitest.mjs", "run", ...process.argv.slice(2)], { stdio: "inherit", env: { ...process.env, DF11_TEST_COUNTS: counts } });
  if (!existsSync(counts)) {
    broken = true;
    return;
  }
  const c = JSON.parse(readFileSync(counts, "utf8"));
  totals.passed += c.passed;
  totals.failed += c.failed;
  totals.skipped += c.skipped;
  if (r.status !== 0 && c.failed === 0) broken = true;
}

runNodeTests();
runVitest();
rmSync(work, { recursive: true, force: true });
if (broken) console.log("\na test runner exited abnormally (see above)");
console.log(`\ntests: ${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped`);
process.exit(totals.failed > 0 || broken ? 1 : 0);
