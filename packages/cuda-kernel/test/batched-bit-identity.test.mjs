// Batched steps, per model: the fused layout (DF11 checkpoint) gives the BF16 layout's logits bit for bit
// in every row of every batched step, and each sequence's logits in a batch are exactly its logits when
// stepped alone (batch invariance). generation.test.mjs checks the layouts at batch 1; this file checks
// them at 1, 5, 8, 9, 16, 17, 32, 40 and 64 sequences per step — every row path of the GEMV (1–8 rows:
// x rounded as it is loaded; 9–16, 17–32 and 33–64: x's BF16 copy, 1, 2 and 4 row tiles) and the decode
// graphs (steps of ≤ 16 rows: warm-up, capture, replay) — and several sequences prefilled in one step.
// Skipped, with the reason, without a GPU.
//
// Why a wrong kernel fails it: every step below runs on both layouts and every logits row is compared bit
// for bit (a), so a fused GEMV that differs from the BF16 GEMV in any row path fails (a); each batched
// row is also compared with the same sequence stepped alone in a twin slot (b: same prompt, same tokens,
// one row per step), so a kernel wrong the same way in both layouts at some row count fails (b), while
// the 1-row path itself is checked against transformers in generation.test.mjs. Models: every reference
// model and fixture (hidden sizes 64 and 128: K is not a multiple of the fused tile's 256, so the GEMV
// takes its unaligned path), plus two synthetic ones whose K are multiples of 256 (the aligned path, the
// one real models take) or a whole tile and a part (384).
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import { CausalLM, writeSyntheticModel } from "../../models/dist/index.js";
import { compressModel } from "../../cli/dist/index.js";
import { gpuTest, gpuUnavailableReason } from "./gpu-helpers.mjs";
import { models, sameBits } from "./reference-models.mjs";
import { CudaBackend } from "../dist/index.js";

const work = gpuUnavailableReason ? undefined : mkdtempSync(join(tmpdir(), "df11-gpu-batched-"));
after(() => work && rmSync(work, { recursive: true, force: true }));

/** Sequences decoded together at most (the GEMV's row limit); each has a twin slot stepped alone. */
const SEQS = 64;
/** Sequences per batched one-token step: each GEMV row path and its edges. */
const GROUPS = [1, 5, 8, 9, 16, 17, 32, 40, 64];
/** Steps per group: warm-up, graph capture, replay (for ≤ 16 rows; larger steps are not graphs). */
const STEPS_PER_GROUP = 3;
/**
 * Several sequences prefilled in one step (`CausalLM.step` with several tokens per sequence), by prompt
 * lengths: 14 and 42 rows stay on the GEMV (≤ 64 rows: each sequence's logits must equal its solo
 * prefill's); 81 rows take the GEMM (the DF11 fused GEMM on Hopper, ≤ 128 rows) and 160 the GEMM over
 * unpacked windows, where only fused = BF16 is asserted (a shared prefill's GEMM splits K by the step's
 * rows and takes the warp-per-row attention, so it may differ from the solo prefill in the last bits).
 */
const PREFILL_SETS = [[5, 9], [3, 7, 12, 20], [40, 41], [60, 70, 30]];
const GEMV_MAX_ROWS = 64;
/** Longest sequence: a prompt of ≤ 23 tokens + 27 steps, or a batched prompt of ≤ 70 + 3 steps. */
const MAX_CONTEXT = 96;

/** Extra models whose matrices' K are multiples of the fused tile (256) or not (384 = 1.5 tiles). */
const SYNTHETIC = [
  { name: "synthetic-llama-k256", shape: { vocab: 512, hidden: 256, intermediate: 768, layers: 2, heads: 4, kvHeads: 2 }, family: "llama", seed: 71 },
  { name: "synthetic-qwen3-k384", shape: { vocab: 384, hidden: 384, intermediate: 1024, layers: 2, heads: 6, kvHeads: 2 }, family: "qwen3", seed: 72 },
];

