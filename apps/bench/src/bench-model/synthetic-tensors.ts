import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { Piscina } from "piscina";
import { workerExecArgv } from "@df11/cli";
import type { TensorSource } from "@df11/hub-loader";
import type { BenchTensor } from "./shapes.js";
import type { GenerateTask } from "./synthetic-worker.js";

/** The built worker script: dist/bench-model/ beside the bundle in dist/, or the built one when running from sources. */
function workerFile(): string {
  const bundled = new URL("./bench-model/synthetic-worker.js", import.meta.url);
  return fileURLToPath(existsSync(bundled) ? bundled : new URL("../../dist/bench-model/synthetic-worker.js", import.meta.url));
}

/** 32-bit FNV-1a of a string: a tensor's seed from its name, so any tensor can be drawn alone. */
export function seedOf(base: number, name: string): number {
  let h = 0x811c9dc5 ^ base;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/**
 * BF16 tensors drawn on worker threads when read, never stored: the same values every time for a seed
 * (each tensor's own seed comes from its name). Reading a tensor costs its generation; nothing is kept.
 */
export class SyntheticTensors implements TensorSource, AsyncDisposable {
  private readonly byName: Map<string, BenchTensor>;
  private readonly piscina: Piscina;

  constructor(
    private readonly tensors: readonly BenchTensor[],
    private readonly seed = 1,
    threads = availableParallelism(),
  ) {
    this.byName = new Map(tensors.map((t) => [t.name, t]));
    // the codec pool's worker flags: without them piscina's require() of an ES-module worker can crash Node 20.20
    this.piscina = new Piscina({ filename: workerFile(), minThreads: threads, maxThreads: threads, idleTimeout: 60_000, execArgv: workerExecArgv() });
  }

  names(): string[] {
    return this.tensors.map((t) => t.name);
  }

  private tensor(name: string): BenchTensor {
    const t = this.byName.get(name);
    if (!t) throw new Error(`${name}: no such tensor in the synthetic model`);
    return t;
  }

  info(name: string) {
    const { shape } = this.tensor(name);
    return { dtype: "BF16" as const, shape, byteLength: 2 * shape.reduce((a, b) => a * b, 1) };
  }

  /** Draw the tensor (on a worker) as BF16 bits. */
  async readU16(name: string): Promise<Uint16Array> {
    const { shape, kind } = this.tensor(name);
    const task: GenerateTask = { count: shape.reduce((a, b) => a * b, 1), seed: seedOf(this.seed, name), cols: kind === "matrix" ? shape[1] : undefined };
    return (await this.piscina.run(task)) as Uint16Array;
  }

  async read(name: string): Promise<Uint8Array> {
    const w = await this.readU16(name);
    return new Uint8Array(w.buffer, w.byteOffset, w.byteLength);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.piscina.destroy();
  }
}
