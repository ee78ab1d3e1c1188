import { execFileSync } from "node:child_process";

/**
 * Why Python peer tests must be skipped, or undefined when $DF11_PYTHON can import `modules`
 * (.ci/run makes that venv from the machine's wheel mirror). Printed once, so a skipped run says so.
 */
export function pythonSkipReason(modules: readonly string[], what: string): string | undefined {
  const python = process.env.DF11_PYTHON;
  let reason: string | undefined;
  if (!python) reason = `DF11_PYTHON is not set (a Python with ${modules.join(", ")}; .ci/run sets it up)`;
  else {
    try {
      execFileSync(python, ["-c", `import ${modules.join(", ")}`], { stdio: "ignore" });
    } catch {
      reason = `${python} cannot import ${modules.join(", ")}`;
    }
  }
  if (reason) console.warn(`[df11 tests] SKIPPING ${what}: ${reason}`);
  return reason;
}
