import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { tokenIdList } from "./config.js";
import { ModelsError } from "./errors.js";
import type { SamplingOptions } from "./sampling.js";

/** The sampling settings a model's generation_config.json may give defaults for. */
export type SamplingDefaults = Pick<SamplingOptions, "temperature" | "topK" | "topP" | "minP" | "repetitionPenalty">;

/** The keys of {@link SamplingDefaults}, in the order reports list them. */
export const SAMPLING_DEFAULT_KEYS = ["temperature", "topK", "topP", "minP", "repetitionPenalty"] as const;

/** What df11 takes from a model's generation_config.json. */
export interface GenerationConfig {
  /** `eos_token_id` (one id or a list): each ends generation, as in transformers. */
  readonly eosTokenIds: readonly number[];
  /**
   * Sampling defaults, transformers' reading: `temperature`, `top_k`, `top_p` and `min_p` count only when
   * the file says `do_sample: true` (temperature then defaults to 1); `do_sample: false` means greedy
   * (temperature 0); `repetition_penalty` counts either way. Only keys the file sets are present.
   */
  readonly sampling: SamplingDefaults;
}

/** generation_config.json has a key of the wrong type or out of range. */
export class GenerationConfigError extends ModelsError {
  override name = "GenerationConfigError";
  constructor(
    readonly key: string,
    detail: string,
  ) {
    super(`generation_config.json: ${key}: ${detail}`);
  }
}

type Raw = Record<string, unknown>;

function optionalNumber(raw: Raw, key: string, check: (v: number) => boolean, rule: string): number | undefined {
  const v = raw[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v) || !check(v)) throw new GenerationConfigError(key, `${rule}, got ${JSON.stringify(v)}`);
  return v;
}

/** Parse a generation_config.json object. Throws {@link GenerationConfigError} naming a bad key. */
export function parseGenerationConfig(raw: Raw): GenerationConfig {
  const fail = (key: string, detail: string): never => {
    throw new GenerationConfigError(key, detail);
  };
  const eosTokenIds = tokenIdList(raw.eos_token_id, "eos_token_id", fail);
  const doSample = raw.do_sample;
  if (doSample !== undefined && doSample !== null && typeof doSample !== "boolean") fail("do_sample", `expected true or false, got ${JSON.stringify(doSample)}`);
  const sampling: { -readonly [K in keyof SamplingDefaults]: SamplingDefaults[K] } = {};
  const temperature = optionalNumber(raw, "temperature", (v) => v >= 0, "expected a number ≥ 0");
  // transformers: top_k 0 and top_p 1 switch the filter off, as in df11.
  const topK = optionalNumber(raw, "top_k", (v) => Number.isInteger(v) && v >= 0, "expected a whole number ≥ 0");
  const topP = optionalNumber(raw, "top_p", (v) => v > 0 && v <= 1, "expected a number in (0, 1]");
  const minP = optionalNumber(raw, "min_p", (v) => v >= 0 && v < 1, "expected a number in [0, 1)");
  const repetitionPenalty = optionalNumber(raw, "repetition_penalty", (v) => v > 0, "expected a number > 0");
  if (doSample === true) {
    sampling.temperature = temperature ?? 1;
    if (topK !== undefined) sampling.topK = topK;
    if (topP !== undefined) sampling.topP = topP;
    if (minP !== undefined) sampling.minP = minP;
  } else if (doSample === false) sampling.temperature = 0;
  if (repetitionPenalty !== undefined) sampling.repetitionPenalty = repetitionPenalty;
  return { eosTokenIds, sampling };
}

/** Read `<directory>/generation_config.json`; undefined when the model has none. */
export async function readGenerationConfig(directory: string): Promise<GenerationConfig | undefined> {
  const path = join(directory, "generation_config.json");
  if (!existsSync(path)) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, "utf8"));
  } catch (e) {
    throw new ModelsError(`${path}: ${(e as Error).message}`);
  }
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) throw new ModelsError(`${path}: expected a JSON object`);
  return parseGenerationConfig(raw as Raw);
}

/** Where a sampling setting came from. */
export type SettingSource = "request" | "generation_config.json" | "default";

/** Sampling settings resolved for one generation, and where each came from. */
export interface ResolvedSampling {
  readonly options: SamplingOptions;
  readonly sources: Readonly<Record<keyof SamplingDefaults, SettingSource>>;
}

/**
 * Sampling settings for one generation, as transformers and vLLM resolve them: what the request sets,
 * else the model's generation_config.json default (unless `modelDefaults` is undefined, i.e. ignored),
 * else `fallback` (the surface's own default: greedy in the CLI, OpenAI's temperature 1 in the server).
 * Other options (seed, penalties, …) pass through from the request.
 */
export function resolveSampling(request: SamplingOptions, modelDefaults: SamplingDefaults | undefined, fallback: SamplingDefaults = {}): ResolvedSampling {
  const options: Record<string, unknown> = { ...request };
  const sources = {} as Record<keyof SamplingDefaults, SettingSource>;
  for (const key of SAMPLING_DEFAULT_KEYS) {
    if (request[key] !== undefined) sources[key] = "request";
    else if (modelDefaults?.[key] !== undefined) {
      options[key] = modelDefaults[key];
      sources[key] = "generation_config.json";
    } else {
      options[key] = fallback[key];
      sources[key] = "default";
    }
  }
  return { options: options as SamplingOptions, sources };
}