const promptOf = (s, vocab) => Array.from({ length: 1 + ((s * 5) % 23) }, (_, j) => (s * 31 + j * 7 + 1) % vocab);
const tokenOf = (s, step, vocab) => (s * 13 + step * 7 + 3) % vocab;
/** Group n's sequences in a scattered order (37 is prime to 64): rows and slots do not line up. */
const groupSlots = (n) => Array.from({ length: n }, (_, i) => (i * 37 + n) % SEQS);
const rowOf = (logits, i, vocab) => logits.subarray(i * vocab, (i + 1) * vocab);

/**
 * One fixed schedule of steps on a model (slots 0…63 and their twins 64…127). Returns every logits row it
 * produced, labelled, in order (to compare across layouts), and where a batched row differed from the same
 * sequence stepped alone.
 */
function schedule(model) {
  const vocab = model.config.vocabSize;
  const backend = model.backend;
  const rows = [];
  const variant = [];
  const invariant = (label, together, alone) => {
    rows.push([`${label}, alone`, alone]);
    if (!sameBits(together, alone)) variant.push(label);
  };
  // Every sequence and its twin prefilled alone.
  for (let s = 0; s < SEQS; s++) {
    const p = promptOf(s, vocab);
    rows.push([`prefill of sequence ${s} (${p.length} tokens)`, model.forward(p, { slot: s })]);
    rows.push([`prefill of twin ${s}`, model.forward(p, { slot: SEQS + s })]);
  }
  let step = 0;
  for (const n of GROUPS) {
    const slots = groupSlots(n);
    for (let k = 0; k < STEPS_PER_GROUP; k++, step++) {
      const tokens = slots.map((s) => tokenOf(s, step, vocab));
      const together = backend.read(model.step(slots.map((slot, i) => ({ slot, tokens: [tokens[i]] }))));
      assert.equal(together.length, n * vocab, `a step of ${n} sequences returned ${together.length / vocab} rows`);
      slots.forEach((slot, i) => {
        const label = `${n} sequences, step ${k + 1} of ${STEPS_PER_GROUP}: row ${i} (sequence ${slot}, position ${model.length(slot) - 1})`;
        const row = rowOf(together, i, vocab);
        rows.push([label, row]);
        invariant(label, row, backend.read(model.step([{ slot: SEQS + slot, tokens: [tokens[i]] }])));
      });
    }
  }
  // Several prompts in one step (sequences 0…3 and their twins start anew).
  for (const lengths of PREFILL_SETS) {
    const slots = lengths.map((_, i) => i);
    for (const s of slots) {
      model.reset(s);
      model.reset(SEQS + s);
    }
    const prompts = lengths.map((len, i) => Array.from({ length: len }, (_, j) => (i * 29 + j * 11 + len) % vocab));
    const total = lengths.reduce((a, b) => a + b, 0);
    const together = backend.read(model.step(prompts.map((tokens, i) => ({ slot: slots[i], tokens }))));
    assert.equal(together.length, lengths.length * vocab);
    prompts.forEach((p, i) => {
      const label = `prompts of ${lengths.join(" + ")} = ${total} rows in one step: sequence ${i}'s last position`;
      const row = rowOf(together, i, vocab);
      rows.push([label, row]);
      const alone = model.forward(p, { slot: SEQS + slots[i] });
      if (total <= GEMV_MAX_ROWS) invariant(label, row, alone);
      else rows.push([`${label}, prefilled alone`, alone]);
    });
    // Then decode steps of these sequences together (a fresh graph per row count), and each alone.
    for (let k = 0; k < STEPS_PER_GROUP; k++, step++) {
      const tokens = slots.map((s) => tokenOf(s, step, vocab));
      const stepped = backend.read(model.step(slots.map((slot, i) => ({ slot, tokens: [tokens[i]] }))));
      slots.forEach((slot, i) => {
        const label = `after the ${total}-row prefill, ${slots.length} sequences stepped together, step ${k + 1}: row ${i}`;
        rows.push([label, rowOf(stepped, i, vocab)]);
        // Alone, the twin's history differs from the sequence's where its prompt went through another GEMM
        // split; compared across layouts only then.
        const alone = backend.read(model.step([{ slot: SEQS + slot, tokens: [tokens[i]] }]));
        if (total <= GEMV_MAX_ROWS) invariant(label, rowOf(stepped, i, vocab), alone);
        else rows.push([`${label}, alone`, alone]);
      });
    }
  }
  return { rows, variant };
}

