import { open, type FileHandle } from "node:fs/promises";
import { compareForLayout, DTYPE_SIZES, type DType } from "./dtypes.js";
import { SafetensorsError } from "./errors.js";
import { writeAtomically } from "./atomic.js";

/** A tensor to write: raw little-endian bytes plus dtype and shape. */
export interface TensorToWrite {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: Uint8Array;
}

/** What the header needs of a tensor: its bytes' length, not the bytes. */
export interface TensorLayout {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly byteLength: number;
}

/** A tensor's data length: given, or that of its bytes. */
const lengthOf = (t: TensorLayout | TensorToWrite): number => ("byteLength" in t ? t.byteLength : t.data.byteLength);

/** Build the header bytes (JSON padded with spaces to a multiple of 8) and the tensor order. */
export function buildSafetensorsHeader<T extends TensorLayout | TensorToWrite>(
  file: string,
  tensors: readonly T[],
  metadata?: Record<string, string>,
): { header: Uint8Array; ordered: T[] } {
  const ordered = [...tensors].sort(compareForLayout);
  const entries: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) entries.__metadata__ = metadata;
  let offset = 0;
  const seen = new Set<string>();
  for (const t of ordered) {
    if (seen.has(t.name)) throw new SafetensorsError(file, "tensor name used twice", t.name);
    seen.add(t.name);
    const expected = t.shape.reduce((a, b) => a * b, 1) * DTYPE_SIZES[t.dtype];
    const length = lengthOf(t);
    if (expected !== length) {
      throw new SafetensorsError(file, `${t.dtype} ${JSON.stringify(t.shape)} needs ${expected} bytes, got ${length}`, t.name);
    }
    entries[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + length] };
    offset += length;
  }
  const json = Buffer.from(JSON.stringify(entries), "utf8");
  const padded = Math.ceil(json.length / 8) * 8;
  const header = Buffer.alloc(8 + padded, 0x20);
  header.writeBigUInt64LE(BigInt(padded), 0);
  json.copy(header, 8);
  return { header, ordered };
}

/** Write all of `bytes` at `position` (large arrays in pieces); returns the position after them. */
export async function writeFully(handle: FileHandle, bytes: Uint8Array, position: number): Promise<number> {
  for (let done = 0; done < bytes.byteLength; ) {
    const { bytesWritten } = await handle.write(bytes, done, Math.min(1 << 30, bytes.byteLength - done), position);
    done += bytesWritten;
    position += bytesWritten;
  }
  return position;
}

/**
 * Write a safetensors file atomically (temporary file + rename), byte-identical to what the reference
 * Python writer produces for the same tensors.
 */
export async function writeSafetensors(
  path: string,
  tensors: readonly TensorToWrite[],
  metadata?: Record<string, string>,
): Promise<number> {
  const { header, ordered } = buildSafetensorsHeader(path, tensors, metadata);
  return writeAtomically(path, async (tmp) => {
    const handle = await open(tmp, "w");
    try {
      let position = await writeFully(handle, header, 0);
      for (const t of ordered) position = await writeFully(handle, t.data, position);
      await handle.sync();
      return position;
    } finally {
      await handle.close();
    }
  });
}
