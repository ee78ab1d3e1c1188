// GPU tests of the tensor-core prefill attention (csrc/kernels/attention-prefill.cu) on random data: every row
// one sequence's, at consecutive positions (a prompt chunk from position 0, or a later chunk whose keys include
// earlier cached positions), against a float64 reference and against the warp-per-row kernel on the same inputs.
// Head sizes 16…256, GQA groups 1/2/4/7, sliding windows, soft-capping, rows that are not multiples of the
// 64-row tile, chunks starting inside a key tile. The cache past the last row's position holds NaN: a kernel
// that read it would write NaN. Skipped, with the reason, without a GPU.
//
// Tolerance: the kernel rounds Q and the softmax weights P to BF16 for the tensor cores (as transformers' BF16
// attention does), a relative error of up to 2^-9 per operand; over a row that averages to ~2e-3 relative L2
// error against float64 (a CPU emulation of the kernel's arithmetic measured 1.5e-3…2.2e-3 on these shapes).
// The bound is 6e-3, against float64 and against the warp-per-row kernel (float32 Q and P).
import assert from "node:assert/strict";
import { mulberry32 } from "../../codec/dist/index.js";
import { join } from "node:path";
import { CausalLM } from "../../models/dist/index.js";
import { fromBf16, gpuTest, relError, toBf16 } from "./gpu-helpers.mjs";
import { logitsBothWays, REL_TOLERANCE, repo } from "./reference-models.mjs";
import { CudaBackend, DeviceBuffer, nativeAddon, synchronize } from "../dist/index.js";

const TOLERANCE = 6e-3;
const NAN_BF16 = 0x7fc0;


/**
 * Two KV-cache slots of random BF16 values; the step's rows are slot `slot`'s at firstPosition…firstPosition + rows − 1,
 * and the cache past the last of them holds NaN.
 */
function setup({ H, KV, d, rows, firstPosition, slot = 1, seed }) {
  const slots = 2;
  const maxContext = firstPosition + rows + 5;
  const rand = mulberry32(seed);
  const size = slots * KV * maxContext * d;
  const keys = Uint16Array.from({ length: size }, () => toBf16(rand() * 4 - 2));
  const values = Uint16Array.from({ length: size }, () => toBf16(rand() * 2 - 1));
  const last = firstPosition + rows - 1;
  for (let kv = 0; kv < KV; kv++)
    for (let j = last + 1; j < maxContext; j++) {
      const at = ((slot * KV + kv) * maxContext + j) * d;
      keys.fill(NAN_BF16, at, at + d);
      values.fill(NAN_BF16, at, at + d);
    }
  const q = Float32Array.from({ length: rows * H * d }, () => rand() * 2 - 1);
  const positions = Int32Array.from({ length: rows }, (_, i) => firstPosition + i);
  const bufs = {
    keys: DeviceBuffer.from(keys),
    values: DeviceBuffer.from(values),
    q: DeviceBuffer.from(q),
    positions: DeviceBuffer.from(positions),
    slots: DeviceBuffer.from(new Int32Array(rows).fill(slot)),
    out: DeviceBuffer.alloc(rows * H * d * 4),
  };
  return { keys, values, q, bufs, maxContext, slot, firstPosition };
}

function args(s, { H, KV, d, rows, scale, softcap = 0, window = 0 }) {
  const b = s.bufs;
  return { rows, positions: b.positions.address, slots: b.slots.address, numHeads: H, numKvHeads: KV, headDim: d, maxContext: s.maxContext, keys: b.keys.address, values: b.values.address, scale, softcap, window };
}

