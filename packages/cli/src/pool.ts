import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { Piscina } from "piscina";
import {
  blockCount,
  CodecError,
  InvalidModuleError,
  UncodableExponentError,
  validateModule,
  type DF11Module,
  type ModuleChecksums,
  type ModuleStats,
} from "@df11/codec";
import type { Outcome, WorkerError } from "./codec-worker.js";

/** The built worker script (beside this file in dist/, or in dist/ when running from sources). */
function workerFile(): string {
  const sibling = new URL("./codec-worker.js", import.meta.url);
  return fileURLToPath(existsSync(sibling) ? sibling : new URL("../dist/codec-worker.js", import.meta.url));
}

/** Rebuild the typed error a worker reported. */
function revive(e: WorkerError): Error {
  if (e.name === "UncodableExponentError") return new UncodableExponentError(e.tensor!, e.index!, e.exponent!);
  if (e.name === "InvalidModuleError") return new InvalidModuleError(e.field!, e.detail!);
  const err = e.name === "CodecError" ? new CodecError(e.message) : new Error(e.message);
  err.name = e.name;
  return err;
}

const unwrap = <T>(o: Outcome<T>): T => {
  if (!o.ok) throw revive(o.error);
  return o.value;
};

/** Copy a typed array into shared memory so every worker can read it without a copy of its own. */
function shared<T extends Uint8Array | Uint32Array>(a: T): T {
  if (a.buffer instanceof SharedArrayBuffer) return a;
  const copy = new (a.constructor as { new (b: SharedArrayBuffer): T })(new SharedArrayBuffer(a.byteLength));
  copy.set(a as never);
  return copy;
}

/**
 * A pool of worker threads for the codec: encodes and decodes whole modules in parallel, and splits
 * the decode of one large module across all workers by GPU-block ranges.
 */
/**
 * Node flags for the workers. Piscina first `require()`s the worker file and falls back to `import()`;
 * on Node versions where require() of ES modules is on by default, that require() of our ES-module worker
 * crashed the whole process under load (a fatal V8 error, "IsGraphAsync must be used on an instantiated
 * module", seen on a 16-core GPU host with Node 20.20). With require(esm) off in the workers, the
 * require() throws as piscina expects and the import() loads the worker.
 */
export function workerExecArgv(): string[] {
  const flag = "--no-experimental-require-module";
  return [...process.execArgv, ...(process.allowedNodeEnvironmentFlags.has(flag) ? [flag] : [])];
}

export class CodecPool implements AsyncDisposable {
  private readonly piscina: Piscina;
  readonly threads: number;

  constructor(threads = availableParallelism()) {
    this.threads = Math.max(1, threads);
    this.piscina = new Piscina({ filename: workerFile(), minThreads: this.threads, maxThreads: this.threads, idleTimeout: 1000, execArgv: workerExecArgv() });
  }

  /**
   * Compress BF16 weights into one module; with `checksums`, also the df11-sum64 checksums of the weights
   * and of the stored tensors. With `transfer`, the parts' buffers move to the worker instead of being
   * copied (they become unusable here).
   */
  async encode(
    parts: Uint16Array[],
    names: string[],
    options: { transfer?: boolean; checksums?: boolean } = {},
  ): Promise<{ module: DF11Module; histogram: Float64Array; checksums?: ModuleChecksums }> {
    const transferList = options.transfer ? [...new Set(parts.map((p) => p.buffer as ArrayBuffer))] : undefined;
    return unwrap(await this.piscina.run({ parts, names, checksums: options.checksums }, { name: "encode", transferList }));
  }

  /** Decode a module (sequential decoder, or the kernel-semantics one), with the checksum of what it decoded to. */
  async decode(module: DF11Module, kernelSemantics = false): Promise<{ decoded: Uint16Array; checksum: string }> {
    return unwrap(await this.piscina.run({ module, kernelSemantics }, { name: "decode" }));
  }

  /** Decode with both decoders, compare them, and compute the module's statistics and decoded checksum. */
  async check(module: DF11Module): Promise<{ decoded: Uint16Array; stats: ModuleStats; checksum: string }> {
    return unwrap(await this.piscina.run({ module }, { name: "check" }));
  }

  /** df11-sum64 of bytes, on a worker (the bytes are copied to it). */
  async checksum(bytes: Uint8Array): Promise<string> {
    return unwrap(await this.piscina.run({ bytes }, { name: "checksum" }));
  }

  /**
   * Decode one module with all workers, each taking a range of GPU blocks. The module is copied into
   * shared memory unless {@link CodecPool.share} already put it there; `out` (shared) may be reused.
   */
  async decodeParallel(
    module: DF11Module,
    workers = this.threads,
    out = new Uint16Array(new SharedArrayBuffer(module.signMantissa.length * 2)),
  ): Promise<Uint16Array> {
    validateModule(module);
    const sharedModule = CodecPool.share(module);
    const blocks = blockCount(module.encodedExponent.length);
    const per = Math.ceil(blocks / workers);
    const tasks = [];
    for (let start = 0; start < blocks; start += per) {
      tasks.push(this.piscina.run({ module: sharedModule, start, end: Math.min(blocks, start + per), out }, { name: "decodeRange" }));
    }
    (await Promise.all(tasks)).forEach(unwrap);
    return out;
  }

  /** A copy of a module in shared memory, readable by every worker without further copies. */
  static share(module: DF11Module): DF11Module {
    return {
      luts: shared(module.luts),
      encodedExponent: shared(module.encodedExponent),
      signMantissa: shared(module.signMantissa),
      outputPositions: shared(module.outputPositions),
      gaps: shared(module.gaps),
      splitPositions: module.splitPositions,
    };
  }

  async close(): Promise<void> {
    await this.piscina.destroy();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
