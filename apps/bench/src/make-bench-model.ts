#!/usr/bin/env node
/**
 * Writes a Llama-3.3-70B- (or 3.1-8B-) shaped DF11 benchmark model straight from synthetic weights, with
 * no BF16 copy on disk: `node apps/bench/dist/make-bench-model.js --shape 70b --out DIR [--bf16 DIR]`.
 */
import { resolve } from "node:path";
import { Command, InvalidArgumentError } from "commander";
import { formatBytes, parseBytes } from "@df11/cli";
import { makeBenchModel } from "./bench-model/make.js";
import { BENCH_SHAPES, type BenchShapeName } from "./bench-model/shapes.js";

const integer = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`expected a positive integer, got ${v}`);
  return n;
};
const size = (v: string) => {
  try {
    return parseBytes(v);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
};

const program = new Command("make-bench-model")
  .description("Write a Llama-shaped DF11 benchmark model (synthetic weights with a trained model's statistics) without its BF16 copy on disk")
  .option("--shape <shape>", `model shape: ${Object.keys(BENCH_SHAPES).join(", ")}`, "70b")
  .option("--layers <n>", "layers to write (default: all of the shape's); fewer make a slice", integer)
  .option("--out <dir>", "the DF11 model (identical to `df11 compress` of the BF16 twin)")
  .option("--bf16 <dir>", "also write the BF16 twin, streamed the same way")
  .option("--seed <n>", "seed of the weights", integer, 1)
  .option("-t, --threads <n>", "worker threads (default: every core)", integer)
  .option("--max-memory <size>", "bound on the memory of the work in flight (default: half the free memory; set it where free memory reads low at first, e.g. 160GB on a 256 GB host)", size)
  .option("--max-shard-size <size>", "largest output shard", size)
  .option("--overwrite", "replace existing output directories")
  .action(async (opts) => {
    const shape = BENCH_SHAPES[opts.shape as BenchShapeName];
    if (!shape) throw new InvalidArgumentError(`unknown shape ${opts.shape} (${Object.keys(BENCH_SHAPES).join(", ")})`);
    const started = performance.now();
    let last = 0;
    const summary = await makeBenchModel({
      shape,
      layers: opts.layers,
      out: opts.out && resolve(opts.out),
      bf16: opts.bf16 && resolve(opts.bf16),
      seed: opts.seed,
      threads: opts.threads,
      maxMemory: opts.maxMemory,
      maxShardBytes: opts.maxShardSize,
      overwrite: opts.overwrite,
      onProgress: (what, p) => {
        const now = performance.now();
        if (now - last < 5000 && p.modulesDone < p.modulesTotal) return;
        last = now;
        const s = (now - started) / 1000;
        console.error(`[${s.toFixed(0)} s] ${what}: ${p.modulesDone}/${p.modulesTotal}, ${formatBytes(p.bytesDone)} of ${formatBytes(p.bytesTotal)} BF16 (${(p.bytesDone / 1e6 / s).toFixed(0)} MB/s)`);
      },
    });
    console.log(JSON.stringify({ shape: opts.shape, layers: opts.layers ?? shape.layers, seconds: (performance.now() - started) / 1000, ...summary }, null, 2));
  });

program.parseAsync().catch((e: Error) => {
  console.error(`make-bench-model: error: ${e.message}`);
  process.exit(1);
});
