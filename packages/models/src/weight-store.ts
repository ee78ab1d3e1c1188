import { bf16ToFloat32, decodeElements, decodeModule, type DF11Module } from "@df11/codec";
import type { SafetensorsCollection } from "@df11/hub-loader";
import { WeightLayoutError } from "./errors.js";
import { compressedModulesOf, isModuleTensor, readDF11Module } from "./df11-checkpoint.js";
import { weightNamesOf, type PatternDict } from "./pattern-dict.js";

/** A BF16 matrix as the kernels consume it: bits from `offset`, row-major [rows, cols]. */
export interface MatrixView {
  readonly data: Uint16Array;
  readonly offset: number;
  readonly rows: number;
  readonly cols: number;
}

/**
 * Where the forward pass gets its weights. Matrices are BF16; small vectors (norms, biases) are
 * resident float32. For a DF11 model, `acquire` decodes a compressed module just before use into
 * one reused buffer — only the compressed modules stay resident.
 */
export interface WeightStore {
  readonly kind: "bf16" | "df11";
  /** Bytes of weights held resident. */
  readonly residentBytes: number;
  has(name: string): boolean;
  /** A matrix; valid until the next `matrix` call that decodes another module. */
  matrix(name: string, rows: number, cols: number): MatrixView;
  /** Rows [first, first + count) of a [rows, cols] matrix (embedding lookup) as BF16 bits. */
  rows(name: string, cols: number, first: number, count: number): Uint16Array;
  /** A float32 vector (norm weight, bias), or undefined when absent. */
  vector(name: string): Float32Array | undefined;
}

const checkedShape = (name: string, actual: readonly number[] | number, rows: number, cols: number) => {
  const count = typeof actual === "number" ? actual : actual.reduce((a, b) => a * b, 1);
  if (count !== rows * cols || (typeof actual !== "number" && actual.length === 2 && (actual[0] !== rows || actual[1] !== cols))) {
    throw new WeightLayoutError(name, `shape ${JSON.stringify(actual)} does not fit the config's [${rows}, ${cols}]`);
  }
};

/** Plain BF16 checkpoint: every tensor resident as BF16 bits. */
export class Bf16WeightStore implements WeightStore {
  readonly kind = "bf16";
  private constructor(
    private readonly tensors: Map<string, { data: Uint16Array; shape: readonly number[] }>,
    private readonly vectors: Map<string, Float32Array>,
    readonly residentBytes: number,
  ) {}

  /** Load every tensor of a checkpoint, or only `names`. */
  static async load(weights: SafetensorsCollection, names: readonly string[] = weights.names()): Promise<Bf16WeightStore> {
    const tensors = new Map<string, { data: Uint16Array; shape: readonly number[] }>();
    const vectors = new Map<string, Float32Array>();
    let bytes = 0;
    for (const name of names) {
      const info = weights.info(name);
      if (info.shape.length === 1 && (info.dtype === "F32" || info.dtype === "F16")) {
        // Norms and biases are often kept in F32 (or F16) beside BF16 matrices: read as float32, exactly.
        const v = await weights.readFloat32(name);
        bytes += v.byteLength;
        vectors.set(name, v);
        continue;
      }
      if (info.dtype !== "BF16") throw new WeightLayoutError(name, `dtype ${info.dtype}; df11 runs BF16 (or DF11) matrices (vectors may also be F32 or F16)`);
      const data = await weights.readU16(name);
      bytes += data.byteLength;
      tensors.set(name, { data, shape: info.shape });
      if (info.shape.length === 1) vectors.set(name, bf16ToFloat32(data));
    }
    return new Bf16WeightStore(tensors, vectors, bytes);
  }

  has(name: string): boolean {
    return this.tensors.has(name) || this.vectors.has(name);
  }

  private get(name: string) {
    const t = this.tensors.get(name);
    if (!t) throw new WeightLayoutError(name, "missing from the checkpoint");
    return t;
  }

  matrix(name: string, rows: number, cols: number): MatrixView {
    const t = this.get(name);
    checkedShape(name, t.shape, rows, cols);
    return { data: t.data, offset: 0, rows, cols };
  }

  rows(name: string, cols: number, first: number, count: number): Uint16Array {
    return this.get(name).data.subarray(first * cols, (first + count) * cols);
  }

  vector(name: string): Float32Array | undefined {
    return this.vectors.get(name);
  }
}

/**
 * DFloat11 checkpoint: compressed modules stay resident; a module is decoded into one shared buffer when
 * one of its matrices is needed (and stays decoded until another module is). Embedding rows decode
 * alone, block by block.
 */
export class Df11WeightStore implements WeightStore {
  readonly kind = "df11";
  private decodedModule: string | undefined;
  private buffer = new Uint16Array(0);
  /** Decodes performed (for tests and stats). */
  decodes = 0;

  private constructor(
    private readonly modules: Map<string, { module: DF11Module; weights: string[] }>,
    private readonly owner: Map<string, { module: string; index: number }>,
    private readonly plain: Bf16WeightStore,
    readonly residentBytes: number,
  ) {}

  static async load(weights: SafetensorsCollection, patternDict: PatternDict): Promise<Df11WeightStore> {
    const modules = new Map<string, { module: DF11Module; weights: string[] }>();
    const owner = new Map<string, { module: string; index: number }>();
    let bytes = 0;
    for (const path of compressedModulesOf(weights.names())) {
      const module = await readDF11Module(weights, path); // validated
      const names = weightNamesOf(patternDict, path);
      if (module.splitPositions.length !== names.length - 1) {
        throw new WeightLayoutError(`${path}.split_positions`, `${module.splitPositions.length + 1} parts, the pattern_dict lists ${names.length}`);
      }
      modules.set(path, { module, weights: names });
      names.forEach((w, index) => owner.set(w, { module: path, index }));
      bytes += module.luts.length + module.encodedExponent.length + module.signMantissa.length + module.gaps.length + module.outputPositions.byteLength;
    }
    const plain = await Bf16WeightStore.load(weights, weights.names().filter((n) => !isModuleTensor(n)));
    return new Df11WeightStore(modules, owner, plain, bytes + plain.residentBytes);
  }

  has(name: string): boolean {
    return this.owner.has(name) || this.plain.has(name);
  }

  /** Where weight `name` lives inside its module's decoded stream. */
  private locate(name: string) {
    const o = this.owner.get(name)!;
    const { module } = this.modules.get(o.module)!;
    const bounds = [0, ...module.splitPositions, module.signMantissa.length];
    return { path: o.module, module, start: bounds[o.index], count: bounds[o.index + 1] - bounds[o.index] };
  }

  matrix(name: string, rows: number, cols: number): MatrixView {
    if (!this.owner.has(name)) return this.plain.matrix(name, rows, cols);
    const { path, module, start, count } = this.locate(name);
    checkedShape(name, count, rows, cols);
    if (this.decodedModule !== path) {
      const n = module.signMantissa.length;
      if (this.buffer.length < n) this.buffer = new Uint16Array(n);
      decodeModule(module, this.buffer);
      this.decodedModule = path;
      this.decodes++;
    }
    return { data: this.buffer, offset: start, rows, cols };
  }

  rows(name: string, cols: number, first: number, count: number): Uint16Array {
    if (!this.owner.has(name)) return this.plain.rows(name, cols, first, count);
    const { module, start } = this.locate(name);
    return decodeElements(module, start + first * cols, count * cols);
  }

  vector(name: string): Float32Array | undefined {
    return this.plain.vector(name);
  }
}

