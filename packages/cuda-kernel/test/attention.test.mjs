// GPU tests of the attention kernels against float64 references on random data: qkvPrepare (q/k head
// norms, RoPE with a full or partial rotary dim, the KV-cache write) and decode attention split over the
// keys (1…64 splits, GQA groups, head sizes with and without a vector path, sliding window, soft-capping),
// plus: a row's result does not depend on the other rows of the step. Skipped, with the reason, without a GPU.
import assert from "node:assert/strict";
import { mulberry32 } from "../../codec/dist/index.js";
import { fromBf16, gpuTest, relError, toBf16 } from "./gpu-helpers.mjs";
import { DeviceBuffer, nativeAddon, synchronize } from "../dist/index.js";


/** A KV cache [slots, KV, maxContext, d] of random BF16 values and the device buffers of one step. */
function setup({ H, KV, d, maxContext, slots, rows, positions, rowSlots, seed }) {
  const rand = mulberry32(seed);
  const size = slots * KV * maxContext * d;
  const keys = Uint16Array.from({ length: size }, () => toBf16(rand() * 2 - 1));
  const values = Uint16Array.from({ length: size }, () => toBf16(rand() * 2 - 1));
  const q = Float32Array.from({ length: rows * H * d }, () => rand() * 2 - 1);
  const bufs = {
    keys: DeviceBuffer.from(keys),
    values: DeviceBuffer.from(values),
    q: DeviceBuffer.from(q),
    positions: DeviceBuffer.from(Int32Array.from(positions)),
    slots: DeviceBuffer.from(Int32Array.from(rowSlots)),
    out: DeviceBuffer.alloc(rows * H * d * 4),
    partial: DeviceBuffer.alloc(rows * H * 64 * (d + 2) * 4),
  };
  return { keys, values, q, bufs };
}

function args(s, { H, KV, d, maxContext, rows, scale, softcap = 0, window = 0 }) {
  const b = s.bufs;
  return { rows, positions: b.positions.address, slots: b.slots.address, numHeads: H, numKvHeads: KV, headDim: d, maxContext, keys: b.keys.address, values: b.values.address, scale, softcap, window };
}

function referenceAttention(s, c) {
  const { H, KV, d, maxContext, rows, positions, rowSlots, scale, softcap = 0, window = 0 } = c;
  const out = new Float64Array(rows * H * d);
  const group = H / KV;
  for (let r = 0; r < rows; r++) {
    const pos = positions[r];
    const first = window > 0 ? Math.max(0, pos - window + 1) : 0;
    for (let h = 0; h < H; h++) {
      const kv = Math.floor(h / group);
      const base = (rowSlots[r] * KV + kv) * maxContext;
      const scores = [];
      for (let j = first; j <= pos; j++) {
        let dot = 0;
        for (let i = 0; i < d; i++) dot += s.q[(r * H + h) * d + i] * fromBf16(s.keys[(base + j) * d + i]);
        dot *= scale;
        if (softcap > 0) dot = Math.tanh(dot / softcap) * softcap;
        scores.push(dot);
      }
      const m = Math.max(...scores);
      const p = scores.map((x) => Math.exp(x - m));
      const l = p.reduce((a, b) => a + b, 0);
      for (let i = 0; i < d; i++) {
        let v = 0;
        for (let jj = 0; jj < p.length; jj++) v += p[jj] * fromBf16(s.values[(base + first + jj) * d + i]);
        out[(r * H + h) * d + i] = v / l;
      }
    }
  }
  return out;
}

function runAttention(s, c, splits) {
  s.bufs.out.fill(0xff); // NaN: every output must be written
  nativeAddon().attention(args(s, c), s.bufs.q.address, s.bufs.out.address, splits, s.bufs.partial.address, undefined);
  synchronize();
  return s.bufs.out.download(new Float32Array(c.rows * c.H * c.d));
}

const dispose = (s) => Object.values(s.bufs).forEach((b) => b.dispose());

gpuTest("attention: 1…64 splits of the keys, GQA groups, head sizes 64/80/128/256, window and soft-cap match float64", () => {
  const cases = [
    { H: 8, KV: 2, d: 128, maxContext: 700, positions: [699, 13, 0], scale: 1 / Math.sqrt(128) },
    { H: 4, KV: 4, d: 64, maxContext: 300, positions: [257, 1], scale: 0.125 },
    { H: 7, KV: 1, d: 80, maxContext: 200, positions: [199, 40], scale: 0.11 }, // group of 7, a head size without a vector path
    { H: 4, KV: 2, d: 256, maxContext: 160, positions: [150], scale: 0.0625, softcap: 50 },
    { H: 8, KV: 4, d: 128, maxContext: 600, positions: [590, 100], scale: 0.088, window: 128 },
  ];
  let seed = 1;
  for (const base of cases) {
    const rows = base.positions.length;
    const c = { ...base, rows, slots: rows, rowSlots: base.positions.map((_, i) => rows - 1 - i) };
    const s = setup({ ...c, seed: seed++ });
    try {
      const expected = referenceAttention(s, c);
      for (const splits of [1, 3, 8, 24, 33, 64]) {
        const got = runAttention(s, c, splits);
        const err = relError(got, expected);
        assert.ok(err < 2e-5, `H=${c.H} KV=${c.KV} d=${c.d} splits=${splits}: relative error ${err}`);
      }
    } finally {
      dispose(s);
    }
  }
});

