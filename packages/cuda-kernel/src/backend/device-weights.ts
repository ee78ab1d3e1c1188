import type { SafetensorsCollection } from "@df11/hub-loader";
import { checksumHex } from "@df11/codec";
import {
  ChecksumMismatchError,
  checkDecodedWeights,
  compressedModulesOf,
  isModuleTensor,
  readDF11Module,
  weightNamesOf,
  WeightLayoutError,
  type PatternDict,
  type RecordedChecksums,
} from "@df11/models";
import { DeviceChecksum } from "../integrity/device-checksum.js";
import { DeviceBuffer, DeviceModule } from "../index.js";
import { call, native, type Address } from "../native.js";

/** Where a weight matrix lives on the GPU: resident BF16, or a slice of a compressed DF11 module. */
export type MatrixSource =
  | { readonly kind: "resident"; readonly address: Address; readonly elements: number; readonly shape: readonly number[] }
  | { readonly kind: "df11"; readonly module: DeviceModule; readonly start: number; readonly elements: number; readonly modulePath: string };

/** Loading progress: bytes of the checkpoint placed on the GPU so far. */
export type LoadProgress = (done: number, total: number) => void;

/** Which recorded checksums to check while loading. */
export interface LoadChecks {
  readonly recorded: RecordedChecksums;
  /** Stored tensors, summed on the GPU where they were uploaded (small ones on the host). */
  readonly stored: boolean;
  /** Each DF11 module decoded once, window by window, and its weights summed right after the decode. */
  readonly weights: boolean;
}

/** What the checks at load covered and cost. */
export interface LoadCheckReport {
  storedTensors: number;
  storedMs: number;
  decodedModules: number;
  /** Decode + checksum time per module, in ms (GPU wall time, synchronised). */
  weightsMsPerModule: number[];
}

/** Elements decoded per window when checking a module's weights at load. */
const VERIFY_WINDOW = 16 * 1024 * 1024;

/** Matrices of one layer in the order the official pattern_dicts compress them, so fused projections are adjacent. */
const LAYER_ORDER = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.gate_up_proj", "mlp.down_proj"];
const layerOf = (name: string) => /^model\.layers\.(\d+)\./.exec(name)?.[1];
const orderKey = (name: string) => {
  const i = LAYER_ORDER.findIndex((m) => name.endsWith(`.${m}.weight`));
  return i < 0 ? LAYER_ORDER.length : i;
};
const align = (n: number, to: number) => Math.ceil(n / to) * to;

/**
 * A checkpoint's weights on the GPU. BF16 matrices of a layer share one allocation, in pattern order
 * (q, k, v, o, gate, up, down), so a fused projection is one contiguous matrix. DF11 modules stay
 * compressed ({@link DeviceModule}); vectors (norms, biases) are float32 in one buffer.
 */
export class DeviceWeights implements Disposable {
  private readonly matrices = new Map<string, MatrixSource>();
  private readonly vectors = new Map<string, { address: Address; length: number }>();
  private readonly buffers: DeviceBuffer[] = [];
  private readonly modules: DeviceModule[] = [];
  private fused = new Map<string, Address>();
  residentBytes = 0;
  readonly checks: LoadCheckReport = { storedTensors: 0, storedMs: 0, decodedModules: 0, weightsMsPerModule: [] };

  private constructor(readonly kind: "bf16" | "df11") {}

  /** Bytes the weights will take on the GPU (for the memory check before anything is allocated). */
  static plannedBytes(weights: SafetensorsCollection, df11: boolean): number {
    let bytes = 0;
    for (const name of weights.names()) {
      const info = weights.info(name);
      // BF16 and F16 vectors (norms, biases) are held as float32; everything else as stored.
      const widened = (info.dtype === "BF16" || info.dtype === "F16") && info.shape.length === 1 ? 2 : 1;
      bytes += align(info.byteLength * widened, 256);
    }
    // Each DF11 module also holds its 20 KB decode tables and padding.
    return bytes + (df11 ? compressedModulesOf(weights.names()).length * 24 * 1024 : 0);
  }

