// One generation run on the GPU, timed (the GPU generation benchmarks run it in a child process per variant).
import { CausalLM } from "@df11/models";
import { CudaBackend, devices, memoryInfo, resetPeakAllocation, type CudaBackendOptions, type CudaEngineConfig, type FusedLayoutReport } from "@df11/cuda-kernel";
import { fusedMatricesReport, type FusedMatricesReport } from "./fused-matrices.js";

/** The first fields of a GPU generation benchmark's saved JSON: what, when, where, on which model, batch 1. */
export const generationResultHeader = (benchmark: string, promptTokens: number, newTokens: number) => ({
  benchmark,
  date: new Date().toISOString(),
  device: devices()[0],
  model: "Llama-3.1-8B-shaped, synthetic weights (tools/make_bench_model.py)",
  batch: 1,
  promptTokens,
  newTokens,
});

/** One variant's numbers. */
export interface GenerationRun {
  readonly label: string;
  readonly weights: "bf16" | "df11";
  /** What the engine ran with, as it reports it (layout, windows, row thresholds, GPU, PDL). */
  readonly engine: CudaEngineConfig;
  /** The fused layout's size and escapes, when used: totals, then every matrix and per-kind summaries. */
  readonly fused?: FusedLayoutReport & FusedMatricesReport;
  readonly loadSeconds: number;
  /** From the start of loading to the first generated token of the prompt (cold: first prefill included). */
  readonly firstTokenSeconds: number;
  readonly prefillTokensPerSecond: number;
  readonly decodeTokensPerSecond: number;
  /**
   * Decode tokens/s pipelined, as `generate()` (df11 generate) and `df11 serve` run greedy decoding: each
   * step queued before the previous step's token is read back, its input taken on the device
   * (CausalLM.greedyAsync / stepGreedy). `decodeTokensPerSecond` is one step at a time (forwardGreedy).
   */
  readonly pipelinedDecodeTokensPerSecond: number;
  /** Whether the pipelined run's tokens equal the step-at-a-time run's. */
  readonly pipelinedTokensEqual: boolean;
  /** Where the load's host time went, ms per phase (CudaBackend.loadTimes). */
  readonly loadPhases: Record<string, number>;
  readonly decodeMsPerToken: number;
  readonly gpuMsPerToken: number;
  readonly hostOverheadMsPerToken: number;
  /** Host time per token by phase: inputs upload call, graph launch call, wait + copy of the token. */
  readonly hostMsPerToken: { setStep: number; launch: number; readBack: number };
  /** Most device memory df11's buffers held at once while generating (after loading). */
  readonly peakGpuBytes: number;
  /** The same from the start of loading (transcoding windows included). */
  readonly peakGpuBytesWithLoad: number;
  /** Device memory in use seen by cudaMemGetInfo (context included), at its peak during the run. */
  readonly deviceUsedPeakBytes: number;
  readonly weightsBytes: number;
  readonly kvCacheBytes: number;
  readonly tokenIds: number[];
}

/**
 * Load `dir` with `options`, then time a prompt of `promptTokens` ids (prefill, after a warm-up that
 * allocates and records the CUDA graphs) and `newTokens` greedy one-token steps; peak device memory,
 * host overhead per token, the configuration the engine reports.
 */
export async function measureGeneration(dir: string, label: string, promptTokens: number, newTokens: number, options: CudaBackendOptions = {}): Promise<GenerationRun> {
  memoryInfo(); // context first, so it is not counted
  const before = memoryInfo().free;
  let minFree = before;
  const sample = () => (minFree = Math.min(minFree, memoryInfo().free));
  const maxContext = promptTokens + newTokens + 32; // room for the GPU-time probe after the run
  let t = performance.now();
  const backend = await CudaBackend.load(dir, { maxContext, ...options });
  const loadSeconds = (performance.now() - t) / 1000;
  using model = new CausalLM(backend.config, backend);
  sample();
  const vocab = backend.config.vocabSize;
  const prompt = Array.from({ length: promptTokens }, (_, i) => (i * 7919 + 13) % vocab);
  let id = model.forwardGreedy(prompt);
  const firstTokenSeconds = (performance.now() - t) / 1000;
  const peakGpuBytesWithLoad = backend.memory().peakBytes;
  model.reset();
  resetPeakAllocation();
  // Warm-up: the first steps allocate, the second one-token step records the CUDA graph.
  id = model.forwardGreedy(prompt.slice(0, 32));
  for (let i = 0; i < 4; i++) id = model.forwardGreedy([id]);
  model.reset();
  backend.synchronize();
  sample();

  t = performance.now();
  id = model.forwardGreedy(prompt);
  const prefillSeconds = (performance.now() - t) / 1000;
  const tokenIds = [id];
  const host = backend.hostTimes;
  Object.assign(host, { steps: 0, setStep: 0, launch: 0, readBack: 0 });
  t = performance.now();
  for (let i = 1; i < newTokens; i++) tokenIds.push((id = model.forwardGreedy([id])));
  const decodeSeconds = (performance.now() - t) / 1000;
  const hostMsPerToken = { setStep: host.setStep / host.steps, launch: host.launch / host.steps, readBack: host.readBack / host.steps };
  sample();
  // GPU time of one replayed step (events around it) at the end of the run's context, to separate the
  // host's share of a token (an upper bound of the run's average: attention grows with the context).
  const gpuMs: number[] = [];
  for (let i = 0; i < 20; i++) gpuMs.push(backend.gpuMilliseconds(() => model.step([{ slot: 0, tokens: [tokenIds[i]] }])));
  gpuMs.sort((a, b) => a - b);
  const decodeMsPerToken = (decodeSeconds * 1000) / (newTokens - 1);
  const gpuMsPerToken = gpuMs[gpuMs.length >> 1];
  // The same decode pipelined (as generate() and df11 serve run it).
  model.reset();
  const piped = [model.forwardGreedy(prompt)];
  t = performance.now();
  let pending = model.greedyAsync(model.step([{ slot: 0, tokens: [piped[0]] }]));
  for (let i = 2; i < newTokens; i++) {
    const next = model.greedyAsync(model.stepGreedy(pending));
    piped.push(pending.read()[0]);
    pending = next;
  }
  piped.push(pending.read()[0]);
  const pipelinedSeconds = (performance.now() - t) / 1000;
  const c = backend.config;
  return {
    label,
    weights: backend.weights.kind,
    engine: backend.engineConfig,
    fused: backend.weights.fused ? { ...backend.weights.fused, ...fusedMatricesReport(backend.fusedMatrices()) } : undefined,
    loadSeconds,
    loadPhases: { ...backend.loadTimes },
    firstTokenSeconds,
    prefillTokensPerSecond: promptTokens / prefillSeconds,
    decodeTokensPerSecond: (newTokens - 1) / decodeSeconds,
    pipelinedDecodeTokensPerSecond: (newTokens - 1) / pipelinedSeconds,
    pipelinedTokensEqual: piped.length === tokenIds.length && piped.every((id, i) => id === tokenIds[i]),
    decodeMsPerToken,
    gpuMsPerToken,
    hostOverheadMsPerToken: decodeMsPerToken - gpuMsPerToken,
    hostMsPerToken,
    peakGpuBytes: backend.memory().peakBytes,
    peakGpuBytesWithLoad,
    deviceUsedPeakBytes: before - minFree,
    weightsBytes: backend.weights.residentBytes,
    kvCacheBytes: 2 * c.numLayers * c.numKvHeads * maxContext * c.headDim * 2,
    tokenIds,
  };
}