gpuTest("attention: a row's result is the same bits alone and in a batch (same split count)", () => {
  const c = { H: 8, KV: 2, d: 128, maxContext: 512, positions: [511, 77, 300], scale: 0.088, rows: 3, slots: 3, rowSlots: [2, 0, 1] };
  const s = setup({ ...c, seed: 42 });
  const solo = setup({ ...c, rows: 1, positions: [77], rowSlots: [0], seed: 42 });
  try {
    solo.bufs.q.upload(s.q.subarray(1 * c.H * c.d, 2 * c.H * c.d));
    // The same cache contents in both (same seed, same sizes).
    const batched = runAttention(s, c, 24);
    const alone = runAttention(solo, { ...c, rows: 1 }, 24);
    assert.deepEqual(Array.from(alone), Array.from(batched.subarray(c.H * c.d, 2 * c.H * c.d)));
  } finally {
    dispose(s);
    dispose(solo);
  }
});

gpuTest("qkvPrepare: q/k RMS norms, RoPE (full and partial rotary dims) and the KV-cache write match float64", () => {
  for (const { H, KV, d, rotaryDim, positions, withNorm } of [
    { H: 8, KV: 2, d: 128, rotaryDim: 128, positions: [5, 700], withNorm: false },
    { H: 6, KV: 3, d: 80, rotaryDim: 40, positions: [33], withNorm: true },
    { H: 4, KV: 4, d: 256, rotaryDim: 256, positions: [40000], withNorm: true },
  ]) {
    const rows = positions.length;
    const maxContext = Math.max(...positions) + 1;
    const rand = mulberry32(d + rotaryDim);
    const width = (H + 2 * KV) * d;
    const qkv = Float32Array.from({ length: rows * width }, () => rand() * 4 - 2);
    const invFreq = Float32Array.from({ length: rotaryDim / 2 }, (_, j) => Math.fround(1 / 10000 ** ((2 * j) / rotaryDim)));
    const qNorm = Float32Array.from({ length: d }, () => rand() + 0.5);
    const kNorm = Float32Array.from({ length: d }, () => rand() + 0.5);
    const eps = 1e-6;
    const cacheSize = rows * KV * maxContext * d;
    const bufs = [
      DeviceBuffer.from(qkv),
      DeviceBuffer.from(invFreq),
      DeviceBuffer.from(qNorm),
      DeviceBuffer.from(kNorm),
      DeviceBuffer.alloc(rows * H * d * 4),
      DeviceBuffer.alloc(cacheSize * 2),
      DeviceBuffer.alloc(cacheSize * 2),
      DeviceBuffer.from(Int32Array.from(positions)),
      DeviceBuffer.from(Int32Array.from(positions.map((_, i) => i))),
    ];
    const [dqkv, dinv, dqn, dkn, dq, dk, dv, dpos, dslots] = bufs;
    try {
      const a = { rows, positions: dpos.address, slots: dslots.address, numHeads: H, numKvHeads: KV, headDim: d, maxContext, keys: dk.address, values: dv.address, scale: 1, softcap: 0, window: 0 };
      nativeAddon().qkvPrepare(a, dqkv.address, withNorm ? dqn.address : 0, withNorm ? dkn.address : 0, eps, false, dinv.address, rotaryDim, dq.address, undefined);
      synchronize();
      const q = dq.download(new Float32Array(rows * H * d));
      const keys = dk.download(new Uint16Array(cacheSize));
      const values = dv.download(new Uint16Array(cacheSize));
      const expectQ = new Float64Array(rows * H * d);
      const gotK = [];
      const expectK = [];
      for (let r = 0; r < rows; r++) {
        for (let h = 0; h < H + KV; h++) {
          const src = Array.from(qkv.subarray(r * width + h * d, r * width + (h + 1) * d));
          let x = src;
          if (withNorm) {
            const inv = 1 / Math.sqrt(src.reduce((s, v) => s + v * v, 0) / d + eps);
            const w = h < H ? qNorm : kNorm;
            x = src.map((v, i) => v * inv * w[i]);
          }
          const half = rotaryDim / 2;
          const y = x.map((v, i) => {
            if (i >= rotaryDim) return v;
            const j = i < half ? i : i - half;
            const angle = Math.fround(positions[r] * invFreq[j]);
            return i < half ? v * Math.cos(angle) - x[i + half] * Math.sin(angle) : v * Math.cos(angle) + x[j] * Math.sin(angle);
          });
          if (h < H) expectQ.set(y, (r * H + h) * d);
          else {
            const at = ((r * KV + (h - H)) * maxContext + positions[r]) * d;
            for (let i = 0; i < d; i++) {
              gotK.push(fromBf16(keys[at + i]));
              expectK.push(y[i]);
              // Values are copied, rounded to BF16 once.
              assert.equal(values[at + i], toBf16(qkv[r * width + (H + KV + h - H) * d + i]), `value ${i} of kv head ${h - H}`);
            }
          }
        }
      }
      const errQ = relError(q, expectQ);
      const errK = relError(Float64Array.from(gotK), expectK);
      assert.ok(errQ < 1e-6, `q: relative error ${errQ} (d=${d}, rotary ${rotaryDim})`);
      assert.ok(errK < 4e-3, `k (BF16 in the cache): relative error ${errK}`);
    } finally {
      for (const b of bufs) b.dispose();
    }
  }
});
