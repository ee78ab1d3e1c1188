#!/usr/bin/env node
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { Command } from "commander";
import { runCodecBench } from "./codec-bench.js";
import { measureGeneration, runGenerationBench } from "./generate-bench.js";
import { plotResults } from "./plot.js";

const program = new Command("df11-bench").description("df11 benchmarks; results are printed and saved as JSON");

program
  .command("codec")
  .description("CPU codec: encode/decode elements/s on one core and all cores, size vs the entropy bound")
  .option("-n, --elements <n>", "elements (BF16 weights) to code", (v) => Number(v), 100_000_000)
  .option("-t, --threads <n>", "threads for the all-cores run", (v) => Number(v))
  .option("-r, --repetitions <n>", "single-core runs (the median is reported)", (v) => Number(v), 3)
  .option("-o, --out <file>", "JSON output", "bench-results/codec.json")
  .action(async (opts) => {
    const result = await runCodecBench(opts.elements, opts.threads, opts.repetitions);
    const out = resolve(opts.out);
    await mkdir(dirname(out), { recursive: true });
    await writeFile(out, JSON.stringify(result, null, 2) + "\n");
    console.log(JSON.stringify(result, null, 2));
    console.log(`saved ${out}`);
  });

program
  .command("generate")
  .description("CPU generation: prefill and decode tokens/s and peak RSS, BF16 vs DF11 of the same model")
  .option("--prompt-tokens <n>", "prompt length", (v) => Number(v), 64)
  .option("--new-tokens <n>", "tokens to generate", (v) => Number(v), 32)
  .option("-o, --out <file>", "JSON output", "bench-results/generate.json")
  .action(async (opts) => {
    const result = await runGenerationBench(opts.promptTokens, opts.newTokens);
    const out = resolve(opts.out);
    await mkdir(dirname(out), { recursive: true });
    await writeFile(out, JSON.stringify(result, null, 2) + "\n");
    console.log(JSON.stringify(result, null, 2));
  });

program
  .command("plot")
  .description("SVG charts of saved results (kernel-h100.json, codec-cpu.json, generate-cpu.json) in a directory")
  .argument("[dir]", "results directory", "apps/bench/results")
  .action(async (dir: string) => {
    for (const path of await plotResults(resolve(dir))) console.log(`wrote ${path}`);
  });

program
  .command("generate-one", { hidden: true })
  .argument("<dir>")
  .argument("<promptTokens>")
  .argument("<newTokens>")
  .action(async (dir: string, p: string, n: string) => {
    console.log(JSON.stringify(await measureGeneration(dir, Number(p), Number(n))));
  });

program.parseAsync().catch((e: Error) => {
  console.error(`df11-bench: error: ${e.message}`);
  process.exit(1);
});
