// GPU tests of the NCCL binding (NcclClique): all-reduce, all-gather and broadcast over every GPU of the
// host, run directly and replayed from CUDA graphs. Skipped, each with the reason, without two GPUs or
// without NCCL (the single-rank test needs one GPU). Checked against sums computed here: float32 sums of
// integers below 2^24 are exact whatever order NCCL adds in.
import assert from "node:assert/strict";
import { test } from "node:test";
import { gpuUnavailableReason } from "./gpu-helpers.mjs";
import { CudaEvent, CudaStream, DeviceBuffer, NcclClique, currentDevice, deviceCount, loadNccl, setDevice, withDevice } from "../dist/index.js";

const gpus = gpuUnavailableReason ? 0 : deviceCount();
let ncclReason;
if (!gpuUnavailableReason) {
  try {
    const lib = loadNccl();
    console.log(`# NCCL ${lib.version} from ${lib.path}; ${gpus} GPU(s); NCCL_NVLS_ENABLE=${process.env.NCCL_NVLS_ENABLE ?? "(unset: the clique sets 0)"}`);
  } catch (e) {
    ncclReason = `NCCL unavailable: ${e.message}`;
  }
}
const skipFor = (minGpus) => gpuUnavailableReason ? `no GPU: ${gpuUnavailableReason}` : gpus < minGpus ? `needs ${minGpus} GPUs, this host has ${gpus}` : ncclReason ?? false;

/** Run `fn` with a clique on `devices`, destroyed afterwards (Node 20 has no `using`). */
function withClique(devices, fn) {
  const clique = NcclClique.create(devices);
  try {
    return fn(clique);
  } finally {
    clique.dispose();
  }
}

const ALL = Array.from({ length: gpus }, (_, i) => i);
const COUNT = (1 << 20) + 3; // odd, and large enough for NCCL to use several channels

/** Rank r's input: integers (exact in float32 and in their sums). */
const inputOf = (r, n = COUNT) => Float32Array.from({ length: n }, (_, i) => ((i * 7 + r * 13) % 1000) - 500 + r);

/** Per device: a buffer of `bytes` and a stream, made with that device current. */
function perDevice(devices, bytes) {
  return devices.map((d) => withDevice(d, () => ({ device: d, buffer: DeviceBuffer.alloc(bytes), stream: new CudaStream() })));
}
function disposeAll(ranks) {
  for (const r of ranks) withDevice(r.device, () => (r.buffer.dispose(), r.stream.dispose()));
}
// Host copies go through the rank's own stream: the collectives run on non-blocking streams, which do
// not wait for work on the legacy default stream (plain cudaMemcpy / cudaMemset).
const upload = (r, data, byteOffset = 0) => withDevice(r.device, () => r.buffer.upload(data, byteOffset, r.stream));
const download = (r, n, Type = Float32Array) => withDevice(r.device, () => r.buffer.download(new Type(n), 0, r.stream));

function assertArrayEqual(got, expected, what) {
  const bad = got.findIndex((v, i) => v !== expected[i]);
  assert.equal(bad, -1, `${what}: first mismatch at ${bad}: got ${got[bad]}, expected ${expected[bad]}`);
}

test("single-rank clique: create, all-reduce is the identity, version, dispose", { skip: skipFor(1) }, () =>
  withClique([0], (clique) => {
    assert.match(clique.version, /^\d+\.\d+\.\d+$/);
    assert.equal(clique.size, 1);
    const [r] = perDevice([0], COUNT * 4);
    try {
      const x = inputOf(0);
      upload(r, x);
      clique.allReduce([{ device: 0, address: r.buffer.address, count: COUNT }], "float32", "sum", [r.stream]);
      r.stream.synchronize();
      assertArrayEqual(download(r, COUNT), x, "1-rank all-reduce");
    } finally {
      disposeAll([r]);
    }
  }));

