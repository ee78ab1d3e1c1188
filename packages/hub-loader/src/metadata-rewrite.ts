import { open } from "node:fs/promises";
import { SafetensorsError } from "./errors.js";
import { MAX_HEADER_BYTES } from "./safetensors-reader.js";
import { writeFully } from "./safetensors-writer.js";

const COPY_CHUNK = 16 * 1024 ** 2;

/**
 * Write a copy of the safetensors file `src` to `dest` whose `__metadata__` is `metadata` (none if
 * empty). Tensor entries keep their order and offsets, and the data section is copied byte for byte, so
 * every tensor stays identical. `dest` is written in place: pass a temporary path and rename it.
 */
export async function copySafetensorsWithMetadata(src: string, dest: string, metadata: Record<string, string>): Promise<void> {
  const input = await open(src, "r");
  try {
    const { size } = await input.stat();
    const lenBuf = Buffer.alloc(8);
    await input.read(lenBuf, 0, 8, 0);
    const headerLength = Number(lenBuf.readBigUInt64LE(0));
    if (size < 8 || headerLength > MAX_HEADER_BYTES || 8 + headerLength > size) throw new SafetensorsError(src, "not a safetensors file (bad header length)");
    const headerBuf = Buffer.alloc(headerLength);
    await input.read(headerBuf, 0, headerLength, 8);
    const header = JSON.parse(headerBuf.toString("utf8")) as Record<string, unknown>;
    const entries: Record<string, unknown> = Object.keys(metadata).length > 0 ? { __metadata__: metadata } : {};
    for (const [k, v] of Object.entries(header)) if (k !== "__metadata__") entries[k] = v;
    const json = Buffer.from(JSON.stringify(entries), "utf8");
    const padded = Math.ceil(json.length / 8) * 8;
    const out = Buffer.alloc(8 + padded, 0x20);
    out.writeBigUInt64LE(BigInt(padded), 0);
    json.copy(out, 8);
    const output = await open(dest, "w");
    try {
      let position = await writeFully(output, out, 0);
      const chunk = new Uint8Array(COPY_CHUNK);
      for (let from = 8 + headerLength; from < size; ) {
        const { bytesRead } = await input.read(chunk, 0, Math.min(COPY_CHUNK, size - from), from);
        if (bytesRead === 0) throw new SafetensorsError(src, "ended while being copied");
        position = await writeFully(output, chunk.subarray(0, bytesRead), position);
        from += bytesRead;
      }
      await output.sync();
    } finally {
      await output.close();
    }
  } finally {
    await input.close();
  }
}
