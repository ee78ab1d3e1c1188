// GPU generation: every reference model (test-support/reference-models) and official fixture, BF16 and
// DF11, against transformers' float32 logits and greedy tokens; DF11 bit-identical to BF16 on the GPU;
// a deliberately broken kernel caught; memory errors and release. Skipped, with the reason, without a GPU.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import { CausalLM, generate, loadCausalLM, Model, writeSyntheticModel } from "../../models/dist/index.js";
import { compressModel } from "../../cli/dist/index.js";
import { gpuTest, gpuUnavailableReason, relError } from "./gpu-helpers.mjs";
import { checkGreedy, logitsBothWays as logitsOf, models, referenceOf, REL_TOLERANCE, repo, sameBits } from "./reference-models.mjs";
import { allocationStats, CudaBackend, memoryInfo, OutOfDeviceMemoryError } from "../dist/index.js";


const work = gpuUnavailableReason ? undefined : mkdtempSync(join(tmpdir(), "df11-gpu-gen-"));
after(() => work && rmSync(work, { recursive: true, force: true }));

async function gpuModel(dir, options = {}) {
  const backend = await CudaBackend.load(dir, { maxContext: 64, ...options });
  return new CausalLM(backend.config, backend);
}

/** Logits at every prompt position, by prefill (tensor-core GEMM path) and by one-token steps (GEMV path, graph replay). */
async function logitsBothWaysOf(dir, ids, options) {
  const model = await gpuModel(dir, { gemmMinRows: 2, ...options });
  try {
    return { ...logitsOf(model, ids), model };
  } catch (e) {
    model.dispose();
    throw e;
  }
}

/** Every weight layout the GPU runs, each of which must give the BF16 layout's logits bit for bit. */
const LAYOUTS = [
  ["DF11 checkpoint, fused layout (auto's choice for real models)", "df11", "fused"],
  ["DF11 checkpoint, Huffman windows", "df11", "huffman"],
  ["DF11 checkpoint decoded to BF16", "df11", "bf16"],
  ["BF16 checkpoint, fused layout", "bf16", "fused"],
];

for (const m of models()) {
  gpuTest(`${m.name}: GPU logits within tolerance of transformers fp32 (prefill and one-token steps), greedy tokens equal; every layout (fused, huffman, DF11→BF16, BF16→fused) bit-identical to BF16`, async () => {
    const ref = await referenceOf(m.ref);
    const df11Dir = m.df11 ?? join(work, m.name);
    if (!m.df11) await compressModel(m.bf16, df11Dir);
    const bf16 = await logitsBothWaysOf(m.bf16, ref.input_ids, { gpuWeights: "bf16" });
    try {
      assert.equal(bf16.model.weights.layout, "bf16");
      const prefillErr = relError(bf16.prefill, ref.logits);
      const stepErr = relError(bf16.stepwise, ref.logits);
      console.log(`# ${m.name}: relative L2 error vs transformers fp32: prefill ${prefillErr.toExponential(2)}, one-token steps ${stepErr.toExponential(2)}`);
      assert.ok(prefillErr < REL_TOLERANCE, `prefill error ${prefillErr}`);
      assert.ok(stepErr < REL_TOLERANCE, `one-token error ${stepErr}`);
      await checkGreedy(bf16.model, ref, `${m.name} bf16`);
      for (const [label, checkpoint, layout] of LAYOUTS) {
        const run = await logitsBothWaysOf(checkpoint === "df11" ? df11Dir : m.bf16, ref.input_ids, { gpuWeights: layout });
        try {
          assert.equal(run.model.weights.kind, checkpoint);
          assert.equal(run.model.weights.layout, layout);
          assert.ok(sameBits(run.prefill, bf16.prefill), `${label}: prefill logits differ from BF16's`);
          assert.ok(sameBits(run.stepwise, bf16.stepwise), `${label}: one-token logits differ from BF16's`);
          if (layout === "fused") assert.ok(run.model.weights.fused.ratioToBf16 > 0.5, "fused layout report");
          await checkGreedy(run.model, ref, `${m.name} ${label}`);
        } finally {
          run.model.dispose();
        }
      }
    } finally {
      bf16.model.dispose();
    }
  });
}

gpuTest("the tolerance catches broken kernels (RoPE turning the wrong way; attention without 1/√d)", async () => {
  // Tiny random models attend almost uniformly, so a fault's size varies by model: each model must have
  // at least one of the two faults above the tolerance, and each fault must be caught on most models.
  const caught = { "rope-direction": 0, "attention-unscaled": 0 };
  const all = models();
  for (const m of all) {
    const ref = await referenceOf(m.ref);
    let worst = 0;
    for (const fault of Object.keys(caught)) {
      const broken = await logitsBothWaysOf(m.bf16, ref.input_ids, { fault });
      broken.model.dispose();
      const err = Math.min(relError(broken.prefill, ref.logits), relError(broken.stepwise, ref.logits));
      console.log(`# ${m.name} with ${fault}: relative error ${err.toExponential(2)}`);
      if (err > REL_TOLERANCE) caught[fault]++;
      worst = Math.max(worst, err);
    }
    assert.ok(worst > REL_TOLERANCE, `${m.name}: no fault exceeded the tolerance (largest ${worst})`);
  }
  for (const [fault, n] of Object.entries(caught)) assert.ok(n >= all.length / 2, `${fault} caught on only ${n} of ${all.length} models`);
});

