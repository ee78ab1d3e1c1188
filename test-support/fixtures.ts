import { existsSync, readdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** Repository root. */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** The official fixtures live beside the checkout in ../shared/fixtures (never committed here). */
export const fixturesRoot = resolve(process.env.DF11_FIXTURES ?? join(repoRoot, "..", "shared", "fixtures"));

/** Names of the official fixture models, or [] when ../shared is absent. */
export const fixtureNames: string[] = existsSync(fixturesRoot)
  ? readdirSync(fixturesRoot).filter((d) => existsSync(join(fixturesRoot, d, "df11", "config.json"))).sort()
  : [];

/** Why fixture tests are skipped, printed so a skipped run says so. */
export const fixturesSkipReason = `official fixtures not found at ${fixturesRoot} (set DF11_FIXTURES or provide ../shared/fixtures)`;

if (fixtureNames.length === 0) console.warn(`[df11 tests] SKIPPING fixture tests: ${fixturesSkipReason}`);
