import { basename, join } from "node:path";
import { float16ToFloat32, type DType } from "./dtypes.js";
import { SafetensorsError } from "./errors.js";
import { selectWeightFiles, warnIgnoredFiles, type WeightFileSelection } from "./model-files.js";
import { SafetensorsFile, type TensorInfo } from "./safetensors-reader.js";

/** A tensor's location: the file that holds it and its place there. */
export interface LocatedTensor extends TensorInfo {
  readonly file: SafetensorsFile;
}

/** Options of {@link SafetensorsCollection.openDirectory}. */
export interface OpenDirectoryOptions {
  /**
   * Called with the files that look like weights but are not part of the model. Default: name them once
   * per process as a Node warning ({@link warnIgnoredFiles}).
   */
  readonly onIgnoredFiles?: (directory: string, selection: WeightFileSelection) => void;
}

/**
 * Named tensors to read: a model directory's safetensors ({@link SafetensorsCollection}), or tensors made
 * in memory by whatever implements it.
 */
export interface TensorSource {
  /** Tensor names, in the order a model directory lists them (its weight files in turn, each in its header order). */
  names(): string[];
  info(name: string): { readonly dtype: DType; readonly shape: readonly number[]; readonly byteLength: number };
  read(name: string): Promise<Uint8Array>;
  /** A 16-bit tensor (BF16) as raw words. */
  readU16(name: string): Promise<Uint16Array>;
}

/**
 * The weight files of a model directory seen as one set of tensors — a single file or a sharded
 * checkpoint — chosen by {@link selectWeightFiles}: an index's shards, else the `*.safetensors` files
 * that are not hidden. The index's weight map is checked against the files.
 */
export class SafetensorsCollection implements TensorSource, AsyncDisposable {
  private constructor(
    readonly directory: string,
    readonly files: readonly SafetensorsFile[],
    private readonly byName: ReadonlyMap<string, LocatedTensor>,
    /** Weight-like files of the directory that are not part of the model. */
    readonly ignoredFiles: readonly string[],
    private readonly rename: (stored: string) => string | undefined = (n) => n,
  ) {}

  static async openDirectory(directory: string, options: OpenDirectoryOptions = {}): Promise<SafetensorsCollection> {
    const selection = await selectWeightFiles(directory);
    (options.onIgnoredFiles ?? warnIgnoredFiles)(directory, selection);
    const files: SafetensorsFile[] = [];
    try {
      for (const n of selection.files) files.push(await SafetensorsFile.open(join(directory, n)));
      const byName = new Map<string, LocatedTensor>();
      for (const file of files) {
        for (const info of file.tensors.values()) {
          const other = byName.get(info.name);
          if (other) throw new SafetensorsError(file.path, `tensor also stored in ${other.file.path}`, info.name);
          byName.set(info.name, { ...info, file });
        }
      }
      if (selection.index) checkWeightMap(join(directory, selection.index), selection.weightMap!, byName);
      return new SafetensorsCollection(directory, files, byName, selection.ignored);
    } catch (e) {
      await Promise.all(files.map((f) => f.close()));
      throw e;
    }
  }

  /**
   * The same files under other names: `rename` maps each dotted name of this collection (tensor names
   * and module paths alike) to its name in the view, or to undefined to leave it out. Used to present a multimodal
   * checkpoint's language model under the usual `model.*` names. The view shares the files: closing
   * either closes both. `info(name).name` stays the name in the file.
   */
  renamed(rename: (stored: string) => string | undefined): SafetensorsCollection {
    const byName = new Map<string, LocatedTensor>();
    for (const [current, t] of this.byName) {
      const name = rename(current);
      if (name === undefined) continue;
      if (byName.has(name)) throw new SafetensorsError(t.file.path, `renamed to ${name}, which another tensor already has`, t.name);
      byName.set(name, t);
    }
    const outer = this.rename;
    return new SafetensorsCollection(this.directory, this.files, byName, this.ignoredFiles, (n) => {
      const inner = outer(n);
      return inner === undefined ? undefined : rename(inner);
    });
  }

  /** The name under which a stored name (tensor or module path) appears here, or undefined when left out. */
  nameOf(stored: string): string | undefined {
    return this.rename(stored);
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
    const t = this.info(name);
    return t.file.read(t.name);
  }

  /**
   * Read a tensor's raw bytes into `target` (length ≥ its byte length), e.g. pinned staging memory, with
   * up to `concurrency` positional reads at once; with `range`, only its bytes [from, from + target.length).
   * Throws RangeError for a range outside the tensor, SafetensorsError for a truncated file.
   */
  readInto(name: string, target: Uint8Array, concurrency = 1, range?: { from: number }): Promise<void> {
    const t = this.info(name);
    return t.file.readInto(t.name, target, concurrency, range);
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

/** Every tensor the weight map names must be in the file it names. */
function checkWeightMap(path: string, weightMap: Readonly<Record<string, string>>, byName: ReadonlyMap<string, LocatedTensor>): void {
  for (const [tensor, file] of Object.entries(weightMap)) {
    const located = byName.get(tensor);
    if (!located) throw new SafetensorsError(path, `weight_map names ${file} but no file holds it`, tensor);
    if (basename(located.file.path) !== file) throw new SafetensorsError(path, `weight_map says ${file} but it is in ${located.file.path}`, tensor);
  }
}
