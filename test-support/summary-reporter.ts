import { writeFileSync } from "node:fs";
import type { Reporter, TestModule } from "vitest/node";

/**
 * Counts passed, failed and skipped tests. scripts/run-tests.mjs sets DF11_TEST_COUNTS to collect them
 * (it prints the one closing line CI reads); a plain `vitest run` prints the counts itself.
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const m of modules) {
      for (const t of m.children.allTests()) {
        const state = t.result().state;
        if (state === "passed") passed++;
        else if (state === "failed") failed++;
        else skipped++;
      }
      if (m.state() === "failed" && [...m.children.allTests()].length === 0) failed++; // a file that failed to load
    }
    const out = process.env.DF11_TEST_COUNTS;
    if (out) writeFileSync(out, JSON.stringify({ passed, failed, skipped }));
    else process.stdout.write(`\nvitest: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
