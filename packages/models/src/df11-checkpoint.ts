import {
  MODULE_TENSOR_SUFFIXES,
  moduleTensorBytes,
  outputPositionsFromBytes,
  InvalidModuleError,
  validateModule,
  type DF11Module,
  type ModuleTensorSuffix,
} from "@df11/codec";
import type { SafetensorsCollection, TensorToWrite } from "@df11/hub-loader";

/** Module paths of a DF11 checkpoint: every `<path>.encoded_exponent` tensor. */
export function compressedModulesOf(tensorNames: readonly string[]): string[] {
  return tensorNames
    .filter((n) => n.endsWith(".encoded_exponent"))
    .map((n) => n.slice(0, -".encoded_exponent".length))
    .sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
}

/** Whether a tensor name is one of a compressed module's six tensors. */
export const isModuleTensor = (name: string): boolean =>
  MODULE_TENSOR_SUFFIXES.some((s) => name.endsWith(`.${s}`));

const EXPECTED_DTYPE: Record<(typeof MODULE_TENSOR_SUFFIXES)[number], string> = {
  luts: "U8",
  encoded_exponent: "U8",
  sign_mantissa: "U8",
  output_positions: "U8",
  gaps: "U8",
  split_positions: "I64",
};

/**
 * `e` naming module `path`: an {@link InvalidModuleError} about one of its tensors (`gaps: …`, as the
 * codec reports it) becomes one about `<path>.gaps`; anything else is returned as it is.
 */
export function namingModule(path: string, e: unknown): unknown {
  if (!(e instanceof InvalidModuleError) || e.field.startsWith(`${path}.`)) return e;
  return new InvalidModuleError(`${path}.${e.field}`, e.detail);
}

/**
 * Read the six tensors of module `path` from a checkpoint and check their structure (the codec's
 * `validateModule`: LUTs, output positions, gaps size, split positions); `read` may put them somewhere
 * of the caller's (pinned memory for a GPU upload, say). Throws InvalidModuleError naming `<path>.<tensor>`.
 */
export async function readDF11Module(weights: SafetensorsCollection, path: string, read: (name: string) => Promise<Uint8Array> = (n) => weights.read(n)): Promise<DF11Module> {
  const raw: Record<string, Uint8Array> = {};
  for (const suffix of MODULE_TENSOR_SUFFIXES) {
    const name = `${path}.${suffix}`;
    if (!weights.has(name)) throw new InvalidModuleError(name, "tensor is missing from the checkpoint");
    const info = weights.info(name);
    if (info.dtype !== EXPECTED_DTYPE[suffix]) {
      throw new InvalidModuleError(name, `dtype ${info.dtype}, expected ${EXPECTED_DTYPE[suffix]}`);
    }
    raw[suffix] = await read(name);
  }
  const lutsShape = weights.info(`${path}.luts`).shape;
  if (lutsShape.length !== 2 || lutsShape[1] !== 256) {
    throw new InvalidModuleError(`${path}.luts`, `shape ${JSON.stringify(lutsShape)}, expected [n, 256]`);
  }
  const split = raw.split_positions;
  const splitView = new BigInt64Array(split.buffer, split.byteOffset, split.byteLength / 8);
  const module: DF11Module = {
    luts: raw.luts,
    encodedExponent: raw.encoded_exponent,
    signMantissa: raw.sign_mantissa,
    outputPositions: outputPositionsFromBytes(raw.output_positions),
    gaps: raw.gaps,
    splitPositions: [...splitView].map(Number),
  };
  try {
    validateModule(module);
  } catch (e) {
    throw namingModule(path, e);
  }
  return module;
}

/** The six tensors of a module, ready for a safetensors writer, in the official dtypes and shapes. */
export function moduleTensors(path: string, m: DF11Module): TensorToWrite[] {
  const bytes = moduleTensorBytes(m);
  const shapes: Record<ModuleTensorSuffix, number[]> = {
    luts: [m.luts.length / 256, 256],
    encoded_exponent: [m.encodedExponent.length],
    sign_mantissa: [m.signMantissa.length],
    output_positions: [bytes.output_positions.length],
    gaps: [m.gaps.length],
    split_positions: [m.splitPositions.length],
  };
  return MODULE_TENSOR_SUFFIXES.map((suffix) => ({
    name: `${path}.${suffix}`,
    dtype: suffix === "split_positions" ? "I64" : "U8",
    shape: shapes[suffix],
    data: bytes[suffix],
  }));
}

/** View 16-bit words as bytes (no copy). */
export const bytesOf = (a: ArrayBufferView): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
