import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";

/** One bar of a chart. */
interface Bar {
  readonly label: string;
  readonly value: number;
  /** Ours vs. a reference, for colour. */
  readonly kind: "ours" | "reference" | "target";
}

const COLORS = { ours: "#2f6fde", reference: "#9aa3ad", target: "#e08a2c" } as const;
const escape = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");

/** A horizontal bar chart as a standalone SVG (no dependencies). */
export function barChart(title: string, unit: string, bars: readonly Bar[]): string {
  const left = Math.max(250, 10 + 7 * Math.max(...bars.map((b) => b.label.length)));
  const width = left + 610;
  const rowHeight = 34;
  const top = 48;
  const height = top + bars.length * rowHeight + 30;
  const max = Math.max(...bars.map((b) => b.value)) * 1.15;
  const scale = (v: number) => ((width - left - 20) * v) / max;
  const rows = bars
    .map((b, i) => {
      const y = top + i * rowHeight;
      const w = scale(b.value);
      return [
        `<text x="${left - 10}" y="${y + 20}" text-anchor="end" font-size="13">${escape(b.label)}</text>`,
        `<rect x="${left}" y="${y + 6}" width="${w.toFixed(1)}" height="20" fill="${COLORS[b.kind]}" rx="2"/>`,
        `<text x="${left + w + 6}" y="${y + 21}" font-size="12">${b.value.toLocaleString("en", { maximumFractionDigits: b.value < 10 ? 2 : 0 })} ${escape(unit)}</text>`,
      ].join("");
    })
    .join("\n");
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="Helvetica, Arial, sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="16" y="28" font-size="16" font-weight="bold">${escape(title)}</text>
${rows}
<text x="16" y="${height - 8}" font-size="11" fill="#555">blue: df11 · grey: reference · orange: target</text>
</svg>
`;
}

const readJson = async (path: string) => JSON.parse(await readFile(path, "utf8"));

/** What decode-steps.mjs saves (the fields charted). */
interface DecodeStepsResult {
  readonly position?: number;
  readonly promptTokens?: number;
  readonly capacity?: { readonly context: number; readonly bf16: { readonly sequences: number }; readonly fused: { readonly sequences: number } } | null;
  readonly bf16: { readonly levels: readonly { readonly rows: number; readonly gpuMsPerStep: number }[] };
  readonly fused: { readonly levels: readonly { readonly rows: number; readonly gpuMsPerStep: number }[] };
}

/** GPU ms per decode step of R sequences, BF16 vs the fused layout; the title names the position when it is not the default 128. */
export function decodeStepsChart(steps: DecodeStepsResult): string {
  const bars: Bar[] = [];
  steps.bf16.levels.forEach((b, i) => {
    const sequences = `${b.rows} sequence${b.rows === 1 ? "" : "s"}`;
    bars.push({ label: `${sequences}, BF16`, value: b.gpuMsPerStep, kind: "reference" });
    bars.push({ label: `${sequences}, DF11 fused`, value: steps.fused.levels[i].gpuMsPerStep, kind: "ours" });
  });
  const position = steps.position ?? steps.promptTokens ?? 128;
  const at = position === 128 ? "" : ` at position ${position.toLocaleString("en")}`;
  const c = steps.capacity;
  const fit = c && position !== 128 ? ` (${c.context.toLocaleString("en")}-position sequences that fit: BF16 ${c.bf16.sequences}, DF11 ${c.fused.sequences})` : "";
  return barChart(`8B decode step of R sequences at once (a serving batch)${at}: GPU ms per step (lower is better), H200${fit}`, "ms", bars);
}

/** Charts of the saved results in `dir` (kernel-h100.json, codec-cpu.json, generate-cpu.json, gpu-generate-h200.json (else -h100), gemv-kernels-h200.json, batch-generate-h200.json, gpu-serve-h200.json (else -h100), decode-steps-h200.json (and decode-steps-4k-h200.json), offload-generate-h200.json (else -h100, else offload-generate.json), tp-generate-h200x2.json, tp-generate-70b-h200x2.json…), written beside them. */
export async function plotResults(dir: string): Promise<string[]> {
  const written: string[] = [];
  const save = async (name: string, svg: string) => {
    const path = join(dir, name);
    await writeFile(path, svg);
    written.push(path);
  };
  const kernel = await readJson(join(dir, "kernel-h100.json")).catch(() => undefined);
  if (kernel) {
    await save(
      "kernel-h100.svg",
      barChart(`GPU decode of one Llama-3.1-8B layer (218 M weights), ${kernel.device.name}`, "GB/s", [
        { label: "df11 decode kernel", value: kernel.decode.outputGBps, kind: "ours" },
        { label: "official dfloat11 kernel (0.82 ms)", value: 531, kind: "reference" },
        { label: "target", value: 1200, kind: "target" },
        { label: "stretch target", value: 1600, kind: "target" },
        { label: "format limit (issue #3)", value: 1800, kind: "reference" },
        { label: "device copy, read+write", value: kernel.deviceToDeviceCopy.readPlusWriteGBps, kind: "reference" },
      ]),
    );
  }
  const scale = await readFile(join(dir, "scale-h100.jsonl"), "utf8").catch(() => undefined);
  if (scale) {
    const runs = scale.trim().split("\n").map((l) => JSON.parse(l) as { label: string; model: string; peakRssBytes: number; seconds: number });
    const model = { "8b": "8B (16.1 GB)", "70b-slice": "70B-layer slice (11.0 GB)" } as Record<string, string>;
    await save(
      "scale-memory.svg",
      barChart("df11 compress / verify / decompress on 16 cores: peak RSS", "GB", [
        ...runs.map((r) => ({ label: `${model[r.model] ?? r.model}: ${r.label}`, value: r.peakRssBytes / 1e9, kind: "ours" as const })),
        { label: "--max-memory 6GB", value: 6, kind: "target" },
      ]),
    );
    await save(
      "scale-time.svg",
      barChart("df11 compress / verify / decompress on 16 cores: wall time", "s", runs.map((r) => ({ label: `${model[r.model] ?? r.model}: ${r.label}`, value: r.seconds, kind: "ours" as const }))),
    );
  }
  const sums = await readJson(join(dir, "checksum-h100.json")).catch(() => undefined);
  if (sums?.gpu) {
    const withChecks = sums.gpu.loads as Array<{ checkStored: boolean; verifyWeights: boolean; loadSeconds: number }>;
    await save(
      "checksum.svg",
      barChart(`df11-sum64 checksum cost (${sums.gpu.device})`, "GB/s", [
        { label: "CPU, one thread", value: sums.cpu.oneThreadGBps, kind: "ours" },
        { label: `CPU, ${sums.cpu.threads} threads (incl. copies to workers)`, value: sums.cpu.allCoresGBps, kind: "ours" },
        { label: `GPU, one 8B layer in ${sums.gpu.sumLayerMs.toFixed(2)} ms`, value: sums.gpu.sumGBps, kind: "ours" },
        ...withChecks.map((l) => ({
          label: `8B DF11 load, ${l.verifyWeights ? "stored + decoded weights" : l.checkStored ? "stored tensors checked" : "no checks"}: ${l.loadSeconds.toFixed(1)} s`,
          value: 10.89 / l.loadSeconds,
          kind: "reference" as const,
        })),
      ]),
    );
  }
  const codec = await readJson(join(dir, "codec-cpu.json")).catch(() => undefined);
  if (codec) {
    await save(
      "codec-cpu.svg",
      barChart(`CPU codec, ${(codec.elements / 1e6).toFixed(0)} M BF16 weights (${codec.machine.cpu})`, "M elements/s", [
        { label: "encode, 1 core (median)", value: codec.singleCore.encodeElementsPerSecond / 1e6, kind: "ours" },
        { label: "encode target per core", value: 100, kind: "target" },
        { label: "official Python encoder", value: 1.5, kind: "reference" },
        { label: "decode, 1 core (median)", value: codec.singleCore.decodeElementsPerSecond / 1e6, kind: "ours" },
        { label: "decode target per core", value: 150, kind: "target" },
        { label: `decode, ${codec.allCores.threads} threads`, value: codec.allCores.decodeElementsPerSecond / 1e6, kind: "ours" },
      ]),
    );
  }
  const gen = await readJson(join(dir, "generate-cpu.json")).catch(() => undefined);
  if (gen) {
    const [bf16, df11] = gen.runs;
    await save(
      "generate-cpu-speed.svg",
      barChart(`CPU generation, ${gen.shape.layers}-layer llama-shaped model: speed`, "tokens/s", [
        { label: "BF16 prefill", value: bf16.prefillTokensPerSecond, kind: "reference" },
        { label: "DF11 prefill", value: df11.prefillTokensPerSecond, kind: "ours" },
        { label: "BF16 decode", value: bf16.decodeTokensPerSecond, kind: "reference" },
        { label: "DF11 decode (decodes every module per token)", value: df11.decodeTokensPerSecond, kind: "ours" },
      ]),
    );
    await save(
      "generate-cpu-memory.svg",
      barChart(`CPU generation, ${gen.shape.layers}-layer llama-shaped model: memory`, "MiB", [
        { label: "BF16 weights resident", value: bf16.residentWeightBytes / 2 ** 20, kind: "reference" },
        { label: "DF11 weights resident", value: df11.residentWeightBytes / 2 ** 20, kind: "ours" },
        { label: "BF16 peak RSS", value: bf16.peakRssBytes / 2 ** 20, kind: "reference" },
        { label: "DF11 peak RSS", value: df11.peakRssBytes / 2 ** 20, kind: "ours" },
      ]),
    );
  }
  // GPU runs: the newest GPU's files (H200), else the older H100 ones.
  const gpuFile = async (base: string) => (await readJson(join(dir, `${base}-h200.json`)).catch(() => undefined)) ?? (await readJson(join(dir, `${base}-h100.json`)).catch(() => undefined));
  const gpu = await gpuFile("gpu-generate");
  if (gpu) await saveGenerateCharts(gpu, save);
  const gemv = await readJson(join(dir, "gemv-kernels-h200.json")).catch(() => undefined);
  if (gemv) {
    const bars: Bar[] = [];
    for (const m of gemv.perMatrix.filter((r: { xRows: number }) => r.xRows === 1)) {
      bars.push({ label: `${m.matrix} ${m.rows}×${m.cols}, BF16`, value: m.bf16Us, kind: "reference" });
      bars.push({ label: `${m.matrix}, DF11 fused`, value: m.fusedUs, kind: "ours" });
    }
    const t = gemv.token.find((r: { xRows: number }) => r.xRows === 1);
    bars.push({ label: "whole token, BF16 (ms×100)", value: t.bf16Ms * 100, kind: "reference" });
    bars.push({ label: "whole token, DF11 fused (ms×100)", value: t.fusedMs * 100, kind: "ours" });
    await save("gemv-kernels.svg", barChart(`GEMV, batch 1, one CUDA graph per matrix: µs per call (lower is better), ${gemv.device.name}`, "µs", bars));
  }
  const batch = await readJson(join(dir, "batch-generate-h200.json")).catch(() => undefined);
  if (batch) {
    const bars: Bar[] = batch.runs.map((r: { batchSize: number; tokensPerSecond: { aggregate: number } }) => ({ label: `batch ${r.batchSize}, DF11 fused`, value: r.tokensPerSecond.aggregate, kind: "ours" as const }));
    await save("batch-generate.svg", barChart(`df11 generate --batch-size N, aggregate tokens/s (${batch.promptTokens}-token prompts, ${batch.newTokens} new), ${batch.gpu.name}`, "tokens/s", bars));
  }
  const serve = await gpuFile("gpu-serve");
  if (serve) {
    const bars: Bar[] = [];
    serve.bf16.levels.forEach((b: { concurrency: number; aggregateTokensPerSecond: number }, i: number) => {
      bars.push({ label: `${b.concurrency} concurrent, BF16`, value: b.aggregateTokensPerSecond, kind: "reference" });
      bars.push({ label: `${b.concurrency} concurrent, DF11`, value: serve.df11.levels[i].aggregateTokensPerSecond, kind: "ours" });
    });
    await save("gpu-serve.svg", barChart(`df11 serve, aggregate tokens/s (${serve.promptTokens}-token prompts, ${serve.newTokens} new each), ${serve.device.name}`, "tokens/s", bars));
  }
  // Decode steps of R sequences (scripts/gpu/decode-steps.mjs): GPU ms per step, both layouts; at the
  // default 128-token prompt, and with the sequences filled to 4k positions (STEP_POSITION=4000) when saved.
  for (const [file, chart] of [
    ["decode-steps-h200.json", "decode-steps.svg"],
    ["decode-steps-4k-h200.json", "decode-steps-4k.svg"],
  ] as const) {
    const steps = await readJson(join(dir, file)).catch(() => undefined);
    if (steps) await save(chart, decodeStepsChart(steps));
  }
  const offload = (await gpuFile("offload-generate")) ?? (await readJson(join(dir, "offload-generate.json")).catch(() => undefined));
  if (offload) await saveOffloadCharts(offload, save);
  // Tensor parallelism: the 8B (BF16 and DF11) and the 70B (DF11) on one GPU and on several.
  const tp = [await readJson(join(dir, "tp-generate-h200x2.json")).catch(() => undefined), await readJson(join(dir, "tp-generate-70b-h200x2.json")).catch(() => undefined)].filter(Boolean) as TensorParallelResult[];
  if (tp.length > 0) {
    const bars = (metric: "decodeTokensPerSecond" | "prefillTokensPerSecond") =>
      tp.flatMap((r) => r.runs.map((run) => ({ label: `${r.model.split(",")[0].replace("-shaped", "")}: ${run.label}`, value: run[metric], kind: run.devices.length > 1 ? ("ours" as const) : ("reference" as const) })));
    await save("tp-decode.svg", barChart(`Tensor parallelism over NCCL: decode, batch 1 (${tp[0].device.name} ×${tp[0].gpus})`, "tokens/s", bars("decodeTokensPerSecond")));
    await save("tp-prefill.svg", barChart(`Tensor parallelism over NCCL: prefill of ${tp[0].promptTokens} tokens (${tp[0].device.name} ×${tp[0].gpus})`, "tokens/s", bars("prefillTokensPerSecond")));
  }
  return written;
}

interface TensorParallelResult {
  readonly model: string;
  readonly gpus: number;
  readonly promptTokens: number;
  readonly device: { readonly name: string };
  readonly runs: ReadonlyArray<{ label: string; devices: number[]; decodeTokensPerSecond: number; prefillTokensPerSecond: number }>;
}

interface OffloadResult {
  readonly budgetBytes: number;
  readonly promptTokens: number;
  readonly newTokens: number;
  readonly device: { readonly name: string };
  readonly runs: ReadonlyArray<{ label: string; weights: string; decodeTokensPerSecond: number; prefillTokensPerSecond: number; peakGpuBytes: number; engine: { offload: { layers: number[] } | null } }>;
  readonly ratios: { readonly df11ResidentOverBf16Offloaded: number; readonly df11OffloadedOverBf16Offloaded: number };
  readonly context?: { readonly budgetBytes: number; readonly bf16: { maxContext: number }; readonly df11: { maxContext: number }; readonly ratio: number };
}

/** Charts of an `offload-generate` result: decode speed and peak memory per run, longest context per budget. */
async function saveOffloadCharts(r: OffloadResult, save: (name: string, svg: string) => Promise<void>) {
  const budget = `${(r.budgetBytes / 1e9).toFixed(0)} GB`;
  const kind = (run: OffloadResult["runs"][number]) => (run.weights === "bf16" ? ("reference" as const) : ("ours" as const));
  const label = (run: OffloadResult["runs"][number]) => `${run.label}${run.engine.offload ? `, ${run.engine.offload.layers.length} layers on the host` : ""}`;
  const title = `batch 1, ${r.promptTokens}-token prompt, ${r.newTokens} new, ${r.device.name}`;
  await save(
    "offload-decode.svg",
    barChart(`CPU offload at --max-gpu-memory ${budget}: decode (DF11/BF16 offloaded ${r.ratios.df11OffloadedOverBf16Offloaded.toFixed(1)}×, DF11 resident ${r.ratios.df11ResidentOverBf16Offloaded.toFixed(1)}×), ${title}`, "tokens/s", r.runs.map((run) => ({ label: label(run), value: run.decodeTokensPerSecond, kind: kind(run) }))),
  );
  await save("offload-memory.svg", barChart(`CPU offload at --max-gpu-memory ${budget}: peak GPU memory, ${title}`, "GB", [...r.runs.map((run) => ({ label: label(run), value: run.peakGpuBytes / 1e9, kind: kind(run) })), { label: "budget", value: r.budgetBytes / 1e9, kind: "target" as const }]));
  if (r.context) {
    await save(
      "offload-context.svg",
      barChart(`Longest context with every weight on the GPU within ${(r.context.budgetBytes / 1e9).toFixed(0)} GB (DF11 ${r.context.ratio.toFixed(1)}×)`, "tokens", [
        { label: "BF16", value: r.context.bf16.maxContext, kind: "reference" },
        { label: "DF11 (fused layout)", value: r.context.df11.maxContext, kind: "ours" },
      ]),
    );
  }
}

interface GenerateRun {
  readonly label: string;
  readonly weights: string;
  readonly engine?: { readonly layout: string };
  readonly decodeTokensPerSecond: number;
  readonly prefillTokensPerSecond: number;
  readonly peakGpuBytes: number;
  readonly weightsBytes: number;
  readonly kvCacheBytes: number;
}

/** Decode, prefill and memory charts of a `gpu-generate` result (the df11 engine in each layout, transformers, the cuBLAS floor). */
async function saveGenerateCharts(gpu: { runs: GenerateRun[]; reference?: { decodeTokensPerSecond: number; prefillTokensPerSecond: number; peakGpuBytes: number }; floor?: { tokensPerSecond: number }; promptTokens: number; newTokens: number; device: { name: string } }, save: (name: string, svg: string) => Promise<void>) {
  const ref = gpu.reference;
  const title = `Llama-3.1-8B shape, batch 1, ${gpu.promptTokens}-token prompt, ${gpu.newTokens} new, ${gpu.device.name}`;
  const kind = (r: GenerateRun) => ((r.engine?.layout ?? r.weights) === "bf16" ? ("reference" as const) : ("ours" as const));
  const name = (r: GenerateRun) => r.label.replace(/^df11 engine, /, "df11: ");
  await save(
    "gpu-generate-decode.svg",
    barChart(`GPU decode: ${title}`, "tokens/s", [
      ...(ref ? [{ label: "transformers BF16 (this run)", value: ref.decodeTokensPerSecond, kind: "reference" as const }] : []),
      ...(gpu.floor ? [{ label: "cuBLAS BF16 GEMVs only (floor)", value: gpu.floor.tokensPerSecond, kind: "target" as const }] : []),
      ...gpu.runs.map((r) => ({ label: name(r), value: r.decodeTokensPerSecond, kind: kind(r) })),
    ]),
  );
  await save(
    "gpu-generate-prefill.svg",
    barChart(`GPU prefill: ${title}`, "tokens/s", [
      ...(ref ? [{ label: "transformers BF16 (this run)", value: ref.prefillTokensPerSecond, kind: "reference" as const }] : []),
      ...gpu.runs.map((r) => ({ label: name(r), value: r.prefillTokensPerSecond, kind: kind(r) })),
    ]),
  );
  await save(
    "gpu-generate-memory.svg",
    barChart(`GPU memory (weights, peak): ${title}`, "GB", [
      ...(ref ? [{ label: "transformers BF16 peak (this run)", value: ref.peakGpuBytes / 1e9, kind: "reference" as const }] : []),
      ...gpu.runs.flatMap((r) => [
        { label: `${name(r)}: weights`, value: r.weightsBytes / 1e9, kind: kind(r) },
        { label: `${name(r)}: peak`, value: r.peakGpuBytes / 1e9, kind: kind(r) },
      ]),
    ]),
  );
}
