import { rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { SAFETENSORS_INDEX } from "./safetensors-collection.js";
import { writeSafetensors, type TensorToWrite } from "./safetensors-writer.js";

/** Default shard size, as `transformers` uses. */
export const DEFAULT_MAX_SHARD_BYTES = 5 * 1024 ** 3;

/**
 * Writes tensors into a directory as `model.safetensors`, or as `model-0000i-of-0000N.safetensors`
 * shards plus `model.safetensors.index.json` once they exceed `maxShardBytes`. Only the current shard
 * is held in memory. Meant to write into a temporary directory that is renamed when complete.
 */
export class ShardedSafetensorsWriter {
  private pending: TensorToWrite[] = [];
  private pendingBytes = 0;
  private readonly shards: Array<{ tmpName: string; tensors: string[] }> = [];
  private totalBytes = 0;

  constructor(
    readonly directory: string,
    readonly maxShardBytes = DEFAULT_MAX_SHARD_BYTES,
    /** `__metadata__` written into every shard. */
    readonly metadata?: Record<string, string>,
  ) {}

  /** Add tensors that belong together (one module's); they never straddle two shards. */
  async add(tensors: readonly TensorToWrite[]): Promise<void> {
    const bytes = tensors.reduce((s, t) => s + t.data.byteLength, 0);
    if (this.pending.length > 0 && this.pendingBytes + bytes > this.maxShardBytes) await this.flush();
    this.pending.push(...tensors);
    this.pendingBytes += bytes;
    this.totalBytes += bytes;
  }

  private async flush(): Promise<void> {
    if (this.pending.length === 0) return;
    const tmpName = `shard-${this.shards.length}.safetensors.partial`;
    await writeSafetensors(join(this.directory, tmpName), this.pending, this.metadata);
    this.shards.push({ tmpName, tensors: this.pending.map((t) => t.name) });
    this.pending = [];
    this.pendingBytes = 0;
  }

  /** Write the last shard, give the shards their final names and write the index; returns the file names. */
  async finish(): Promise<string[]> {
    await this.flush();
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
