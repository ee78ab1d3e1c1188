import { BYTES_PER_THREAD, THREADS_PER_BLOCK } from "@df11/codec";
import { ConfigError, ModelsError } from "./errors.js";
import { fullMatcher, type PatternDict } from "./pattern-dict.js";

/** The `dfloat11_config` of a DF11 model's config.json, validated. */
export interface Dfloat11Config {
  /** The writer's format version, e.g. "0.5.0" (releases say "0.2.0" … "0.5.0": one format). */
  readonly version: string;
  readonly patternDict: PatternDict;
  readonly threadsPerBlock: number;
  readonly bytesPerThread: number;
}

/**
 * A DFloat11 model in a format df11 does not read: version 0.1.0 (the first Hub releases, e.g.
 * Llama-3.1-405B-Instruct-DF11), whose config.json is `{"dfloat11_version": "0.1.0"}` and whose layers are
 * pickled (`layer_N.pkl`, `lm_head.pkl`) for a kernel shipped beside them (`decode.ptx`).
 */
export class UnsupportedDfloat11VersionError extends ModelsError {
  override name = "UnsupportedDfloat11VersionError";
  constructor(
    readonly directory: string,
    readonly version: string,
  ) {
    super(
      `${directory}: a DFloat11 ${version} model (config.json has "dfloat11_version"; pickled layer_N.pkl/lm_head.pkl tensors for its own decode.ptx). ` +
        `df11 reads DFloat11 0.2.0 and newer (a "dfloat11_config" in config.json, safetensors files). ` +
        `This format's Huffman tables exist only inside its decode.ptx, it stores no embeddings or norms (its loader needs the original BF16 model as well), ` +
        `and its tensors are Python pickles, which df11 does not execute. What to do: download the original BF16 model and run \`df11 compress\` on it ` +
        `(the result loads in df11 and in the official dfloat11 package), or use a newer DF11 release of the model if the Hub has one.`,
    );
  }
}

const geometry = (v: unknown): number | undefined => (Array.isArray(v) && v.length === 1 ? v[0] : v) as number | undefined;

/**
 * The DFloat11 settings of a config.json, or undefined for a model that is not DF11-compressed.
 * Accepts what every release wrote (versions 0.2.0 to 0.5.0: `threads_per_block` as `[512]` or 512,
 * patterns with escaped or plain dots). Throws {@link UnsupportedDfloat11VersionError} for version
 * 0.1.0 and {@link ConfigError} naming the key for a malformed or foreign geometry.
 */
export function dfloat11ConfigOf(raw: Record<string, unknown>, directory: string): Dfloat11Config | undefined {
  if ("dfloat11_version" in raw && !("dfloat11_config" in raw)) throw new UnsupportedDfloat11VersionError(directory, String(raw.dfloat11_version));
  const c = raw.dfloat11_config;
  if (c === undefined) return undefined;
  if (typeof c !== "object" || c === null || Array.isArray(c)) throw new ConfigError("dfloat11_config", "expected an object");
  const d = c as Record<string, unknown>;
  const dict = d.pattern_dict;
  if (typeof dict !== "object" || dict === null || Array.isArray(dict)) throw new ConfigError("dfloat11_config.pattern_dict", dict === undefined ? "missing" : "expected an object");
  for (const [pattern, subs] of Object.entries(dict)) {
    if (!Array.isArray(subs) || !subs.every((s) => typeof s === "string")) {
      throw new ConfigError(`dfloat11_config.pattern_dict["${pattern}"]`, `expected a list of sub-module names, got ${JSON.stringify(subs)}`);
    }
    try {
      fullMatcher(pattern);
    } catch (e) {
      throw new ConfigError(`dfloat11_config.pattern_dict["${pattern}"]`, `not a regular expression df11 can use (${(e as Error).message})`);
    }
  }
  const threadsPerBlock = geometry(d.threads_per_block) ?? THREADS_PER_BLOCK;
  const bytesPerThread = geometry(d.bytes_per_thread) ?? BYTES_PER_THREAD;
  if (threadsPerBlock !== THREADS_PER_BLOCK || bytesPerThread !== BYTES_PER_THREAD) {
    throw new ConfigError(
      "dfloat11_config",
      `threads_per_block ${JSON.stringify(d.threads_per_block)} / bytes_per_thread ${JSON.stringify(d.bytes_per_thread)}: every DFloat11 release since 0.2.0 uses [${THREADS_PER_BLOCK}] / ${BYTES_PER_THREAD}, the only geometry df11 decodes`,
    );
  }
  return { version: String(d.version ?? "unknown"), patternDict: dict as PatternDict, threadsPerBlock, bytesPerThread };
}
