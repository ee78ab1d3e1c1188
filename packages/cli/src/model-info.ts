import { FORMAT_VERSION, THREADS_PER_BLOCK, BYTES_PER_THREAD } from "@df11/codec";
import type { ModelConfig, SafetensorsCollection } from "@df11/hub-loader";
import { expectedWeightShape, type PatternDict } from "@df11/models";
import { CliError } from "./errors.js";

/** Key of the safetensors metadata entry where df11 records weight shapes it cannot derive from config. */
export const SHAPES_METADATA_KEY = "df11.weight_shapes";

/** The `dfloat11_config` object written into config.json. */
export const dfloat11Config = (patternDict: PatternDict) => ({
  version: FORMAT_VERSION,
  threads_per_block: [THREADS_PER_BLOCK],
  bytes_per_thread: BYTES_PER_THREAD,
  pattern_dict: patternDict,
});

/** The pattern_dict of a DF11 model's config, or a CliError if it is not one. */
export function patternDictOf(config: ModelConfig, dir: string): PatternDict {
  const c = config.dfloat11_config as { pattern_dict?: PatternDict; threads_per_block?: number[]; bytes_per_thread?: number } | undefined;
  if (!c || typeof c !== "object") throw new CliError(`${dir}: config.json has no dfloat11_config — not a DFloat11 model`);
  if (!c.pattern_dict || typeof c.pattern_dict !== "object") throw new CliError(`${dir}: dfloat11_config.pattern_dict is missing`);
  if ((c.threads_per_block?.[0] ?? THREADS_PER_BLOCK) !== THREADS_PER_BLOCK || (c.bytes_per_thread ?? BYTES_PER_THREAD) !== BYTES_PER_THREAD) {
    throw new CliError(`${dir}: dfloat11_config uses threads_per_block ${c.threads_per_block} / bytes_per_thread ${c.bytes_per_thread}; only 512 / 8 exist`);
  }
  return c.pattern_dict;
}

/** Shapes recorded in the files' metadata by `df11 compress` (for architectures df11 does not know). */
export function recordedShapes(weights: SafetensorsCollection): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const f of weights.files) {
    const raw = f.metadata[SHAPES_METADATA_KEY];
    if (raw) Object.assign(out, JSON.parse(raw));
  }
  return out;
}

/** Shape of a decompressed weight: from df11's metadata, else from config.json, else flat. */
export function shapeOfWeight(config: ModelConfig, recorded: Record<string, number[]>, name: string, elements: number): number[] {
  let shape = recorded[name];
  if (!shape) {
    try {
      shape = expectedWeightShape(config, name) ?? [elements];
    } catch {
      shape = [elements];
    }
  }
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== elements) {
    throw new CliError(`${name}: decoded ${elements} elements, but its shape ${JSON.stringify(shape)} holds ${count}`);
  }
  return shape;
}
