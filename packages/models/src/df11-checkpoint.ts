import {
  MODULE_TENSOR_SUFFIXES,
  moduleTensorBytes,
  outputPositionsFromBytes,
  InvalidModuleError,
  validateModule,
  validateModuleHeader,
  type DF11Module,
  type DF11ModuleHeader,
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

/** Module `path`'s tensors exist with the official dtypes and `luts` is [n, 256]; throws InvalidModuleError naming the tensor. */
function checkModuleTensors(weights: SafetensorsCollection, path: string): void {
  for (const suffix of MODULE_TENSOR_SUFFIXES) {
    const name = `${path}.${suffix}`;
    if (!weights.has(name)) throw new InvalidModuleError(name, "tensor is missing from the checkpoint");
    const info = weights.info(name);
    if (info.dtype !== EXPECTED_DTYPE[suffix]) throw new InvalidModuleError(name, `dtype ${info.dtype}, expected ${EXPECTED_DTYPE[suffix]}`);
  }
  const lutsShape = weights.info(`${path}.luts`).shape;
  if (lutsShape.length !== 2 || lutsShape[1] !== 256) throw new InvalidModuleError(`${path}.luts`, `shape ${JSON.stringify(lutsShape)}, expected [n, 256]`);
}

const splitPositionsOf = (split: Uint8Array): number[] => [...new BigInt64Array(split.buffer, split.byteOffset, split.byteLength / 8)].map(Number);

/**
 * Read the six tensors of module `path` from a checkpoint and check their structure (the codec's
 * `validateModule`: LUTs, output positions, gaps size, split positions); `read` may put them somewhere
 * of the caller's (pinned memory for a GPU upload, say). Throws InvalidModuleError naming `<path>.<tensor>`.
 */
export async function readDF11Module(weights: SafetensorsCollection, path: string, read: (name: string) => Promise<Uint8Array> = (n) => weights.read(n)): Promise<DF11Module> {
  checkModuleTensors(weights, path);
  const raw: Record<string, Uint8Array> = {};
  for (const suffix of MODULE_TENSOR_SUFFIXES) raw[suffix] = await read(`${path}.${suffix}`);
  const module: DF11Module = {
    luts: raw.luts,
    encodedExponent: raw.encoded_exponent,
    signMantissa: raw.sign_mantissa,
    outputPositions: outputPositionsFromBytes(raw.output_positions),
    gaps: raw.gaps,
    splitPositions: splitPositionsOf(raw.split_positions),
  };
  try {
    validateModule(module);
  } catch (e) {
    throw namingModule(path, e);
  }
  return module;
}

/** The tensors of a module {@link readDF11ModuleHeader} reads; the other two are known by their lengths. */
export const MODULE_HEADER_SUFFIXES = ["luts", "output_positions", "gaps", "split_positions"] as const;

/**
 * Module `path` without its two bulk tensors (`encoded_exponent`, `sign_mantissa`: their byte lengths
 * from the safetensors header instead), its structure checked as {@link readDF11Module} does: for a
 * loader that streams the bulk bytes from the file to the GPU. `read(name)` returns a
 * {@link MODULE_HEADER_SUFFIXES} tensor's bytes. Throws InvalidModuleError naming `<path>.<tensor>`.
 */
export async function readDF11ModuleHeader(weights: SafetensorsCollection, path: string, read: (name: string) => Promise<Uint8Array> = (n) => weights.read(n)): Promise<DF11ModuleHeader> {
  checkModuleTensors(weights, path);
  const raw: Record<string, Uint8Array> = {};
  for (const suffix of MODULE_HEADER_SUFFIXES) raw[suffix] = await read(`${path}.${suffix}`);
  const header: DF11ModuleHeader = {
    luts: raw.luts,
    outputPositions: outputPositionsFromBytes(raw.output_positions),
    gaps: raw.gaps,
    splitPositions: splitPositionsOf(raw.split_positions),
    encodedExponentBytes: weights.info(`${path}.encoded_exponent`).byteLength,
    signMantissaBytes: weights.info(`${path}.sign_mantissa`).byteLength,
  };
  try {
    validateModuleHeader(header);
  } catch (e) {
    throw namingModule(path, e);
  }
  return header;
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
