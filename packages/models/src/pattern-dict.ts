import { WeightLayoutError } from "./errors.js";

/**
 * DF11 `pattern_dict`: regular expression over module paths → sub-modules whose weights are
 * concatenated into one compressed stream (`[]` = the module's own weight alone).
 */
export type PatternDict = Readonly<Record<string, readonly string[]>>;

/** One module to compress: its path and the weight tensors it concatenates, in order. */
export interface CompressionUnit {
  /** Module path, e.g. `model.layers.3`; the compressed tensors are `<path>.luts` etc. */
  readonly module: string;
  /** Full tensor names, e.g. `model.layers.3.self_attn.q_proj.weight`. */
  readonly weights: readonly string[];
  /** The pattern that matched. */
  readonly pattern: string;
}

/** Python's `re.fullmatch` for the simple patterns DF11 uses. */
export const fullMatcher = (pattern: string): RegExp => new RegExp(`^(?:${pattern})$`);

/** All module paths implied by tensor names (every dot-prefix), in first-seen order. */
function modulePaths(tensorNames: readonly string[]): string[] {
  const seen = new Set<string>();
  for (const name of tensorNames) {
    const parts = name.split(".");
    for (let i = 1; i < parts.length; i++) seen.add(parts.slice(0, i).join("."));
  }
  return [...seen];
}

const layerIndexAware = (a: string, b: string) => a.localeCompare(b, "en", { numeric: true });

/**
 * Which modules a pattern_dict compresses, given the tensors a checkpoint holds. A module whose listed
 * weights are only partly present raises {@link WeightLayoutError} naming the missing one; a module
 * matched by `[]` without a `weight` tensor (e.g. a tied lm_head) is skipped.
 */
export function compressionUnits(patternDict: PatternDict, tensorNames: readonly string[]): CompressionUnit[] {
  const present = new Set(tensorNames);
  const units: CompressionUnit[] = [];
  const claimed = new Set<string>();
  const paths = modulePaths(tensorNames).sort(layerIndexAware);
  for (const [pattern, subs] of Object.entries(patternDict)) {
    const re = fullMatcher(pattern);
    for (const module of paths) {
      if (!re.test(module)) continue;
      const weights = subs.length === 0 ? [`${module}.weight`] : subs.map((s) => `${module}.${s}.weight`);
      const missing = weights.filter((w) => !present.has(w));
      if (missing.length === weights.length && subs.length === 0) continue;
      if (missing.length > 0) throw new WeightLayoutError(missing[0], `module ${module} (pattern ${pattern}) needs it, but the checkpoint lacks it`);
      for (const w of weights) {
        if (claimed.has(w)) throw new WeightLayoutError(w, `claimed by two patterns of the pattern_dict`);
        claimed.add(w);
      }
      units.push({ module, weights, pattern });
    }
  }
  return units;
}

/** The pattern_dict entry whose pattern full-matches a module path: the pattern and its sub-modules. */
export function patternEntryOf(patternDict: PatternDict, module: string): { pattern: string; subs: readonly string[] } {
  for (const [pattern, subs] of Object.entries(patternDict)) {
    if (fullMatcher(pattern).test(module)) return { pattern, subs };
  }
  throw new WeightLayoutError(module, "compressed module matches no pattern of dfloat11_config.pattern_dict");
}

/**
 * Weight tensor names of a compressed module, from the pattern_dict entry whose pattern matches it.
 */
export function weightNamesOf(patternDict: PatternDict, module: string): string[] {
  const { subs } = patternEntryOf(patternDict, module);
  return subs.length === 0 ? [`${module}.weight`] : subs.map((s) => `${module}.${s}.weight`);
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** A module path as a pattern matching exactly it. */
export const escapePath = (module: string): string => escapeRegExp(module);

/** Escape a module path for use as a pattern, turning layer indices into `\d+`. */
export const generalizePath = (module: string): string =>
  module
    .split(".")
    .map((p) => (/^\d+$/.test(p) ? "\\d+" : escapeRegExp(p)))
    .join("\\.");