  /** Upload a checkpoint (BF16, or DF11 with its pattern_dict). */
  static async load(weights: SafetensorsCollection, patternDict: PatternDict | undefined, onProgress?: LoadProgress, checks?: LoadChecks): Promise<DeviceWeights> {
    const w = new DeviceWeights(patternDict ? "df11" : "bf16");
    try {
      await w.upload(weights, patternDict, onProgress, checks);
      return w;
    } catch (e) {
      w.dispose();
      throw e;
    }
  }

  private async upload(weights: SafetensorsCollection, patternDict: PatternDict | undefined, onProgress?: LoadProgress, checks?: LoadChecks): Promise<void> {
    using sum = checks && (checks.stored || checks.weights) ? new DeviceChecksum() : undefined;
    /** Compare a stored tensor's checksum (no record: nothing to check). */
    const expectStored = (name: string, actual: () => string) => {
      const expected = checks?.stored ? checks.recorded.stored.get(name) : undefined;
      if (expected === undefined) return;
      const started = performance.now();
      const got = actual();
      this.checks.storedMs += performance.now() - started;
      this.checks.storedTensors++;
      if (got !== expected) throw new ChecksumMismatchError(name, expected, got, "stored");
    };
    // One decode window for checking every module's weights (sized for the largest module).
    const largestModule = patternDict ? Math.max(0, ...compressedModulesOf(weights.names()).map((m) => weights.info(`${m}.sign_mantissa`).byteLength)) : 0;
    const verifyWindow = Math.min(VERIFY_WINDOW, Math.ceil(largestModule / 8) * 8);
    using scratch = checks?.weights && verifyWindow > 0 ? DeviceBuffer.alloc(verifyWindow * 2 + 16) : undefined;
    const total = weights.names().reduce((n, t) => n + weights.info(t).byteLength, 0);
    let done = 0;
    const progress = (bytes: number) => onProgress?.((done += bytes), total);

    if (patternDict) {
      for (const path of compressedModulesOf(weights.names())) {
        const module = await readDF11Module(weights, path);
        const names = weightNamesOf(patternDict, path);
        if (module.splitPositions.length !== names.length - 1) {
          throw new WeightLayoutError(`${path}.split_positions`, `${module.splitPositions.length + 1} parts, the pattern_dict lists ${names.length}`);
        }
        const gpu = DeviceModule.upload(module);
        this.modules.push(gpu);
        if (checks?.stored && checks.recorded.modules.has(path)) {
          const onGpu = gpu.storedChecksums(sum);
          for (const [suffix, hex] of Object.entries(onGpu)) expectStored(`${path}.${suffix}`, () => hex);
          // output_positions and split_positions are not kept as stored on the device: small, summed here.
          for (const suffix of ["output_positions", "split_positions"]) {
            const raw = await weights.read(`${path}.${suffix}`);
            expectStored(`${path}.${suffix}`, () => checksumHex(raw));
          }
        }
        if (checks?.weights && checks.recorded.modules.has(path)) this.checkModuleWeights(gpu, path, checks.recorded, sum!, scratch!, verifyWindow);
        this.residentBytes += gpu.deviceBytes;
        const bounds = [0, ...module.splitPositions, module.signMantissa.length];
        names.forEach((name, i) => this.matrices.set(name, { kind: "df11", module: gpu, start: bounds[i], elements: bounds[i + 1] - bounds[i], modulePath: path }));
        progress(module.luts.length + module.encodedExponent.length + module.signMantissa.length + module.gaps.length + module.outputPositions.byteLength);
      }
    }

    const plain = weights.names().filter((n) => !isModuleTensor(n));
    const isVector = (n: string) => weights.info(n).shape.length === 1;
    for (const name of plain) {
      const info = weights.info(name);
      const ok = info.dtype === "BF16" || (isVector(name) && (info.dtype === "F32" || info.dtype === "F16"));
      if (!ok) throw new WeightLayoutError(name, `dtype ${info.dtype}; df11 runs BF16 (or DF11) matrices (vectors may also be F32 or F16)`);
    }
    // Vectors: float32, one buffer.
    const vectorNames = plain.filter(isVector);
    const offsets = new Map<string, number>();
    let vectorBytes = 0;
    for (const n of vectorNames) {
      offsets.set(n, vectorBytes);
      vectorBytes = align(vectorBytes + weights.info(n).shape[0] * 4, 256);
    }
    if (vectorBytes > 0) {
      const buf = this.own(DeviceBuffer.alloc(vectorBytes));
      for (const n of vectorNames) {
        if (checks?.stored && checks.recorded.stored.has(n)) {
          const raw = await weights.read(n);
          expectStored(n, () => checksumHex(raw));
        }
        const values = await weights.readFloat32(n);
        buf.upload(values, offsets.get(n)!);
        this.vectors.set(n, { address: buf.address + offsets.get(n)!, length: values.length });
        progress(weights.info(n).byteLength);
      }
    }
    // Matrices (and anything else of ≥ 2 dims): per layer one buffer, else one buffer each.
    const groups = new Map<string, string[]>();
    for (const n of plain.filter((n) => !isVector(n))) {
      const key = layerOf(n) ?? n;
      groups.set(key, [...(groups.get(key) ?? []), n]);
    }
    for (const names of groups.values()) {
      names.sort((a, b) => orderKey(a) - orderKey(b));
      const bytes = names.reduce((s, n) => s + align(weights.info(n).byteLength, 256), 0);
      const buf = this.own(DeviceBuffer.alloc(bytes));
      let offset = 0;
      for (const n of names) {
        const info = weights.info(n);
        buf.upload(await weights.read(n), offset);
        expectStored(n, () => sum!.hexOf(buf.address + offset, info.byteLength));
        this.matrices.set(n, { kind: "resident", address: buf.address + offset, elements: info.byteLength / 2, shape: info.shape });
        offset += align(info.byteLength, 256);
        progress(info.byteLength);
      }
    }
  }