test("all-reduce over every GPU: float32 sum (exact on integers), int32 max, bfloat16 sum, in and out of place", { skip: skipFor(2) }, () =>
  withClique(ALL, (clique) => {
    console.log(`# clique of ${clique.size} GPUs, NCCL ${clique.version}`);
    const ranks = perDevice(ALL, COUNT * 4);
    const out = perDevice(ALL, COUNT * 4);
    try {
      const inputs = ALL.map((r) => inputOf(r));
      const sum = inputs[0].map((_, i) => inputs.reduce((s, x) => s + x[i], 0));
      ranks.forEach((r, i) => upload(r, inputs[i]));
      // out of place: inputs stay, results land in `out`
      clique.allReduce(ranks.map((r, i) => ({ device: r.device, address: out[i].buffer.address, source: r.buffer.address, count: COUNT })), "float32", "sum", ranks.map((r) => r.stream));
      ranks.forEach((r) => r.stream.synchronize());
      out.forEach((o, i) => assertArrayEqual(download(o, COUNT), sum, `rank ${i} out-of-place sum`));
      ranks.forEach((r, i) => assertArrayEqual(download(r, COUNT), inputs[i], `rank ${i} input left as it was`));
      // in place
      clique.allReduce(ranks.map((r) => ({ device: r.device, address: r.buffer.address, count: COUNT })), "float32", "sum", ranks.map((r) => r.stream));
      ranks.forEach((r) => r.stream.synchronize());
      ranks.forEach((r, i) => assertArrayEqual(download(r, COUNT), sum, `rank ${i} in-place sum`));

      // int32 max
      const ints = ALL.map((r) => Int32Array.from({ length: COUNT }, (_, i) => ((i * 2654435761) ^ (r * 40503)) | 0));
      ranks.forEach((r, i) => upload(r, ints[i]));
      clique.allReduce(ranks.map((r) => ({ device: r.device, address: r.buffer.address, count: COUNT })), "int32", "max", ranks.map((r) => r.stream));
      ranks.forEach((r) => r.stream.synchronize());
      const max = ints[0].map((_, i) => Math.max(...ints.map((x) => x[i])));
      ranks.forEach((r, i) => assert.deepEqual(download(r, COUNT, Int32Array), max, `rank ${i} int32 max`));

      // bfloat16 sum of small integers (exact: every partial sum stays below 256)
      const bf = ALL.map((r) => Uint16Array.from({ length: COUNT }, (_, i) => new Uint32Array(Float32Array.of((i + r) % 32).buffer)[0] >>> 16));
      ranks.forEach((r, i) => upload(r, bf[i]));
      clique.allReduce(ranks.map((r) => ({ device: r.device, address: r.buffer.address, count: COUNT })), "bfloat16", "sum", ranks.map((r) => r.stream));
      ranks.forEach((r) => r.stream.synchronize());
      const bfSum = Float32Array.from({ length: COUNT }, (_, i) => ALL.reduce((s, r) => s + ((i + r) % 32), 0));
      ranks.forEach((r, i) => {
        const got = download(r, COUNT, Uint16Array);
        assertArrayEqual(new Float32Array(Uint32Array.from(got, (b) => b << 16).buffer), bfSum, `rank ${i} bfloat16 sum`);
      });
    } finally {
      disposeAll(ranks);
      disposeAll(out);
    }
  }));

test("all-gather (in place and out of place) and broadcast over every GPU", { skip: skipFor(2) }, () =>
  withClique(ALL, (clique) => {
    const W = ALL.length;
    const n = 4099;
    const ranks = perDevice(ALL, W * n * 4);
    const src = perDevice(ALL, n * 4);
    try {
      const parts = ALL.map((r) => inputOf(r, n));
      const gathered = new Float32Array(W * n);
      parts.forEach((p, r) => gathered.set(p, r * n));
      // in place: rank r's part already sits at element r*n of its result
      ranks.forEach((r, i) => (upload(r, new Float32Array(W * n).fill(NaN)), upload(r, parts[i], i * n * 4)));
      clique.allGather(ranks.map((r) => ({ device: r.device, address: r.buffer.address, count: n })), "float32", ranks.map((r) => r.stream));
      ranks.forEach((r) => r.stream.synchronize());
      ranks.forEach((r, i) => assertArrayEqual(download(r, W * n), gathered, `rank ${i} in-place all-gather`));
      // out of place
      // the gather runs on ranks[i].stream: its inputs are uploaded there too
      src.forEach((s, i) => upload({ ...s, stream: ranks[i].stream }, parts[i]));
      ranks.forEach((r) => upload(r, new Float32Array(W * n)));
      clique.allGather(ranks.map((r, i) => ({ device: r.device, address: r.buffer.address, source: src[i].buffer.address, count: n })), "float32", ranks.map((r) => r.stream));
      ranks.forEach((r) => r.stream.synchronize());
      ranks.forEach((r, i) => assertArrayEqual(download(r, W * n), gathered, `rank ${i} out-of-place all-gather`));
      // broadcast from the last rank
      src.forEach((s, i) => upload(s, parts[i]));
      clique.broadcast(src.map((s) => ({ device: s.device, address: s.buffer.address, count: n })), "float32", W - 1, src.map((s) => s.stream));
      src.forEach((s) => s.stream.synchronize());
      src.forEach((s, i) => assertArrayEqual(download(s, n), parts[W - 1], `rank ${i} broadcast`));
    } finally {
      disposeAll(ranks);
      disposeAll(src);
    }
  }));

