import { open, rename, rm, writeFile, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { SAFETENSORS_INDEX } from "./model-files.js";
import { buildSafetensorsHeader, writeFully, type TensorLayout, type TensorToWrite } from "./safetensors-writer.js";

/** Default shard size, as `transformers` uses. */
export const DEFAULT_MAX_SHARD_BYTES = 5 * 1024 ** 3;

/** Default bytes of a shard held in memory before the rest goes to a spool file. */
export const DEFAULT_SHARD_MEMORY_BYTES = 512 * 1024 ** 2;

/** `__metadata__` of a shard: fixed, or made from the shard's tensors once it is complete. */
export type ShardMetadata = Record<string, string> | ((tensors: readonly TensorLayout[]) => Record<string, string> | undefined);

export interface ShardedWriterOptions {
  /** Largest shard in bytes (default 5 GB). */
  readonly maxShardBytes?: number;
  /** `__metadata__` written into every shard. */
  readonly metadata?: ShardMetadata;
  /**
   * Bytes of the current shard kept in memory (default 512 MiB); past that, tensor data goes to a spool
   * file beside it and is copied behind the header when the shard closes. Bounds memory whatever the shard size.
   */
  readonly memoryBytes?: number;
}

/** A tensor of the open shard: its bytes in memory, or at an offset of the spool file. */
interface PendingTensor extends TensorLayout {
  readonly data?: Uint8Array;
  readonly spoolOffset?: number;
}

const COPY_CHUNK = 16 * 1024 ** 2;

/**
 * Writes tensors into a directory as `model.safetensors`, or as `model-0000i-of-0000N.safetensors`
 * shards plus `model.safetensors.index.json` once they exceed `maxShardBytes`. At most `memoryBytes`
 * of a shard stay in memory. Meant to write into a temporary directory that is renamed when complete.
 */
export class ShardedSafetensorsWriter implements AsyncDisposable {
  private pending: PendingTensor[] = [];
  private pendingBytes = 0;
  private inMemoryBytes = 0;
  private spool?: { handle: FileHandle; path: string; size: number };
  private readonly shards: Array<{ tmpName: string; tensors: string[] }> = [];
  private totalBytes = 0;
  readonly maxShardBytes: number;
  readonly memoryBytes: number;

  constructor(
    readonly directory: string,
    private readonly options: ShardedWriterOptions = {},
  ) {
    this.maxShardBytes = options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
    this.memoryBytes = options.memoryBytes ?? DEFAULT_SHARD_MEMORY_BYTES;
  }

  /** Add tensors that belong together (one module's); they never straddle two shards. */
  async add(tensors: readonly TensorToWrite[]): Promise<void> {
    const bytes = tensors.reduce((s, t) => s + t.data.byteLength, 0);
    if (this.pending.length > 0 && this.pendingBytes + bytes > this.maxShardBytes) await this.flush();
    for (const t of tensors) {
      const layout = { name: t.name, dtype: t.dtype, shape: t.shape, byteLength: t.data.byteLength };
      if (this.inMemoryBytes + t.data.byteLength <= this.memoryBytes) {
        this.pending.push({ ...layout, data: t.data });
        this.inMemoryBytes += t.data.byteLength;
      } else {
        this.pending.push({ ...layout, spoolOffset: await this.toSpool(t.data) });
      }
    }
    this.pendingBytes += bytes;
    this.totalBytes += bytes;
  }

  private async toSpool(data: Uint8Array): Promise<number> {
    if (!this.spool) {
      const path = join(this.directory, `shard-${this.shards.length}.spool`);
      this.spool = { handle: await open(path, "w+"), path, size: 0 };
    }
    const offset = this.spool.size;
    this.spool.size = await writeFully(this.spool.handle, data, offset);
    return offset;
  }

  private async flush(): Promise<void> {
    if (this.pending.length === 0) return;
    const tmpName = `shard-${this.shards.length}.safetensors.partial`;
    const path = join(this.directory, tmpName);
    const metadata = typeof this.options.metadata === "function" ? this.options.metadata(this.pending) : this.options.metadata;
    const { header, ordered } = buildSafetensorsHeader(path, this.pending, metadata);
    const handle = await open(path, "w");
    try {
      let position = await writeFully(handle, header, 0);
      const chunk = this.spool ? new Uint8Array(Math.min(COPY_CHUNK, this.spool.size)) : undefined;
      for (const t of ordered) {
        if (t.data) {
          position = await writeFully(handle, t.data, position);
          continue;
        }
        for (let done = 0; done < t.byteLength; ) {
          const n = Math.min(chunk!.length, t.byteLength - done);
          const { bytesRead } = await this.spool!.handle.read(chunk!, 0, n, t.spoolOffset! + done);
          if (bytesRead === 0) throw new Error(`${this.spool!.path}: ended early while copying ${t.name}`);
          position = await writeFully(handle, chunk!.subarray(0, bytesRead), position);
          done += bytesRead;
        }
      }
      await handle.sync();
    } finally {
      await handle.close();
    }
    await this.closeSpool();
    this.shards.push({ tmpName, tensors: this.pending.map((t) => t.name) });
    this.pending = [];
    this.pendingBytes = 0;
    this.inMemoryBytes = 0;
  }

  private async closeSpool(): Promise<void> {
    if (!this.spool) return;
    const { handle, path } = this.spool;
    this.spool = undefined;
    await handle.close();
    await rm(path, { force: true });
  }

  /** Close the spool file, if any (after a failure; `finish` closes it itself). */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.closeSpool();
  }

  /** Write the last shard, give the shards their final names and write the index; returns the file names. */
  async finish(): Promise<string[]> {
    try {
      await this.flush();
    } finally {
      await this.closeSpool();
    }
    const n = this.shards.length;
    const pad = (i: number) => String(i).padStart(5, "0");
    const names = n === 1 ? ["model.safetensors"] : this.shards.map((_, i) => `model-${pad(i + 1)}-of-${pad(n)}.safetensors`);
    for (let i = 0; i < n; i++) await rename(join(this.directory, this.shards[i].tmpName), join(this.directory, names[i]));
    if (n > 1) {
      const weightMap: Record<string, string> = {};
      this.shards.forEach((s, i) => s.tensors.forEach((t) => (weightMap[t] = names[i])));
      const sorted = Object.fromEntries(Object.entries(weightMap).sort(([a], [b]) => (a < b ? -1 : 1)));
      await writeFile(
        join(this.directory, SAFETENSORS_INDEX),
        JSON.stringify({ metadata: { total_size: this.totalBytes }, weight_map: sorted }, null, 2) + "\n",
      );
    }
    return n > 1 ? [...names, SAFETENSORS_INDEX] : names;
  }
}