/** Checks that would let a degenerate result through the comparisons: non-finite or all-equal logits. */
function assertMeaningful(label, rows) {
  for (const [what, r] of rows) {
    let min = Infinity;
    let max = -Infinity;
    for (const v of r) {
      assert.ok(Number.isFinite(v), `${label}: ${what}: non-finite logit ${v}`);
      if (v < min) min = v;
      if (v > max) max = v;
    }
    assert.ok(max > min, `${label}: ${what}: every logit is ${min}`);
  }
}

async function run(dir, gpuWeights) {
  const backend = await CudaBackend.load(dir, { gpuWeights, slots: 2 * SEQS, maxContext: MAX_CONTEXT });
  const model = new CausalLM(backend.config, backend);
  try {
    assert.equal(model.weights.layout, gpuWeights);
    assert.equal(backend.engineConfig.gemmMinRows, GEMV_MAX_ROWS + 1, "the row counts above assume the default gemmMinRows (65)");
    const fused = gpuWeights === "fused" ? backend.fusedMatrices() : [];
    return { ...schedule(model), kind: model.weights.kind, escapes: fused.reduce((n, m) => n + m.escapes, 0), fusedCols: [...new Set(fused.map((m) => m.cols))] };
  } finally {
    model.dispose();
  }
}

function allModels() {
  const list = models().map((m) => ({ ...m, synthetic: undefined }));
  for (const s of SYNTHETIC) list.push({ name: s.name, synthetic: s });
  return list;
}

for (const m of allModels()) {
  gpuTest(`${m.name}: batched steps of ${GROUPS.join(", ")} sequences and prompts prefilled together — fused layout (DF11) = BF16 layout bit for bit in every row; each sequence's batched logits = its logits stepped alone`, async () => {
    let bf16Dir = m.bf16;
    if (m.synthetic) {
      bf16Dir = join(work, m.name, "bf16");
      await writeSyntheticModel(bf16Dir, m.synthetic.shape, { family: m.synthetic.family, seed: m.synthetic.seed });
    }
    const df11Dir = m.df11 ?? join(work, m.name, "df11");
    if (!m.df11) await compressModel(bf16Dir, df11Dir);

    const bf16 = await run(bf16Dir, "bf16");
    const fused = await run(df11Dir, "fused");
    assert.equal(fused.kind, "df11");
    console.log(`# ${m.name}: ${fused.rows.length} logits rows per layout; fused matrices' K ${fused.fusedCols.join(", ")}, ${fused.escapes} escapes`);
    if (m.synthetic) assert.ok(fused.escapes > 0, "the synthetic model's fused layout has no escapes: the escape path went untested");
    assertMeaningful(`${m.name} bf16`, bf16.rows);
    // The sequences differ, so their rows must too (a step that wrote one row everywhere would not be noticed otherwise).
    const vocab = bf16.rows[0][1].length;
    const lastGroup = bf16.rows.filter(([l]) => l.startsWith(`${SEQS} sequences, step 1 `) && !l.endsWith("alone"));
    assert.equal(lastGroup.length, SEQS);
    assert.ok(new Set(lastGroup.map(([, r]) => Buffer.from(r.buffer, r.byteOffset, vocab * 4).toString("base64"))).size > SEQS / 2, "the rows of a 64-sequence step are mostly equal");

    // (a) fused = BF16, every row of every step.
    assert.equal(fused.rows.length, bf16.rows.length);
    const differ = [];
    fused.rows.forEach(([label, r], i) => {
      assert.equal(label, bf16.rows[i][0], "the two runs followed different schedules");
      if (!sameBits(r, bf16.rows[i][1])) differ.push(label);
    });
    assert.deepEqual(differ.slice(0, 10), [], `${m.name}: ${differ.length} of ${fused.rows.length} fused logits rows differ from the BF16 layout's (first 10 shown)`);
    // (b) batch invariance, in each layout.
    for (const [layout, r] of [["fused", fused], ["bf16", bf16]]) {
      assert.deepEqual(r.variant.slice(0, 10), [], `${m.name} ${layout}: ${r.variant.length} batched rows differ from the same sequence stepped alone (first 10 shown)`);
    }
  });
}
