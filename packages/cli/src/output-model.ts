import { writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { copySideFiles, type ShardedSafetensorsWriter, type TensorSource } from "@df11/hub-loader";
import type { ChecksumLedger } from "@df11/models";
import { CliError } from "./errors.js";
import { formatBytes } from "./format-bytes.js";
import type { CodecPool } from "./pool.js";

/** Refuse to write a model over the one it is read from. */
export function assertDistinctDirectories(input: string, output: string): void {
  if (resolve(input) === resolve(output)) throw new CliError(`${output}: the output must not be the input directory`);
}

/**
 * The common end of writing a model directory: copy the tensors that stay as they are, close the
 * shards, write config.json (the input's text through `editConfig`, so what it does not change stays
 * byte for byte, floats like `30.0` included) and copy the side files. Returns the files written and
 * the bytes copied.
 */
export async function finishModelDirectory(
  dir: string,
  writer: ShardedSafetensorsWriter,
  source: {
    /** config.json's text, and where it came from (for messages). */
    config: { text: string; source: string };
    /** The model directory whose side files are copied; none when absent. */
    sideFilesFrom?: string;
    weights: TensorSource;
    unchanged: readonly string[];
    /** Where the copied tensors' checksums are recorded, summed on `pool`'s workers. */
    checksums?: { ledger: ChecksumLedger; pool: CodecPool };
  },
  editConfig: (configText: string) => string,
): Promise<{ files: string[]; copiedBytes: number }> {
  let copiedBytes = 0;
  for (const name of source.unchanged) {
    const info = source.weights.info(name);
    const data = await source.weights.read(name);
    copiedBytes += data.byteLength;
    if (source.checksums) source.checksums.ledger.addTensor(name, await source.checksums.pool.checksum(data));
    await writer.add([{ name, dtype: info.dtype, shape: info.shape, data }]);
  }
  const written = await writer.finish();
  await writeFile(join(dir, "config.json"), editConfig(source.config.text));
  const side = source.sideFilesFrom ? await copySideFiles(source.sideFilesFrom, dir) : [];
  return { files: ["config.json", ...written, ...side], copiedBytes };
}

/**
 * A write error a user can act on: a full disk (ENOSPC) or a quota (EDQUOT) is named with the output
 * and how much the model needs; nothing was left behind (the output is written atomically).
 */
export function explainWriteError(e: unknown, output: string, bytesNeeded: number): unknown {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code === "ENOSPC" || code === "EDQUOT") {
    const what = code === "ENOSPC" ? "the disk is full" : "the disk quota is exhausted";
    return new CliError(`${output}: ${what} (${code}) while writing; the model needs about ${formatBytes(bytesNeeded)}. Nothing was written: free some space and run again`);
  }
  return e;
}
