import { FORMAT_VERSION, THREADS_PER_BLOCK, BYTES_PER_THREAD } from "@df11/codec";
import type { ModelConfig, SafetensorsCollection, TensorSource } from "@df11/hub-loader";
import { dfloat11ConfigOf, expectedWeightShape, type Dfloat11Config, type PatternDict } from "@df11/models";
import { CliError } from "./errors.js";
import { formatBytes } from "./format-bytes.js";

/** Key of the safetensors metadata entry where df11 records weight shapes it cannot derive from config. */
export const SHAPES_METADATA_KEY = "df11.weight_shapes";

/** The `dfloat11_config` object written into config.json. */
export const dfloat11Config = (patternDict: PatternDict) => ({
  version: FORMAT_VERSION,
  threads_per_block: [THREADS_PER_BLOCK],
  bytes_per_thread: BYTES_PER_THREAD,
  pattern_dict: patternDict,
});

/** The validated dfloat11_config of a DF11 model's config, or a CliError if it is not one. */
export function df11ConfigOf(config: ModelConfig, dir: string): Dfloat11Config {
  const c = dfloat11ConfigOf(config, dir);
  if (!c) throw new CliError(`${dir}: config.json has no dfloat11_config — not a DFloat11 model`);
  return c;
}

/** How many tensors of one dtype, and their bytes. */
export interface DtypeShare {
  readonly dtype: string;
  readonly tensors: number;
  readonly bytes: number;
}

/** Tensors and bytes per dtype, largest share first. */
export function dtypeBreakdown(weights: Pick<TensorSource, "names" | "info">, names: readonly string[] = weights.names()): DtypeShare[] {
  const by = new Map<string, { dtype: string; tensors: number; bytes: number }>();
  for (const n of names) {
    const { dtype, byteLength } = weights.info(n);
    const e = by.get(dtype) ?? { dtype, tensors: 0, bytes: 0 };
    e.tensors++;
    e.bytes += byteLength;
    by.set(dtype, e);
  }
  return [...by.values()].sort((a, b) => b.bytes - a.bytes);
}

/** `F16: 240 tensors (13.1 GB), F32: 2 tensors (8.0 KB)`. */
export const formatDtypes = (d: readonly DtypeShare[]): string =>
  d.map((e) => `${e.dtype}: ${e.tensors} tensor${e.tensors === 1 ? "" : "s"} (${formatBytes(e.bytes)})`).join(", ");

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