gpuTest("df11 generate on the GPU: same tokens from BF16 and DF11 via the CLI; Ctrl-C stops it cleanly (exit 130)", async () => {
  const { execFileSync, spawn } = await import("node:child_process");
  const cli = join(repo, "packages", "cli", "dist", "bin.js");
  const m = models()[0];
  const df11Dir = m.df11 ?? join(work, m.name);
  const run = (dir) => JSON.parse(execFileSync(process.execPath, [cli, "generate", dir, "--input-ids", "1,17,42,99", "-n", "12", "--device", "cuda", "--json"], { encoding: "utf8" }));
  const a = run(m.bf16);
  const b = run(df11Dir);
  assert.equal(a.device, "cuda");
  assert.equal(b.weights, "df11");
  assert.deepEqual(b.tokenIds, a.tokenIds);
  const child = spawn(process.execPath, [cli, "generate", m.bf16, "--input-ids", "1,2,3", "-n", "90000", "--max-context", "100000", "--device", "cuda"], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  await new Promise((resolve) => child.stdout.once("data", resolve));
  child.kill("SIGINT");
  const code = await new Promise((resolve) => child.on("exit", resolve));
  assert.equal(code, 130, stderr);
  assert.match(stderr, /interrupted; prefill/);
});

gpuTest("generate() streams the same tokens on the GPU as greedy steps, and an AbortSignal stops it", async () => {
  const m = models()[0];
  const ref = await referenceOf(m.ref);
  const model = await gpuModel(m.bf16);
  try {
    const tokens = [];
    for await (const t of generate(model, ref.input_ids, { maxTokens: 8, stopTokenIds: [] })) tokens.push(t.id);
    const controller = new AbortController();
    const stopped = [];
    for await (const t of generate(model, ref.input_ids, { maxTokens: 8, stopTokenIds: [], signal: controller.signal })) {
      stopped.push(t.id);
      if (stopped.length === 3) controller.abort();
    }
    assert.deepEqual(stopped, tokens.slice(0, 3));
    const sampled = [];
    for await (const t of generate(model, ref.input_ids, { maxTokens: 8, stopTokenIds: [], temperature: 0.8, seed: 3 })) sampled.push(t.id);
    const again = [];
    for await (const t of generate(model, ref.input_ids, { maxTokens: 8, stopTokenIds: [], temperature: 0.8, seed: 3 })) again.push(t.id);
    assert.deepEqual(again, sampled, "same seed, same tokens");
  } finally {
    model.dispose();
  }
});

gpuTest("40 sequences decoded together on the GPU get exactly the tokens each gets alone (continuous batching: the GEMV up to 64 rows, from x's BF16 copy above 8)", async () => {
  const m = models().find((x) => x.name === "qwen3-tiny") ?? models()[0];
  const backend = await CudaBackend.load(m.df11 ?? m.bf16, { slots: 40, maxContext: 128, gpuWeights: "fused" });
  const model = new Model(m.name, m.df11 ?? m.bf16, new CausalLM(backend.config, backend), undefined);
  try {
    assert.equal(model.device, "cuda");
    const prompts = Array.from({ length: 40 }, (_, i) => Array.from({ length: 3 + (i % 7) }, (_, j) => (i * 31 + j * 7 + 1) % 200));
    const lengths = prompts.map((_, i) => 5 + (i % 6) * 4);
    const alone = [];
    for (const [i, p] of prompts.entries()) alone.push((await model.generate(p, { maxTokens: lengths[i], temperature: 0, ignoreEos: true }).result()).tokenIds);
    const steps = model.scheduler.stats.steps;
    const together = await Promise.all(prompts.map((p, i) => model.generate(p, { maxTokens: lengths[i], temperature: 0, ignoreEos: true }).result()));
    assert.deepEqual(together.map((r) => r.tokenIds), alone);
    assert.ok(model.scheduler.stats.steps - steps < lengths.reduce((a, b) => a + b, 0) / 2, "the sequences did not share steps");
    assert.ok(model.scheduler.stats.pipelinedSteps > 0, "no decode step was pipelined (greedy requests: each step queued before the last one's tokens are read)");
  } finally {
    model.dispose();
  }
});

gpuTest("GQA groups of 3, 7 and 16 query heads per KV head and head_dim 96 match the CPU backend", async () => {
  const shapes = [
    { vocab: 512, hidden: 96, intermediate: 192, layers: 2, heads: 6, kvHeads: 2 }, // group 3
    { vocab: 512, hidden: 112, intermediate: 192, layers: 2, heads: 7, kvHeads: 1 }, // group 7 (Qwen2-0.5B/7B have 7)
    { vocab: 512, hidden: 256, intermediate: 192, layers: 2, heads: 16, kvHeads: 1 }, // group 16 (two warps per KV head)
    { vocab: 512, hidden: 192, intermediate: 192, layers: 2, heads: 2, kvHeads: 1 }, // head_dim 96 (phi-3's)
  ];
  const ids = [1, 17, 42, 99, 7, 200, 5, 64, 128, 3, 250, 11];
  for (const [i, shape] of shapes.entries()) {
    const dir = join(work, `gqa-${i}`);
    await writeSyntheticModel(dir, shape, { seed: 40 + i });
    const cpu = await loadCausalLM(dir);
    const expected = cpu.forward(ids, { allLogits: true });
    cpu.dispose();
    const gpu = await logitsBothWaysOf(dir, ids);
    gpu.model.dispose();
    const err = Math.max(relError(gpu.prefill, expected), relError(gpu.stepwise, expected));
    console.log(`# ${shape.heads}/${shape.kvHeads} heads, head_dim ${shape.hidden / shape.heads}: relative error vs the CPU backend ${err.toExponential(2)}`);
    assert.ok(err < REL_TOLERANCE, `${JSON.stringify(shape)}: ${err}`);
  }
});

gpuTest("a model too large for free GPU memory fails before allocating, saying how much it needs; memory is freed on dispose", async () => {
  const m = models()[0];
  const before = memoryInfo().free;
  const allocated = allocationStats().allocated;
  await assert.rejects(CudaBackend.load(m.bf16, { maxContext: 1 << 24, slots: 4096 }), (e) => {
    assert.ok(e instanceof OutOfDeviceMemoryError, e.name);
    assert.match(e.message, /needs [\d.]+ GB of GPU memory .* is free/);
    assert.ok(e.neededBytes > e.freeBytes);
    return true;
  });
  assert.equal(allocationStats().allocated, allocated, "the failed load left memory allocated");
  const model = await gpuModel(m.bf16, { maxContext: 4096, slots: 8 });
  model.forward([1, 2, 3]);
  assert.ok(allocationStats().allocated > allocated, "the model allocated nothing");
  model.dispose();
  // Counted by df11's allocator, in this process: the device's free memory also moves with the other test
  // files running beside this one (node --test runs files in parallel; 112 MiB once seen on an H200).
  console.log(`# after dispose: df11 allocations ${allocationStats().allocated} bytes (before ${allocated}); device free memory ${((before - memoryInfo().free) / 2 ** 20).toFixed(0)} MiB below the start`);
  assert.equal(allocationStats().allocated, allocated, "dispose left df11 allocations behind");
});

gpuTest("pipelined greedy decoding: a step whose tokens are the previous step's argmax, taken on the GPU before the host reads them, gives the logits of a step from the host's tokens, bit for bit (graph replays at ≤ 16 sequences, kernels one by one above)", async () => {
  const m = models().find((x) => x.name === "qwen3-tiny") ?? models()[0];
  for (const n of [3, 16, 24]) {
    const plain = await gpuModel(m.df11 ?? m.bf16, { slots: n, gpuWeights: "fused" });
    const piped = await gpuModel(m.df11 ?? m.bf16, { slots: n, gpuWeights: "fused" });
    try {
      const prompts = Array.from({ length: n }, (_, i) => Array.from({ length: 2 + (i % 5) }, (_, j) => (i * 37 + j * 11 + 3) % 200));
      let next = prompts.map((p, slot) => plain.forwardGreedy(p, slot));
      assert.deepEqual(prompts.map((p, slot) => piped.forwardGreedy(p, slot)), next);
      const onDevice = [];
      const setStepFromArgmax = piped.backend.setStepFromArgmax.bind(piped.backend);
      piped.backend.setStepFromArgmax = (plan, previous) => {
        const taken = setStepFromArgmax(plan, previous);
        onDevice.push(taken);
        return taken;
      };
      let logits = piped.step(next.map((t, slot) => ({ slot, tokens: [t] })));
      let pending = piped.greedyAsync(logits);
      for (let i = 0; i < 8; i++) {
        const expected = plain.step(next.map((t, slot) => ({ slot, tokens: [t] })));
        assert.ok(sameBits(piped.backend.read(logits), plain.backend.read(expected)), `${n} sequences, step ${i}: logits differ`);
        const tokens = plain.backend.argmax(expected);
        logits = piped.stepGreedy(pending); // queued before pending is read
        assert.deepEqual([...pending.read()], [...tokens], `${n} sequences, step ${i}: greedy tokens differ`);
        pending = piped.greedyAsync(logits);
        next = [...tokens];
      }
      assert.deepEqual(onDevice, Array(8).fill(true), "the tokens were not taken on the device");
    } finally {
      plain.dispose();
      piped.dispose();
    }
  }
});
