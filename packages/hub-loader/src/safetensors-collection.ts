import { existsSync } from "node:fs";
import { float16ToFloat32 } from "./dtypes.js";
import { readdir, readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { SafetensorsError } from "./errors.js";
import { SafetensorsFile, type TensorInfo } from "./safetensors-reader.js";

/** A tensor's location: the file that holds it and its place there. */
export interface LocatedTensor extends TensorInfo {
  readonly file: SafetensorsFile;
}

/** Name of the index file of a sharded checkpoint. */
export const SAFETENSORS_INDEX = "model.safetensors.index.json";

/**
 * Every `*.safetensors` file of a directory seen as one set of tensors — a single file or a sharded
 * checkpoint. Where a `*.safetensors.index.json` exists, its weight map is checked against the files.
 */
export class SafetensorsCollection implements AsyncDisposable {
  private constructor(
    readonly directory: string,
    readonly files: readonly SafetensorsFile[],
    private readonly byName: ReadonlyMap<string, LocatedTensor>,
  ) {}

  static async openDirectory(directory: string): Promise<SafetensorsCollection> {
    const entries = (await readdir(directory)).sort();
    const names = entries.filter((f) => f.endsWith(".safetensors"));
    if (names.length === 0) throw new SafetensorsError(directory, "no *.safetensors files in this directory");
    const files: SafetensorsFile[] = [];
    try {
      for (const n of names) files.push(await SafetensorsFile.open(join(directory, n)));
      const byName = new Map<string, LocatedTensor>();
      for (const file of files) {
        for (const info of file.tensors.values()) {
          const other = byName.get(info.name);
          if (other) throw new SafetensorsError(file.path, `tensor also stored in ${other.file.path}`, info.name);
          byName.set(info.name, { ...info, file });
        }
      }
      for (const index of entries.filter((f) => f.endsWith(".safetensors.index.json"))) {
        await checkIndex(join(directory, index), byName);
      }
      return new SafetensorsCollection(directory, files, byName);
    } catch (e) {
      await Promise.all(files.map((f) => f.close()));
      throw e;
    }
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  info(name: string): LocatedTensor {
    const t = this.byName.get(name);
    if (!t) throw new SafetensorsError(this.directory, "no such tensor in any *.safetensors file", name);
    return t;
  }

  read(name: string): Promise<Uint8Array> {
    return this.info(name).file.read(name);
  }

  /** Read a BF16 (or other 16-bit) tensor as raw 16-bit words. */
  async readU16(name: string): Promise<Uint16Array> {
    const bytes = await this.read(name);
    return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  }

  /**
   * Read a floating-point tensor (BF16, F16 or F32) as float32 values, exactly. Checkpoints often keep
   * norms and biases in F32 beside BF16 matrices.
   */
  async readFloat32(name: string): Promise<Float32Array> {
    const { dtype } = this.info(name);
    const bytes = await this.read(name);
    if (dtype === "F32") return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    if (dtype !== "BF16" && dtype !== "F16") throw new SafetensorsError(this.info(name).file.path, `dtype ${dtype} is not a float type df11 reads (BF16, F16, F32)`, name);
    const words = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
    const out = new Float32Array(words.length);
    if (dtype === "F16") for (let i = 0; i < words.length; i++) out[i] = float16ToFloat32(words[i]);
    else new Uint32Array(out.buffer).set(Uint32Array.from(words, (w) => w << 16));
    return out;
  }

  async close(): Promise<void> {
    await Promise.all(this.files.map((f) => f.close()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

async function checkIndex(path: string, byName: ReadonlyMap<string, LocatedTensor>): Promise<void> {
  let index: { weight_map?: Record<string, string> };
  try {
    index = JSON.parse(await readFile(path, "utf8"));
  } catch (e) {
    throw new SafetensorsError(path, `index is not valid JSON (${(e as Error).message})`);
  }
  if (typeof index?.weight_map !== "object" || index.weight_map === null) {
    throw new SafetensorsError(path, "index has no weight_map object");
  }
  for (const [tensor, file] of Object.entries(index.weight_map)) {
    const located = byName.get(tensor);
    if (!located) {
      if (typeof file === "string" && !existsSync(join(dirname(path), file))) {
        throw new SafetensorsError(path, `weight_map puts it in the shard ${file}, which is missing from ${dirname(path)} (an incomplete download or copy?)`, tensor);
      }
      throw new SafetensorsError(path, `weight_map names ${file} but no file holds it`, tensor);
    }
    if (!located.file.path.endsWith(`/${file}`) && located.file.path !== file) {
      throw new SafetensorsError(path, `weight_map says ${file} but it is in ${located.file.path}`, tensor);
    }
  }
}