function referenceAttention(s, { H, KV, d, rows, scale, softcap = 0, window = 0 }) {
  const out = new Float64Array(rows * H * d);
  const group = H / KV;
  const keys = Float64Array.from(s.keys, fromBf16);
  const values = Float64Array.from(s.values, fromBf16);
  const acc = new Float64Array(d);
  for (let r = 0; r < rows; r++) {
    const pos = s.firstPosition + r;
    const first = window > 0 ? Math.max(0, pos - window + 1) : 0;
    for (let h = 0; h < H; h++) {
      const base = (s.slot * KV + Math.floor(h / group)) * s.maxContext;
      const qh = s.q.subarray((r * H + h) * d, (r * H + h + 1) * d);
      const scores = new Float64Array(pos - first + 1);
      let m = -Infinity;
      for (let j = first; j <= pos; j++) {
        let dot = 0;
        for (let i = 0, at = (base + j) * d; i < d; i++) dot += qh[i] * keys[at + i];
        dot *= scale;
        if (softcap > 0) dot = Math.tanh(dot / softcap) * softcap;
        scores[j - first] = dot;
        if (dot > m) m = dot;
      }
      let l = 0;
      acc.fill(0);
      for (let j = first; j <= pos; j++) {
        const p = Math.exp(scores[j - first] - m);
        l += p;
        for (let i = 0, at = (base + j) * d; i < d; i++) acc[i] += p * values[at + i];
      }
      for (let i = 0; i < d; i++) out[(r * H + h) * d + i] = acc[i] / l;
    }
  }
  return out;
}

function runPrefill(s, c) {
  s.bufs.out.fill(0xff); // NaN: every output must be written
  const ran = nativeAddon().prefillAttention(args(s, c), s.slot, s.firstPosition, s.bufs.q.address, s.bufs.out.address, undefined);
  synchronize();
  return { ran, out: s.bufs.out.download(new Float32Array(c.rows * c.H * c.d)) };
}

function runWarpKernel(s, c) {
  s.bufs.out.fill(0xff);
  nativeAddon().attention(args(s, c), s.bufs.q.address, s.bufs.out.address, 1, 0, undefined);
  synchronize();
  return s.bufs.out.download(new Float32Array(c.rows * c.H * c.d));
}

const dispose = (s) => Object.values(s.bufs).forEach((b) => b.dispose());

const CASES = [
  { H: 8, KV: 2, d: 128, rows: 512, firstPosition: 0 }, // Llama-3.1-8B's head shape (GQA 4), a whole 512-row chunk
  { H: 4, KV: 4, d: 64, rows: 65, firstPosition: 0 }, // one row past a tile
  { H: 7, KV: 1, d: 80, rows: 100, firstPosition: 37 }, // group of 7; a later chunk starting inside a key tile
  { H: 4, KV: 1, d: 96, rows: 129, firstPosition: 64 }, // starts on a tile boundary
  { H: 8, KV: 2, d: 128, rows: 200, firstPosition: 300 }, // a second chunk: 300 earlier cached keys
  { H: 4, KV: 2, d: 256, rows: 97, firstPosition: 5, softcap: 50 }, // gemma2-style soft-capping, 32-key tiles
  { H: 8, KV: 2, d: 64, rows: 150, firstPosition: 20, window: 40 }, // sliding window inside the chunk
  { H: 4, KV: 1, d: 128, rows: 190, firstPosition: 1000, window: 64, softcap: 30 }, // window far from position 0
  { H: 2, KV: 2, d: 256, rows: 70, firstPosition: 100, window: 33 },
  { H: 4, KV: 2, d: 16, rows: 90, firstPosition: 0, window: 8, softcap: 50 }, // the tiny reference models' shape
  { H: 2, KV: 1, d: 32, rows: 600, firstPosition: 0 },
  { H: 4, KV: 1, d: 128, rows: 33, firstPosition: 7 }, // fewer rows than a tile (the backend sends these to the warp kernel; the kernel takes them)
];

