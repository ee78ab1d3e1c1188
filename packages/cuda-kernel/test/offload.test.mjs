// CPU offload (maxGpuMemory / --max-gpu-memory): layers kept in pinned host memory and copied into two
// device slots ahead of use give bit-identical logits to a resident run — prefill, one-token steps
// (CUDA graphs recorded with the copies in them, then replayed), batched slots — in the fused and bf16
// layouts, from BF16 and DF11 checkpoints; a budget too small says which options fit; dispose frees
// slots and pinned memory. Skipped, with the reason, without a GPU.
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after } from "node:test";
import { fileURLToPath } from "node:url";
import { CausalLM, OptionError, writeSyntheticModel } from "../../models/dist/index.js";
import { compressModel } from "../../cli/dist/index.js";
import { gpuTest, gpuUnavailableReason } from "./gpu-helpers.mjs";
import { allocationStats, CudaBackend, OutOfDeviceMemoryError, resetPeakAllocation } from "../dist/index.js";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "..", "..", "..");
const refRoot = join(repo, "test-support", "reference-models");
const work = gpuUnavailableReason ? undefined : mkdtempSync(join(tmpdir(), "df11-offload-"));
after(() => work && rmSync(work, { recursive: true, force: true }));

const sameBits = (a, b) => a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
const IDS = [1, 17, 42, 99, 7, 200, 5, 64, 128, 3, 250, 11];
const STEPS = 6; // one-token steps after the prompt: warm-up, capture, then replays

/** Models: the reference models (2 layers) and a 7-layer synthetic one (slots reused: layers 2…6 offloaded in turn). */
async function models() {
  const list = readdirSync(refRoot)
    .sort()
    .filter((n) => !n.includes("vlm"))
    .map((name) => ({ name, bf16: join(refRoot, name, "bf16") }));
  const deep = join(work, "deep-bf16");
  await writeSyntheticModel(deep, { vocab: 512, hidden: 64, intermediate: 96, layers: 7, heads: 4, kvHeads: 2 }, { seed: 11 });
  list.push({ name: "llama-7-layers", bf16: deep });
  for (const m of list) {
    m.df11 = join(work, `${m.name}-df11`);
    await compressModel(m.bf16, m.df11);
  }
  return list;
}

/**
 * What a run produces: prefill logits (GEMM path, all positions), then greedy one-token steps (GEMV
 * path; the 2nd records the CUDA graph, later ones replay it), then the same prompts in 3 slots
 * together (batched one-token steps: a graph of 3 rows).
 */
async function run(dir, options) {
  resetPeakAllocation();
  const backend = await CudaBackend.load(dir, { maxContext: 64, slots: 3, gemmMinRows: 2, ...options });
  const model = new CausalLM(backend.config, backend);
  try {
    const out = { layers: backend.config.numLayers, weights: backend.weights, engine: backend.engineConfig };
    out.prefill = model.forward(IDS, { allLogits: true });
    const steps = [];
    let logits = out.prefill.subarray(out.prefill.length - model.config.vocabSize);
    for (let i = 0; i < STEPS; i++) {
      const next = logits.indexOf(Math.max(...logits));
      logits = model.forward([next]);
      steps.push(logits);
    }
    out.steps = steps;
    // Batched: three sequences of different prompts, stepped together.
    model.reset();
    const prompts = [IDS.slice(0, 5), IDS.slice(3, 9), IDS.slice(6)];
    const firsts = prompts.map((p, slot) => backend.read(model.step([{ slot, tokens: p }])));
    let tokens = firsts.map((l) => l.indexOf(Math.max(...l)));
    const batched = [];
    for (let i = 0; i < STEPS; i++) {
      const l = backend.read(model.step(tokens.map((t, slot) => ({ slot, tokens: [t] }))));
      batched.push(l);
      const V = model.config.vocabSize;
      tokens = tokens.map((_, r) => {
        const row = l.subarray(r * V, (r + 1) * V);
        return row.indexOf(Math.max(...row));
      });
    }
    out.batched = batched;
    out.memory = backend.memory();
    return out;
  } finally {
    model.dispose();
  }
}

function assertSame(label, got, want) {
  assert.ok(sameBits(got.prefill, want.prefill), `${label}: prefill logits differ`);
  got.steps.forEach((s, i) => assert.ok(sameBits(s, want.steps[i]), `${label}: one-token step ${i} differs (graph ${i === 0 ? "warm-up" : i === 1 ? "capture" : "replay"})`));
  got.batched.forEach((s, i) => assert.ok(sameBits(s, want.batched[i]), `${label}: batched step ${i} differs`));
}