  /** Decode a module window by window into a scratch buffer, sum each window right after its decode, compare. */
  private checkModuleWeights(module: DeviceModule, path: string, recorded: RecordedChecksums, sum: DeviceChecksum, scratch: DeviceBuffer, window: number): void {
    const started = performance.now();
    sum.reset();
    for (let lo = 0; lo < module.elements; lo += window) {
      const hi = Math.min(module.elements, lo + window);
      module.decodeRange(scratch.address, lo, hi);
      sum.add(scratch.address, (hi - lo) * 2, lo / 2);
    }
    const actual = sum.hex();
    this.checks.weightsMsPerModule.push(performance.now() - started);
    this.checks.decodedModules++;
    checkDecodedWeights(path, recorded, actual);
  }

  private own(b: DeviceBuffer): DeviceBuffer {
    this.buffers.push(b);
    this.residentBytes += b.byteLength;
    return b;
  }

  has(name: string): boolean {
    return this.matrices.has(name) || this.vectors.has(name);
  }

  matrix(name: string): MatrixSource {
    const m = this.matrices.get(name);
    if (!m) throw new WeightLayoutError(name, this.vectors.has(name) ? "is a vector, a matrix was expected" : "missing from the checkpoint");
    return m;
  }

  /** A float32 vector's address, checked against the length the config needs. */
  vector(name: string, length: number): Address {
    const v = this.vectors.get(name);
    if (!v) throw new WeightLayoutError(name, "missing from the checkpoint");
    if (v.length !== length) throw new WeightLayoutError(name, `has ${v.length} elements, the config needs ${length}`);
    return v.address;
  }

  /** Several biases side by side (for fused projections), built once. */
  fusedVector(names: readonly string[], lengths: readonly number[]): Address {
    if (names.length === 1) return this.vector(names[0], lengths[0]);
    const key = names.join("|");
    const known = this.fused.get(key);
    if (known !== undefined) return known;
    const total = lengths.reduce((a, b) => a + b, 0);
    const buf = this.own(DeviceBuffer.alloc(total * 4));
    let offset = 0;
    names.forEach((n, i) => {
      const src = this.vector(n, lengths[i]);
      call(() => native().copyAddress(buf.address + offset * 4, src, lengths[i] * 4));
      offset += lengths[i];
    });
    call(() => native().synchronize()); // the copies ran on the default stream; compute runs on another
    this.fused.set(key, buf.address);
    return buf.address;
  }

  dispose(): void {
    for (const b of this.buffers) b.dispose();
    for (const m of this.modules) m.dispose();
    this.buffers.length = 0;
    this.modules.length = 0;
    this.matrices.clear();
    this.vectors.clear();
    this.fused.clear();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
