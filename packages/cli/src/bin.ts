#!/usr/bin/env node
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { Command, InvalidArgumentError } from "commander";
import { compressModel } from "./compress.js";
import { decompressModel } from "./decompress.js";
import { inspectModel } from "./inspect.js";
import { verifyModel } from "./verify.js";
import { sealModel } from "./seal.js";
import { formatChecksumCoverage } from "./report.js";
import { VERSION } from "./version.js";
import { formatBytes, parseBytes, percent } from "./format-bytes.js";
import { downloadBar, progressBar } from "./progress.js";
import { formatCompressSummary, formatInspectReport } from "./report.js";
import { DEFAULT_SEED, DEMO_SHAPE, writeSyntheticModel, type BackendMemory } from "@df11/models";
import { hubEnvironment, listCachedModels, removePendingTemporaries, resolveModel, sizeThreadPoolForReads } from "@df11/hub-loader";
import { modelDirectory } from "./model-source.js";
import { interruptSignal, parseIds, runChat, runGenerate, type GenerationFlags } from "./generate-command.js";
import { parseDevices, type DeviceChoice } from "./devices-option.js";
import { gpuWeightsOption, maxGpuMemoryOption, warningText, weightsReport, type GpuWeightsChoice } from "./weights-report.js";
import { checkDeviceFlags } from "./load-model.js";
import { BATCH_HELP, batchGenerateCommand } from "./batch-generate.js";
import { asDeviceFlagError, CliError } from "./errors.js";
import { configureErrorOutput, formatError } from "./error-output.js";

sizeThreadPoolForReads(); // before the first file is read: loading reads many pieces at once

