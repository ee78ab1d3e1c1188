import type { Reporter, TestModule } from "vitest/node";

/** Prints the plain closing line `N passed, N failed, N skipped` that CI logs are read for. */
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
    }
    process.stdout.write(`\ndf11 tests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
