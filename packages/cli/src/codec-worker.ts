/**
 * Worker-thread side of {@link CodecPool}: the CPU-heavy codec work, one task at a time.
 * Errors travel back as data so their type and fields survive the thread boundary.
 */
import {
  exponentHistogram,
  decodeBlocks,
  decodeLikeKernel,
  decodeModule,
  checksumHex,
  encodeModule,
  moduleChecksums,
  moduleStats,
  Sum64Stream,
  UncodableExponentError,
  type InvalidModuleError,
  type DF11Module,
  type ModuleChecksums,
  type ModuleStats,
} from "@df11/codec";

export type WorkerError = { name: string; message: string; tensor?: string; index?: number; exponent?: number; field?: string; detail?: string };
export type Outcome<T> = { ok: true; value: T } | { ok: false; error: WorkerError };

const guard = <T>(work: () => T): Outcome<T> => {
  try {
    return { ok: true, value: work() };
  } catch (e) {
    const err = e as Error & Partial<UncodableExponentError> & Partial<InvalidModuleError>;
    return { ok: false, error: { name: err.name, message: err.message, tensor: err.tensor, index: err.index, exponent: err.exponent, field: err.field, detail: err.detail } };
  }
};

export function encode(task: {
  parts: Uint16Array[];
  names: string[];
  checksums?: boolean;
}): Outcome<{ module: DF11Module; histogram: Float64Array; checksums?: ModuleChecksums }> {
  return guard(() => {
    const { module, histogram } = encodeModule(task.parts, { names: task.names });
    return { module, histogram, checksums: task.checksums ? moduleChecksums(module, task.parts) : undefined };
  });
}

/** Decode a module; also returns the df11-sum64 of the decoded weights. */
export function decode(task: { module: DF11Module; kernelSemantics?: boolean }): Outcome<{ decoded: Uint16Array; checksum: string }> {
  return guard(() => {
    const decoded = task.kernelSemantics ? decodeLikeKernel(task.module) : decodeModule(task.module);
    return { decoded, checksum: checksumHex(decoded) };
  });
}

/** df11-sum64 of bytes. */
export function checksum(task: { bytes: Uint8Array }): Outcome<string> {
  return guard(() => new Sum64Stream().update(task.bytes).hex());
}

/** Decode a block range of a module held in shared memory into a shared output. */
export function decodeRange(task: { module: DF11Module; start: number; end: number; out: Uint16Array }): Outcome<null> {
  return guard(() => {
    decodeBlocks(task.module, task.start, task.end, task.out);
    return null;
  });
}

/** Decode with both decoders, check they agree, and return the stats (with exponent entropy). */
export function check(task: { module: DF11Module }): Outcome<{ decoded: Uint16Array; stats: ModuleStats; checksum: string }> {
  return guard(() => {
    const decoded = decodeModule(task.module);
    const kernel = decodeLikeKernel(task.module);
    const mismatch = kernel.findIndex((v, i) => v !== decoded[i]);
    if (mismatch >= 0) throw new Error(`kernel-semantics decode differs from sequential decode at element ${mismatch}`);
    return { decoded, stats: moduleStats(task.module, exponentHistogram([decoded])), checksum: checksumHex(decoded) };
  });
}