// One graph per device does not work for collectives over several devices (cudaGraphInstantiate:
// cudaErrorStreamCaptureUnsupported, seen on two H200s with NCCL 2.28): record one graph spanning them.
test("collectives recorded in one graph spanning every device (streams forked and joined with events)", { skip: skipFor(2) }, () =>
  withClique(ALL, (clique) => {
    const n = 8191;
    const ranks = perDevice(ALL, n * 4);
    const events = ALL.map((d) => withDevice(d, () => new CudaEvent({ timing: false })));
    let graph;
    try {
      const [first, ...others] = ranks;
      withDevice(first.device, () => first.stream.beginCapture());
      events[0].record(first.stream);
      others.forEach((r) => r.stream.waitEvent(events[0])); // joins the capture of first.stream
      clique.allReduce(ranks.map((r) => ({ device: r.device, address: r.buffer.address, count: n })), "float32", "sum", ranks.map((r) => r.stream));
      others.forEach((r, i) => withDevice(r.device, () => (events[i + 1].record(r.stream), first.stream.waitEvent(events[i + 1]))));
      graph = withDevice(first.device, () => first.stream.endCapture());
      for (let round = 0; round < 2; round++) {
        const inputs = ALL.map((r) => inputOf(r + round, n));
        ranks.forEach((r, i) => upload(r, inputs[i]));
        ranks.forEach((r) => r.stream.synchronize()); // the graph runs on the first stream only
        withDevice(first.device, () => graph.launch(first.stream));
        first.stream.synchronize();
        const sum = inputs[0].map((_, i) => inputs.reduce((s, x) => s + x[i], 0));
        ranks.forEach((r, i) => assertArrayEqual(download(r, n), sum, `round ${round}, rank ${i}: multi-device graph all-reduce`));
      }
    } finally {
      graph?.dispose();
      events.forEach((e, i) => withDevice(ALL[i], () => e.dispose()));
      disposeAll(ranks);
    }
  }));

test("the caller's current device is kept across create, collectives and dispose (NCCL sets devices of its own)", { skip: skipFor(2) }, () => {
  for (const current of [ALL[ALL.length - 1], ALL[0]]) {
    setDevice(current);
    const clique = NcclClique.create(ALL);
    assert.equal(currentDevice(), current, "after create");
    const ranks = perDevice(ALL, 1024 * 4);
    try {
      clique.allReduce(ranks.map((r) => ({ device: r.device, address: r.buffer.address, count: 1024 })), "float32", "sum", ranks.map((r) => r.stream));
      assert.equal(currentDevice(), current, "after a collective");
      ranks.forEach((r) => r.stream.synchronize());
    } finally {
      disposeAll(ranks);
      clique.dispose();
    }
    assert.equal(currentDevice(), current, "after dispose");
  }
  setDevice(0);
});

test("bad arguments are refused with the rank and field named", { skip: skipFor(2) }, () =>
  withClique(ALL, (clique) => {
    const ranks = perDevice(ALL, 64);
    try {
      const bufs = ranks.map((r) => ({ device: r.device, address: r.buffer.address, count: 16 }));
      const streams = ranks.map((r) => r.stream);
      assert.throws(() => clique.allReduce(bufs.slice(1), "float32", "sum", streams), /buffers for \d+ ranks/);
      assert.throws(() => clique.allReduce([{ ...bufs[0], device: ALL[1] }, ...bufs.slice(1)], "float32", "sum", streams), /buffers\[0\]\.device is 1, but rank 0 of this clique is device 0/);
      assert.throws(() => clique.allReduce([bufs[0], { ...bufs[1], count: 8 }, ...bufs.slice(2)], "float32", "sum", streams), /buffers\[1\]\.count is 8/);
      assert.throws(() => NcclClique.create([0, 0]), /lists a device twice/);
      assert.throws(() => NcclClique.create([gpus]), /does not exist/);
    } finally {
      disposeAll(ranks);
    }
  }));