gpuTest("offloaded layers give bit-identical logits to resident ones (fused and bf16 layouts, BF16 and DF11 checkpoints; prefill, graph replays, batched slots)", async () => {
  for (const m of await models()) {
    for (const [checkpoint, layout] of [["bf16", "bf16"], ["bf16", "fused"], ["df11", "fused"], ["df11", "bf16"]]) {
      const dir = m[checkpoint];
      const resident = await run(dir, { gpuWeights: layout });
      assert.equal(resident.weights.offload, undefined);
      assert.equal(resident.engine.offload, null);
      const layers = resident.layers;
      // At least half the layers, all of them, and (7 layers) an odd count that reuses both slots.
      for (const count of [...new Set([Math.ceil(layers / 2), layers, layers > 4 ? 5 : layers])]) {
        const label = `${m.name} ${checkpoint} → ${layout}, ${count} of ${layers} layers offloaded`;
        const offloaded = await run(dir, { gpuWeights: layout, offloadLayers: count });
        assert.deepEqual(offloaded.weights.offload.layers, Array.from({ length: count }, (_, i) => layers - count + i), label);
        assert.ok(offloaded.weights.offload.hostBytes > 0 && offloaded.weights.offload.slotBytes > 0, label);
        assert.deepEqual(offloaded.engine.offload, offloaded.weights.offload);
        assert.equal(offloaded.weights.layout, layout);
        assertSame(label, offloaded, resident);
      }
      console.log(`# ${m.name} ${checkpoint} → ${layout}: offloaded runs bit-identical to resident`);
    }
  }
});

gpuTest("a budget (maxGpuMemory) that does not hold the model offloads layers, as few as fit, and the run is bit-identical", async () => {
  const m = { bf16: join(work, "deep-bf16") };
  if (!readdirSync(work).includes("deep-bf16")) await writeSyntheticModel(m.bf16, { vocab: 512, hidden: 64, intermediate: 96, layers: 7, heads: 4, kvHeads: 2 }, { seed: 11 });
  const resident = await run(m.bf16, { gpuWeights: "bf16" });
  // The resident plan less 3.5 layers' worth: 6 of the 7 layers must go (two of them only pay for the slots).
  const options = { maxContext: 64, slots: 3, gemmMinRows: 2, gpuWeights: "bf16" };
  const full = await CudaBackend.planMemory(m.bf16, options);
  assert.equal(full.offload, null);
  const all = await CudaBackend.planMemory(m.bf16, { ...options, offloadLayers: 7 });
  const perLayer = all.offload.hostBytes / 7;
  const budget = Math.floor(full.deviceBytes - 3.5 * perLayer);
  const planned = await CudaBackend.planMemory(m.bf16, { ...options, maxGpuMemory: budget });
  assert.deepEqual(planned.offload.layers, [1, 2, 3, 4, 5, 6]);
  const offloaded = await run(m.bf16, { gpuWeights: "bf16", maxGpuMemory: budget });
  const n = offloaded.weights.offload.layers.length;
  assert.equal(n, 6, `${n} layers offloaded for a budget of ${budget} bytes`);
  assert.equal(offloaded.engine.maxGpuMemory, budget);
  assert.ok(offloaded.memory.peakBytes < resident.memory.peakBytes, "offloading did not lower the device memory");
  assertSame(`budget ${budget}`, offloaded, resident);
});

gpuTest("a budget too small even for every layer offloaded fails before allocating, naming the options; huffman refuses to offload", async () => {
  const dir = join(refRoot, "qwen2-tiny", "bf16");
  const before = allocationStats().allocated;
  await assert.rejects(CudaBackend.load(dir, { maxContext: 64, gpuWeights: "bf16", maxGpuMemory: 1e6 }), (e) => {
    assert.ok(e instanceof OutOfDeviceMemoryError, e.name);
    assert.match(e.message, /needs [\d.]+ GB of GPU memory .* is free and --max-gpu-memory allows 0\.00 GB\. Offloading layers to pinned host memory \(bf16 layout\) needs at least/);
    assert.match(e.message, /--max-gpu-memory [\d.]+GB or more/);
    assert.match(e.message, /smaller --max-context/);
    assert.ok(e.neededBytes > e.freeBytes);
    return true;
  });
  assert.equal(allocationStats().allocated, before, "the failed load left memory allocated");
  const df11 = join(work, "qwen2-tiny-df11");
  if (!readdirSync(work).includes("qwen2-tiny-df11")) await compressModel(dir, df11);
  await assert.rejects(CudaBackend.load(df11, { maxContext: 64, gpuWeights: "huffman", maxGpuMemory: 1e6 }), (e) => e instanceof OptionError && /cannot be offloaded .* use fused or bf16/.test(e.message));
});

gpuTest("dispose frees the slots, the pinned layers and everything else (device allocations back to the baseline)", async () => {
  const dir = join(refRoot, "mistral-tiny", "bf16");
  const before = allocationStats().allocated;
  for (const layout of ["fused", "bf16"]) {
    const backend = await CudaBackend.load(dir, { maxContext: 64, gpuWeights: layout, offloadLayers: 2 });
    const model = new CausalLM(backend.config, backend);
    for (let i = 0; i < 4; i++) model.forward([1 + i]); // graphs recorded
    assert.ok(allocationStats().allocated > before);
    model.dispose();
    assert.equal(allocationStats().allocated, before, `${layout}: dispose left ${allocationStats().allocated - before} bytes allocated`);
  }
});