/** Decimal digits only (Number() would also take 0x10, 1e3, " 16"), exact as a JS number. */
const decimalInteger = (v: string) => (/^\d+$/.test(v) && Number.isSafeInteger(Number(v)) ? Number(v) : NaN);
const intOption = (v: string) => {
  const n = decimalInteger(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("expected a positive integer");
  return n;
};
/** A seed: a whole number from 0 (a seed like any other) to 2^53 − 1, the largest a JS number holds exactly. */
const seedOption = (v: string) => {
  const n = decimalInteger(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`expected a whole number ≥ 0, at most ${Number.MAX_SAFE_INTEGER} (2^53 − 1)`);
  return n;
};
/** A duration: a decimal number ≥ 0 (fractions allowed) of `unit`, at most `max`. */
const durationOption = (unit: string, max: number) => (v: string) => {
  const n = Number(v);
  if (!/^\d+(\.\d+)?$/.test(v.trim()) || n > max) throw new InvalidArgumentError(`expected ${unit} from 0 to ${max}`);
  return n;
};
/** Milliseconds, at most a minute. */
const millisecondsOption = durationOption("milliseconds", 60_000);
/** Seconds, at most a day. */
const secondsOption = durationOption("seconds", 86_400);
/** A TCP port (0: any free one). */
const portOption = (v: string) => {
  const n = decimalInteger(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError("expected a port number from 0 to 65535 (0: any free port)");
  return n;
};
/** A repeatable option's values, in order. */
const collect = (v: string, previous: string[] = []) => [...previous, v];
/** `--stop`: one string per use, repeatable; an empty one would stop before the first token (the server refuses it too). */
const stopOption = (v: string, previous: string[] = []) => {
  if (v === "") throw new InvalidArgumentError("a stop string cannot be empty");
  return [...previous, v];
};
const sizeOption = (v: string) => {
  try {
    return parseBytes(v);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
};

/**
 * While `job` runs, SIGINT/SIGTERM remove the half-written output (atomic writes in flight) and exit
 * with 130/143, as a shell reports an interrupted command.
 */
async function cleanOnSignal<T>(job: () => Promise<T>): Promise<T> {
  const handlers = (["SIGINT", "SIGTERM"] as const).map((signal) => {
    const handler = () => {
      removePendingTemporaries();
      process.stderr.write(`\ndf11: ${signal === "SIGINT" ? "interrupted" : "terminated"}; nothing was written\n`);
      process.exit(signal === "SIGINT" ? 130 : 143);
    };
    process.once(signal, handler);
    return () => process.off(signal, handler);
  });
  try {
    return await job();
  } finally {
    for (const off of handlers) off();
  }
}

// Library warnings (e.g. weight-like files ignored beside a model) print like the CLI's own, once.
process.removeAllListeners("warning");
process.on("warning", (w) => process.stderr.write(`warning: ${warningText(w)}\n`));

const program = new Command("df11")
  .description("DFloat11: lossless compression of BF16 models to ~70 % (Huffman-coded exponents)")
  .version(VERSION);

/** Options of the commands that write a model directory. */
const withOutputOptions = (cmd: Command) =>
  cmd
    .requiredOption("-o, --output <dir>", "output directory (created atomically)")
    .option("-t, --threads <n>", "worker threads (default: all cores)", intOption)
    .option("--max-shard-size <size>", "largest output shard, e.g. 5GB", sizeOption)
    .option("-f, --force", "replace the output directory if it exists")
    .option("--max-memory <size>", "bound on peak memory, e.g. 8GB (default: half the available memory)", sizeOption);

const outputOptionsOf = (o: Record<string, unknown>) => ({
  threads: o.threads as number | undefined,
  maxShardBytes: o.maxShardSize as number | undefined,
  overwrite: o.force as boolean | undefined,
  maxMemory: o.maxMemory as number | undefined,
  onWarning: (m: string) => process.stderr.write(`warning: ${m}\n`),
});

withOutputOptions(
  program
    .command("compress")
    .description("compress a BF16 Hugging Face model directory into DFloat11")
    .argument("<bf16-model>", "model directory (config.json + *.safetensors) or Hub repo id")
    .option("--no-checksums", "record no checksums: files byte-identical to the official compressor's"),
).action(async (input: string, opts) => {
  input = await modelDirectory(input);
  const bar = progressBar("compress");
  const summary = await cleanOnSignal(() =>
    compressModel(input, opts.output, {
      ...outputOptionsOf(opts),
      checksums: opts.checksums,
      onProgress: bar.update,
    }),
  ).finally(bar.stop);
  console.log(formatCompressSummary(summary, opts.output));
});

withOutputOptions(
  program
    .command("decompress")
    .description("decode a DFloat11 model back into a bit-identical BF16 model")
    .argument("<df11-model>", "DFloat11 model directory or Hub repo id"),
).action(async (input: string, opts) => {
  input = await modelDirectory(input);
  const bar = progressBar("decompress");
  const s = await cleanOnSignal(() => decompressModel(input, opts.output, { ...outputOptionsOf(opts), onProgress: bar.update })).finally(bar.stop);
  console.log(`Decompressed ${s.modules} modules in ${s.seconds.toFixed(1)} s → ${opts.output} (${formatBytes(s.outputBytes)}; ${s.files.join(", ")})`);
  console.log(
    s.filesWithoutChecksums.length === 0
      ? `Checksums: all ${s.checkedModules} modules' decoded weights and ${s.checkedTensors} copied tensors match what was recorded`
      : `Checksums: ${s.filesWithoutChecksums.length} file(s) record none (${s.filesWithoutChecksums.map((f) => basename(f)).join(", ")}): decoded without a record to check against (df11 seal adds them)`,
  );
});

program
  .command("inspect")
  .description("per-module sizes, ratio, exponent entropy, code lengths and LUT rows of a DFloat11 model; the stored dtypes of any model")
  .argument("<model>", "model directory or Hub repo id (DFloat11, or any safetensors model)")
  .option("--json", "print JSON")
  .option("-t, --threads <n>", "worker threads", intOption)
  .action(async (dir: string, opts) => {
    const report = await inspectModel(await modelDirectory(dir), { threads: opts.threads });
    console.log(opts.json ? JSON.stringify(report, null, 2) : formatInspectReport(report));
  });

program
  .command("verify")
  .description("decode every module (also with the GPU kernel's semantics) and check it, optionally against the original")
  .argument("<df11-model>", "DFloat11 model directory or Hub repo id")
  .option("--against <bf16-model>", "original BF16 model (directory or repo id): compare every tensor bit for bit")
  .option("--json", "print JSON")
  .option("-t, --threads <n>", "worker threads (default: all cores)", intOption)
  .option("--max-memory <size>", "bound on peak memory, e.g. 8GB (default: half the available memory)", sizeOption)
  .action(async (dir: string, opts) => {
    dir = await modelDirectory(dir);
    const against = opts.against ? await modelDirectory(opts.against) : undefined;
    const bar = progressBar("verify");
    const r = await verifyModel(dir, {
      against,
      threads: opts.threads,
      maxMemory: opts.maxMemory,
      onProgress: bar.update,
      onWarning: (m) => process.stderr.write(`warning: ${m}\n`),
    }).finally(bar.stop);
    if (opts.json) console.log(JSON.stringify({ ok: true, ...r }, null, 2));
    else {
      console.log(
        `OK: ${r.modules} modules, ${r.elements.toLocaleString("en")} weights decode consistently` +
          (opts.against ? `; ${r.comparedTensors} tensors bit-identical to ${opts.against}` : "") +
          ` (${r.seconds.toFixed(1)} s)`,
      );
      console.log(formatChecksumCoverage(r.checksums));
    }
  });

program
  .command("seal")
  .description("add checksums to a DFloat11 model that has none (e.g. an official one), after a full decode check")
  .argument("<df11-model>", "DFloat11 model directory (rewritten in place; tensors stay byte for byte)")
  .option("-t, --threads <n>", "worker threads", intOption)
  .action(async (dir: string, opts) => {
    const bar = progressBar("seal");
    const r = await cleanOnSignal(() => sealModel(dir, { threads: opts.threads, onProgress: bar.update })).finally(bar.stop);
    console.log(`Sealed ${dir}: ${r.verified.modules} modules decode consistently; checksums recorded in ${r.files.map((f) => basename(f)).join(", ")}`);
  });

/** A number flag; `range` says what is allowed, in the error (`argument '2' is invalid. top-p: expected 0 < p ≤ 1`). */
const numberOption = (name: string, check: (v: number) => boolean, range: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n) || !check(n)) throw new InvalidArgumentError(`${name}: expected ${range}`);
  return n;
};

/** Sampling flags shared by generate and chat. */
const withSampling = (cmd: Command) =>
  cmd
    .option("-n, --max-tokens <n>", "most tokens to generate", intOption, 128)
    .option("--temperature <t>", "sampling temperature; 0 = greedy (default: the model's generation_config.json, else 0)", numberOption("temperature", (v) => v >= 0, "a number ≥ 0"))
    .option("--top-k <k>", "keep the k most likely tokens", numberOption("top-k", (v) => Number.isInteger(v) && v >= 0, "a whole number ≥ 0"))
    .option("--top-p <p>", "nucleus sampling threshold", numberOption("top-p", (v) => v > 0 && v <= 1, "0 < p ≤ 1"))
    .option("--min-p <p>", "drop tokens below p × the top probability", numberOption("min-p", (v) => v >= 0 && v < 1, "0 ≤ p < 1"))
    .option("--repetition-penalty <r>", "penalise tokens already in the context (> 1)", numberOption("repetition penalty", (v) => v > 0, "a number > 0"))
    .option("--seed <n>", `RNG seed, 0 to 2^53 − 1: same seed, same output (default ${DEFAULT_SEED})`, seedOption)
    .option("--stop <text>", "stop when the text contains this string (repeat for several: --stop a --stop b)", stopOption)
    .option("--no-sampling-defaults", "ignore the sampling defaults in the model's generation_config.json (do_sample, temperature, top_k, top_p, min_p, repetition_penalty)")
    .option("--device <device>", "cuda (GPU), cpu, or auto: the GPU when one is present", deviceOption, "auto")
    .option("--max-context <n>", "positions the KV cache holds (default: on a GPU min(model's maximum, 4096), on the CPU the model's maximum)", intOption)
    .option("--gpu-weights <layout>", GPU_WEIGHTS_HELP, gpuWeightsOption, "auto")
    .option("--devices <ids>", DEVICES_HELP, devicesOption)
    .option("--max-gpu-memory <size>", MAX_GPU_MEMORY_HELP, maxGpuMemoryOption)
    .option("--verify-weights", "decode every DF11 module once at load and check it against its recorded checksum");

function deviceOption(v: string): DeviceChoice {
  if (v !== "auto" && v !== "cpu" && v !== "cuda") throw new InvalidArgumentError("expected cuda, cpu or auto");
  return v;
}

/** " (GPUs 0,1)" when a model runs tensor parallel, for the summary lines. */
const gpusOf = (memory: BackendMemory | null | undefined) => (memory?.devices && memory.devices.length > 1 ? ` (GPUs ${memory.devices.map((d) => d.device).join(",")})` : "");

const DEVICES_HELP =
  "GPU indices, e.g. 0,1 (implies --device cuda): one runs on that GPU; several split the model over them (tensor parallel: attention heads, MLP features and vocabulary per GPU, NCCL between; not with --max-gpu-memory or --gpu-weights huffman)";

function devicesOption(v: string): number[] {
  try {
    return parseDevices(v);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

const GPU_WEIGHTS_HELP =
  "GPU: how the weights are held: fused (DF11 decoded inside the matrix kernels: DF11's memory, BF16's speed), huffman (as stored, decoded per window: least memory, slowest), bf16 (plain), auto (fused (bf16 for tiny models, where its padding costs more), or huffman when that would not fit)";

const MAX_GPU_MEMORY_HELP =
  "GPU: device memory df11 may use, e.g. 12GB, 12GiB, 12000MB (default: what is free); decoder layers that do not fit stay in pinned host memory and are copied in before use (CPU offload: same outputs, slower); with --devices, each GPU's budget";

const flagsOf = (o: Record<string, unknown>): GenerationFlags => ({
  maxTokens: o.maxTokens as number,
  temperature: o.temperature as number | undefined,
  topK: o.topK as number | undefined,
  topP: o.topP as number | undefined,
  minP: o.minP as number | undefined,
  repetitionPenalty: o.repetitionPenalty as number | undefined,
  seed: o.seed as number | undefined,
  stop: o.stop as string[] | undefined,
  device: o.device as DeviceChoice,
  maxContext: o.maxContext as number | undefined,
  verifyWeights: o.verifyWeights as boolean | undefined,
  gpuWeights: o.gpuWeights as GpuWeightsChoice,
  devices: o.devices as number[] | undefined,
  maxGpuMemory: o.maxGpuMemory as number | undefined,
  samplingDefaults: o.samplingDefaults as boolean,
});

withSampling(
  program
    .command("generate")
    .description("generate text with a BF16 or DFloat11 model, on the GPU when one is present")
    .argument("<model>", "model directory or Hub repo id, e.g. DFloat11/Qwen3-8B-DF11")
    .option("-p, --prompt <text>", "prompt text (needs the model's tokenizer); repeat it for a batch", collect)
    .option("--input-ids <ids>", "prompt as token ids, e.g. 1,17,42 (models without a tokenizer); repeat it for a batch", collect)
    .option("--chat", "wrap the prompt in the model's chat template")
    .option("--json", "print one JSON object: tokenIds, text, stop reason, settings used, tokens/s, peak memory")
    .option("-b, --batch-size <n>", "run N sequences together in one batch: N prompts, or one prompt N times with seeds seed, seed+1, …", intOption)
    .option("--ignore-eos", "keep generating after end-of-sequence tokens: exactly -n tokens (benchmarks)")
    .addHelpText("after", BATCH_HELP),
).action(async (modelDir: string, opts) => {
  checkDeviceFlags(flagsOf(opts)); // flags that do not combine: said before the model is looked for
  const inputIds = (opts.inputIds as string[] | undefined)?.map(parseIds);
  if (opts.batchSize || opts.prompt?.length > 1 || (inputIds?.length ?? 0) > 1) {
    const input = { prompts: opts.prompt, inputIds, chat: opts.chat, batchSize: opts.batchSize };
    return batchGenerateCommand(await modelDirectory(modelDir), input, { ...flagsOf(opts), ignoreEos: opts.ignoreEos }, !!opts.json);
  }
  const interrupt = interruptSignal();
  const result = await runGenerate(
    await modelDirectory(modelDir),
    { prompt: opts.prompt?.[0], inputIds: inputIds?.[0], chat: opts.chat, ignoreEos: opts.ignoreEos },
    flagsOf(opts),
    opts.json ? undefined : (piece) => process.stdout.write(piece),
    interrupt.signal,
  ).finally(interrupt.release);
  if (result.interrupted) process.exitCode = 130;
  if (opts.json) console.log(JSON.stringify(result, null, 2));
  else {
    process.stdout.write("\n");
    process.stderr.write(
      `[${result.tokenIds.length} tokens, ${result.interrupted ? "interrupted" : result.stopReason}; prefill ${result.tokensPerSecond.prefill.toFixed(1)} tok/s, decode ${result.tokensPerSecond.decode.toFixed(1)} tok/s; ${result.weights} on ${result.device}${gpusOf(result.memory)}${result.weightsInUse.offload ? ` (${result.weightsInUse.offload.layers.length} layers offloaded to the host)` : ""}; peak RSS ${formatBytes(result.peakRssBytes)}]\n`,
    );
  }
});

withSampling(
  program
    .command("chat")
    .description("chat with a model interactively, using its chat template")
    .argument("<model>", "model directory or Hub repo id")
    .option("--system <text>", "system prompt"),
).action(async (modelDir: string, opts) => {
  checkDeviceFlags(flagsOf(opts));
  await runChat(await modelDirectory(modelDir), flagsOf(opts), opts.system);
});

program
  .command("serve")
  .description("serve a model over the OpenAI API (chat/completions, completions, models) with continuous batching")
  .argument("<model>", "model directory or Hub repo id")
  .option("--host <host>", "address to listen on (127.0.0.1: this machine only)", "127.0.0.1")
  .option("--port <port>", "port (0: any free port)", portOption, 8080)
  .option("--max-batch <n>", "requests decoded together (KV-cache slots)", intOption, 8)
  .option("--max-context <n>", "positions per request (prompt + completion)", intOption)
  .option("--api-key <key>", "require Authorization: Bearer <key> (default: $DF11_API_KEY, else none)")
  .option("--model-id <id>", "the name clients use in `model` (default: the argument)")
  .option("--device <device>", "cuda (GPU), cpu, or auto: the GPU when one is present", deviceOption, "auto")
  .option("--gpu-weights <layout>", GPU_WEIGHTS_HELP, gpuWeightsOption, "auto")
  .option("--devices <ids>", DEVICES_HELP, devicesOption)
  .option("--max-gpu-memory <size>", MAX_GPU_MEMORY_HELP, maxGpuMemoryOption)
  .option("--verify-weights", "decode every DF11 module once at load and check it against its recorded checksum")
  .option("--no-sampling-defaults", "ignore the sampling defaults in the model's generation_config.json (requests that set none get OpenAI's)")
  .option("--no-shared-prefill", "prefill each request's prompt in a step of its own (slower; its logits then equal a solo run's bit for bit) instead of sharing steps with the prompts admitted with it")
  .option(
    "--max-batch-tokens <n>",
    "tokens one forward step runs at most (GPU): the prompts of a burst share prefill steps up to this many, and the GPU's working memory is sized for it (~0.4 MB per token on an 8B model: 0.8 GB at 2048)",
    intOption,
    2048,
  )
  .option(
    "--prefill-gather-ms <ms>",
    "with shared prefill: wait up to this long for a burst of requests to finish arriving before prefilling it in one step (0: prefill what has arrived at once)",
    millisecondsOption,
    5,
  )
  .option(
    "--shutdown-timeout <seconds>",
    'on Ctrl-C or SIGTERM: new requests get 503 and requests in flight get this long to finish; then they end (finish_reason "abort", streams with [DONE]). A second Ctrl-C exits at once',
    secondsOption,
    30,
  )
  .action(async (source: string, opts) => {
    const device = checkDeviceFlags(opts); // flags that do not combine: said before the model is looked for
    const { loadModel } = await import("@df11/models");
    await import("@df11/cuda-kernel"); // registers the GPU backend
    const { serveModel } = await import("./serve/server.js");
    const bar = downloadBar("load");
    const model = await loadModel(await modelDirectory(source), {
      device,
      devices: opts.devices,
      gpuWeights: opts.gpuWeights,
      maxGpuMemory: opts.maxGpuMemory,
      maxContext: opts.maxContext,
      slots: opts.maxBatch,
      maxRows: opts.maxBatchTokens,
      sharedPrefill: opts.sharedPrefill,
      prefillGatherMs: opts.prefillGatherMs,
      verifyWeights: opts.verifyWeights,
      samplingDefaults: opts.samplingDefaults,
      onProgress: (p) => bar.update({ filesDone: 0, filesTotal: 1, bytesDone: p.done, bytesTotal: p.total }),
    })
      .catch((e) => {
        throw asDeviceFlagError(e);
      })
      .finally(bar.stop);
    const log = (line: string) => process.stderr.write(`df11 serve: ${line}\n`);
    const running = await serveModel(model, {
      host: opts.host,
      port: opts.port,
      apiKey: opts.apiKey ?? process.env.DF11_API_KEY,
      modelId: opts.modelId ?? source,
      log,
    });
    const held = weightsReport(model.lm.weights);
    const offloaded = held.offload ? `; ${held.offload.layers.length} layers (${formatBytes(held.offload.hostBytes)}) offloaded to pinned host memory` : "";
    process.stderr.write(`df11 serve: ${opts.modelId ?? source} (${held.format}${held.layout !== held.format ? ` as ${held.layout}` : ""}, ${formatBytes(held.residentBytes)} on ${model.device}${gpusOf(model.lm.backend.memory?.())}${offloaded}, batch ≤ ${Math.min(opts.maxBatch, model.lm.backend.maxRows)}, context ${model.lm.maxContext}) at ${running.url}/v1\n`);
    // Graceful shutdown (see RunningServer.shutdown): exit 0 once drained; a second signal exits at once (130 / 143).
    const requests = (n: number) => `${n} request${n === 1 ? "" : "s"}`;
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        log(`${signal} again: exiting now${running.inFlight > 0 ? `, dropping ${requests(running.inFlight)} in flight` : ""}`);
        process.exit(signal === "SIGINT" ? 130 : 143);
      }
      stopping = true;
      log(`${signal}: shutting down (Ctrl-C again exits at once)`);
      void running.shutdown({ timeoutMs: opts.shutdownTimeout * 1000 }).then((r) => {
        model.dispose();
        const what = r.inFlight === 0 ? "no request was in flight" : `${r.inFlight - r.cut} of ${requests(r.inFlight)} in flight finished${r.cut > 0 ? `, ${r.cut} ended at the deadline` : ""}`;
        log(`stopped after ${r.seconds.toFixed(1)} s: ${what}`);
        process.exit(0);
      });
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  });

program
  .command("download")
  .description("download a model from the Hugging Face Hub into the shared cache (the one Python's huggingface_hub uses)")
  .argument("<repo>", "org/name[@revision]")
  .action(async (repo: string) => {
    const bar = downloadBar(`download ${repo}`);
    const r = await resolveModel(repo, { refresh: true, onProgress: bar.update }).finally(bar.stop);
    console.log(`${r.repo?.id}@${r.commit}: ${r.downloadedFiles ? `downloaded ${r.downloadedFiles} files` : "already complete in the cache"} → ${r.dir}`);
  });

program
  .command("ls")
  .description("list the models in the Hugging Face cache: DF11 or BF16, sizes")
  .option("--json", "print JSON")
  .action(async (opts) => {
    const models = await listCachedModels();
    if (opts.json) return console.log(JSON.stringify(models, null, 2));
    if (models.length === 0) return console.log(`no models in the cache (${hubEnvironment().cacheDir})`);
    const width = Math.max(...models.map((m) => m.id.length));
    for (const m of models) {
      const rev = m.revisions[0];
      console.log(`${m.id.padEnd(width)}  ${m.format.padEnd(7)}  ${formatBytes(m.sizeBytes).padStart(10)}  ${rev ? `${rev.commit.slice(0, 10)} ${rev.refs.join(",")}` : ""}`);
    }
  });

program
  .command("demo")
  .description("build a small Llama-shaped BF16 model, compress it, verify it bit for bit and print the sizes")
  .option("--dir <dir>", "work directory (default: a temporary one, removed afterwards)")
  .option("-t, --threads <n>", "worker threads", intOption)
  .action(async (opts) => {
    const work = opts.dir ?? (await mkdtemp(join(tmpdir(), "df11-demo-")));
    try {
      const bf16 = join(work, "bf16");
      const df11 = join(work, "df11");
      const back = join(work, "bf16-roundtrip");
      const s = DEMO_SHAPE;
      console.log(`1. Writing a Llama-shaped BF16 model (${s.layers} layers, hidden ${s.hidden}, vocab ${s.vocab}) to ${bf16}`);
      await writeSyntheticModel(bf16, DEMO_SHAPE, { tokenizer: true });
      console.log(`2. df11 compress ${bf16} -o ${df11}`);
      const summary = await compressModel(bf16, df11, { threads: opts.threads, overwrite: true });
      console.log(formatCompressSummary(summary, df11).replace(/^/gm, "   "));
      console.log(`3. df11 verify ${df11} --against ${bf16}`);
      const v = await verifyModel(df11, { against: bf16, threads: opts.threads });
      console.log(`   OK: ${v.comparedTensors} tensors bit-identical, every module also decoded with the GPU kernel's thread/block semantics`);
      console.log(`4. df11 decompress ${df11} -o ${back}`);
      await decompressModel(df11, back, { threads: opts.threads, overwrite: true });
      const again = await verifyModel(df11, { against: back, threads: opts.threads });
      console.log(`   OK: decompressed model matches (${again.comparedTensors} tensors)`);
      console.log(`5. df11 inspect ${df11}`);
      const report = await inspectModel(df11, { threads: opts.threads });
      console.log(formatInspectReport(report).replace(/^/gm, "   "));
      console.log(`6. df11 generate ${df11} --prompt "the water is" -n 12   (and the same from ${bf16})`);
      const flags: GenerationFlags = { maxTokens: 12, temperature: 0, device: "cpu" };
      const fromDf11 = await runGenerate(df11, { prompt: "the water is" }, flags);
      const fromBf16 = await runGenerate(bf16, { prompt: "the water is" }, flags);
      const same = JSON.stringify(fromDf11.tokenIds) === JSON.stringify(fromBf16.tokenIds);
      console.log(`   DF11: ${JSON.stringify(fromDf11.text)} (random weights, so no sense in it)`);
      console.log(`   ${same ? "OK: BF16 generates the same tokens" : "MISMATCH between BF16 and DF11 tokens"}: ${fromDf11.tokenIds.join(",")}`);
      if (!same) process.exitCode = 1;
      console.log(`\nDFloat11 stored the model in ${percent(report.totals.modelBytes / report.totals.modelOriginalBytes)} of its BF16 size, losslessly.`);
    } finally {
      if (!opts.dir) await rm(work, { recursive: true, force: true });
    }
  });

configureErrorOutput(program);
program.parseAsync().catch((e: Error) => {
  process.stderr.write(formatError(e.message));
  if (process.env.DF11_DEBUG) process.stderr.write(`${e.stack}\n`);
  process.exit(1);
});