gpuTest("prefill attention (tensor cores): head sizes 16…256, GQA 1/2/4/7, window, soft-cap, later chunks — within 6e-3 of float64 and of the warp-per-row kernel", () => {
  let seed = 11;
  for (const base of CASES) {
    const c = { ...base, scale: 1 / Math.sqrt(base.d) };
    const s = setup({ ...c, seed: seed++ });
    const label = `H=${c.H} KV=${c.KV} d=${c.d} rows=${c.rows} first=${c.firstPosition} window=${c.window ?? 0} softcap=${c.softcap ?? 0}`;
    try {
      const { ran, out } = runPrefill(s, c);
      assert.ok(ran, `${label}: the kernel declined`);
      const expected = referenceAttention(s, c);
      const err = relError(out, expected);
      const warp = runWarpKernel(s, c);
      const errWarp = relError(out, warp);
      console.log(`# ${label}: relative L2 error ${err.toExponential(2)} vs float64, ${errWarp.toExponential(2)} vs the warp kernel (warp kernel vs float64 ${relError(warp, expected).toExponential(2)})`);
      assert.ok(err < TOLERANCE, `${label}: relative error ${err} vs float64`);
      assert.ok(errWarp < TOLERANCE, `${label}: relative error ${errWarp} vs the warp-per-row kernel`);
      // Deterministic: the same bits again.
      assert.deepEqual(runPrefill(s, c).out, out, `${label}: a second run differs`);
    } finally {
      dispose(s);
    }
  }
});

gpuTest("prefill attention: each row is right at every position of a chunk (max error per row, rows crossing 64-row and key-tile boundaries)", () => {
  const c = { H: 4, KV: 1, d: 128, rows: 257, firstPosition: 129, scale: 0.09 };
  const s = setup({ ...c, seed: 5 });
  try {
    const { out } = runPrefill(s, c);
    const expected = referenceAttention(s, c);
    const width = c.H * c.d;
    for (let r = 0; r < c.rows; r++) {
      const err = relError(out.subarray(r * width, (r + 1) * width), expected.subarray(r * width, (r + 1) * width));
      assert.ok(err < 2 * TOLERANCE, `row ${r} (position ${c.firstPosition + r}): relative error ${err}`);
    }
  } finally {
    dispose(s);
  }
});

gpuTest("prefill attention: head sizes it does not take return false and write nothing (the caller falls back)", () => {
  for (const d of [48, 72, 160]) {
    const c = { H: 2, KV: 1, d, rows: 70, firstPosition: 0, scale: 0.1 };
    const s = setup({ ...c, seed: d });
    try {
      const { ran, out } = runPrefill(s, c);
      assert.equal(ran, false, `d=${d}`);
      assert.ok(out.every(Number.isNaN), `d=${d}: the output was written`);
    } finally {
      dispose(s);
    }
  }
});

gpuTest("prefill attention: rows past maxContext are refused", () => {
  const c = { H: 2, KV: 1, d: 64, rows: 70, firstPosition: 0, scale: 0.1 };
  const s = setup({ ...c, seed: 3 });
  try {
    assert.throws(() => nativeAddon().prefillAttention(args(s, c), s.slot, s.maxContext - 10, s.bufs.q.address, s.bufs.out.address, undefined));
  } finally {
    dispose(s);
  }
});

gpuTest("prefill attention in a model: a 150-token prompt in steps of 80 + 70 rows (tensor-core attention) gives the logits of one-token steps (warp kernel)", async () => {
  // gemma2-tiny: head size 16, sliding window 8 and soft-capping; qwen2-tiny: full attention.
  for (const name of ["gemma2-tiny", "qwen2-tiny"]) {
    const backend = await CudaBackend.load(join(repo, "test-support", "reference-models", name, "bf16"), { maxContext: 192, maxRows: 80, gpuWeights: "bf16" });
    const model = new CausalLM(backend.config, backend);
    try {
      const ids = Array.from({ length: 150 }, (_, j) => (j * 53 + 7) % 256);
      const { prefill, stepwise } = logitsBothWays(model, ids);
      const err = relError(prefill, stepwise);
      console.log(`# ${name}: prefill vs one-token steps, relative L2 error ${err.toExponential(2)}`);
      assert.ok(err < REL_TOLERANCE, `${name}: ${err}`);
    } finally {
      model.dispose();
    }
  }
});
