// DeviceHeap (CUDA virtual memory management): its allocations hold data through every kind of copy, memset and a kernel,
// are aligned and apart; it maps memory in granules and takes from the device what it hands out plus less than a granule
// (cudaMalloc rounds mid-sized allocations to 2 MiB pages); it grows past its first reservation; allocationStats counts it;
// dispose returns the memory. Skipped, with the reason, without a GPU (one test checks what happens then). The memory figures are
// cudaMemGetInfo's, device-wide: run this file while no other process allocates on the GPU (scripts/gpu/all.sh runs it alone).
import assert from "node:assert/strict";
import { test } from "node:test";
import { gpuTest, gpuUnavailableReason, toBf16 } from "./gpu-helpers.mjs";
import {
  allocationStats,
  CudaError,
  CudaStream,
  CudaUnavailableError,
  DeviceBuffer,
  DeviceHeap,
  DisposedError,
  memoryInfo,
  nativeAddon,
  OutOfDeviceMemoryError,
  PinnedBuffer,
  resetPeakAllocation,
  synchronize,
} from "../dist/index.js";

const MiB = 1 << 20;
const roundUp = (n, step) => Math.ceil(n / step) * step;

/** `n` bytes of a pattern that differs per seed (xorshift32). */
function pattern(n, seed) {
  const out = new Uint8Array(n);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Asserts the byte ranges [address, address + bytes) are pairwise apart. */
function assertApart(allocations) {
  const sorted = [...allocations].sort((a, b) => a.address - b.address);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1];
    assert.ok(prev.address + prev.bytes <= sorted[i].address, `allocations overlap: [${prev.address}, +${prev.bytes}) and ${sorted[i].address}`);
  }
}

/** Asserts what the heap maps: whole granules, at least what it handed out, less than a granule per range over it. */
function assertMapping(heap, ranges = 1) {
  const g = heap.granularity;
  assert.equal(heap.mappedBytes % g, 0, `mappedBytes ${heap.mappedBytes} is not a multiple of the granularity ${g}`);
  assert.ok(heap.mappedBytes >= heap.usedBytes, `mapped ${heap.mappedBytes} < used ${heap.usedBytes}`);
  assert.ok(heap.mappedBytes < heap.usedBytes + ranges * g, `mapped ${heap.mappedBytes} ≥ used ${heap.usedBytes} + ${ranges} granule(s) of ${g}`);
}

/** Copies host ↔ device through pinned memory on a stream (cudaMemcpyAsync H2D from pinned, D2H to pinned). */
class Pinned {
  constructor(bytes) {
    this.buffer = PinnedBuffer.alloc(bytes);
    this.stream = new CudaStream();
  }
  write(address, data) {
    this.buffer.bytes.set(data);
    this.buffer.copyToDevice(address, 0, data.length, this.stream);
    this.stream.synchronize();
  }
  read(address, bytes) {
    this.buffer.copyFromDevice(0, address, bytes, this.stream);
    this.stream.synchronize();
    return this.buffer.bytes.slice(0, bytes);
  }
  dispose() {
    this.buffer.dispose();
    this.stream.dispose();
  }
}

test("without a GPU: supported() is false, create() throws CudaUnavailableError", { skip: gpuUnavailableReason ? false : "a GPU is present" }, () => {
  assert.equal(DeviceHeap.supported(), false);
  assert.throws(() => DeviceHeap.create(MiB), CudaUnavailableError);
});

gpuTest("DeviceHeap: supported on this GPU; creating one reserves addresses and maps nothing", () => {
  assert.equal(DeviceHeap.supported(), true);
  const before = allocationStats().allocated;
  const heap = DeviceHeap.create(100 * MiB + 1);
  try {
    const g = heap.granularity;
    console.log(`# allocation granularity: ${g} bytes`);
    assert.ok(g > 0 && (g & (g - 1)) === 0, `granularity ${g} is not a power of two`);
    assert.equal(heap.reservedBytes, roundUp(100 * MiB + 1, g));
    assert.equal(heap.mappedBytes, 0);
    assert.equal(heap.usedBytes, 0);
    assert.equal(allocationStats().allocated, before);
    assert.equal(heap.alloc(0), 0);
    assert.equal(heap.mappedBytes, 0);
    assert.throws(() => heap.alloc(-1), RangeError);
    assert.throws(() => heap.alloc(1.5), RangeError);
    assert.throws(() => heap.alloc(16, 3), RangeError);
    assert.throws(() => heap.alloc(16, 0), RangeError);
  } finally {
    heap.dispose();
  }
  assert.throws(() => DeviceHeap.create(0), RangeError);
});

gpuTest("allocations hold data (pinned H2D and D2H, pageable via D2D, cudaMemset, a kernel), aligned and apart", () => {
  const heap = DeviceHeap.create(64 * MiB);
  const io = new Pinned(8 * MiB);
  const buffer = DeviceBuffer.alloc(8 * MiB);
  const addon = nativeAddon();
  try {
    const asks = [
      [1, 1],
      [255, 256],
      [4096, 4096],
      [3 * MiB + 4096, undefined],
      [7, 8],
      [5 * MiB + 1, 65536],
      [1000, 512],
      [2 * MiB, 2 * MiB],
      [123457, 16],
    ];
    const allocations = asks.map(([bytes, alignment], i) => {
      const address = heap.alloc(bytes, alignment);
      assert.equal(address % (alignment ?? 256), 0, `allocation ${i} at ${address} is not aligned to ${alignment ?? 256}`);
      assertMapping(heap);
      return { address, bytes, data: pattern(bytes, i + 1) };
    });
    assertApart(allocations);
    // Every allocation written, then every one read back: a write into another's bytes would show.
    for (const a of allocations) io.write(a.address, a.data);
    for (const [i, a] of allocations.entries()) assert.deepEqual(io.read(a.address, a.bytes), a.data, `allocation ${i} (${a.bytes} bytes) read back differently`);

    // Device to device both ways, through a DeviceBuffer that is filled and read from pageable memory.
    const big = allocations[5];
    addon.copyAddress(buffer.address, big.address, big.bytes);
    synchronize();
    assert.deepEqual(buffer.download(new Uint8Array(big.bytes)), big.data);
    const other = pattern(big.bytes, 99);
    buffer.upload(other);
    addon.copyAddress(big.address, buffer.address, big.bytes);
    synchronize();
    assert.deepEqual(io.read(big.address, big.bytes), other);
    // Heap to heap.
    const [src, dst] = [allocations[3], allocations[5]];
    addon.copyAddress(dst.address, src.address, src.bytes);
    synchronize();
    assert.deepEqual(io.read(dst.address, src.bytes), src.data);

    // cudaMemset (fillAddress, where this addon has it).
    if (typeof addon.fillAddress === "function") {
      addon.fillAddress(src.address, 0xab, src.bytes, io.stream.native);
      io.stream.synchronize();
      assert.ok(io.read(src.address, src.bytes).every((b) => b === 0xab), "cudaMemset did not set every byte");
    } else console.log("# this addon has no fillAddress: cudaMemset on heap memory not exercised");

    // A kernel reading and writing heap memory: float32 → BF16.
    const n = 1 << 18;
    const x = heap.alloc(n * 4);
    const y = heap.alloc(n * 2);
    assertMapping(heap);
    const values = Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 1000);
    io.write(x, new Uint8Array(values.buffer));
    addon.toBf16(x, n, y, io.stream.native);
    io.stream.synchronize();
    const got = new Uint16Array(io.read(y, n * 2).buffer);
    const bad = got.findIndex((v, i) => v !== toBf16(values[i]));
    assert.equal(bad, -1, `toBf16 into heap memory: element ${bad} is ${got[bad]?.toString(16)}, expected ${toBf16(values[bad] ?? 0).toString(16)}`);
  } finally {
    heap.dispose();
    io.dispose();
    buffer.dispose();
  }
});

gpuTest("300 × (3 MiB + 4 KiB): the device gives what is handed out plus little (< 4 %; cudaMalloc wastes ≥ 4× more on 2 MiB pages)", () => {
  const count = 300;
  const bytes = 3 * MiB + 4096;
  {
    const warm = DeviceHeap.create(MiB); // the first use of the driver's VMM calls is not what is measured
    warm.alloc(1);
    warm.dispose();
  }
  synchronize();
  const free0 = memoryInfo().free;
  const allocated0 = allocationStats().allocated;
  const heap = DeviceHeap.create(2048 * MiB);
  const io = new Pinned(bytes);
  let heapTaken;
  try {
    const g = heap.granularity;
    const start = performance.now();
    const allocations = [];
    let mapped = 0;
    for (let i = 0; i < count; i++) {
      allocations.push({ address: heap.alloc(bytes), bytes });
      assert.equal((heap.mappedBytes - mapped) % g, 0, "the heap grew by something other than whole granules");
      mapped = heap.mappedBytes;
      assertMapping(heap);
    }
    const ms = performance.now() - start;
    assertApart(allocations);
    assert.equal(heap.usedBytes, roundUp(bytes, 256) * (count - 1) + bytes);
    assert.equal(allocationStats().allocated - allocated0, heap.mappedBytes);
    heapTaken = free0 - memoryInfo().free;
    console.log(
      `# heap: ${count} × ${bytes} B in ${ms.toFixed(1)} ms (${((ms * 1000) / count).toFixed(0)} µs per alloc); used ${heap.usedBytes}, mapped ${heap.mappedBytes}, ` +
        `device memory taken (cudaMemGetInfo) ${heapTaken} (+${(((heapTaken - heap.usedBytes) / heap.usedBytes) * 100).toFixed(2)} %)`,
    );
    // Besides < 1 granule unmapped at the end, the driver keeps bookkeeping per mapping (H200, driver 580:
    // 21.8 MB for these 300 growths, ~73 KiB each): allow 4 %, then compare with cudaMalloc's pages below.
    assert.ok(heapTaken <= heap.usedBytes * 1.04 + heap.granularity, `the heap took ${heapTaken} bytes of device memory for ${heap.usedBytes} handed out`);
    for (const i of [0, 149, count - 1]) {
      const data = pattern(bytes, 1000 + i);
      io.write(allocations[i].address, data);
      assert.deepEqual(io.read(allocations[i].address, bytes), data);
    }
  } finally {
    heap.dispose();
    io.dispose();
  }
  synchronize();
  assert.equal(allocationStats().allocated, allocated0);
  assert.ok(memoryInfo().free >= free0 - 4 * MiB, `after dispose ${free0 - memoryInfo().free} bytes are still taken`);

  // The same allocations from cudaMalloc: its 2 MiB pages waste far more than the heap does.
  const buffers = [];
  try {
    for (let i = 0; i < count; i++) buffers.push(DeviceBuffer.alloc(bytes));
    const taken = free0 - memoryInfo().free;
    console.log(`# cudaMalloc: ${count} × ${bytes} B took ${taken} bytes of device memory for ${count * bytes} asked (+${(((taken - count * bytes) / (count * bytes)) * 100).toFixed(1)} %; heap ${heapTaken})`);
    assert.ok(heapTaken - count * bytes < (taken - count * bytes) / 4, `the heap wasted ${heapTaken - count * bytes} bytes, cudaMalloc ${taken - count * bytes}`);
  } finally {
    for (const b of buffers) b.dispose();
  }
});

gpuTest("grows past its first reservation: a new range per overflow (max(reserve, request)), allocations never span ranges", () => {
  const heap = DeviceHeap.create(4 * MiB);
  const io = new Pinned(16 * MiB);
  try {
    const g = heap.granularity;
    const R = heap.reservedBytes;
    assert.equal(R, roundUp(4 * MiB, g));
    const allocations = [];
    let ranges = 1;
    const alloc = (bytes, alignment) => {
      const reserved = heap.reservedBytes;
      const address = heap.alloc(bytes, alignment);
      if (heap.reservedBytes !== reserved) ranges++;
      allocations.push({ address, bytes, data: pattern(bytes, allocations.length + 7) });
      assert.equal(address % (alignment ?? 256), 0);
      assertMapping(heap, ranges);
      return heap.reservedBytes - reserved;
    };
    alloc(Math.floor((R * 3) / 4)); // fits the first range
    assert.equal(alloc(Math.floor((R * 3) / 4)), R, "a second allocation of 3/4 of the range did not get a new range of the reserve's size");
    const large = 3 * R + 1;
    assert.equal(alloc(large), roundUp(large, g), "an allocation larger than the reserve did not get a range of its own size");
    alloc(1000);
    alloc(1000, 4 * g); // an alignment above the granularity
    alloc(R); // exactly a range
    assert.ok(ranges >= 4, `only ${ranges} ranges`);
    assertApart(allocations);
    for (const a of allocations) io.write(a.address, a.data);
    for (const [i, a] of allocations.entries()) assert.deepEqual(io.read(a.address, a.bytes), a.data, `allocation ${i} (${a.bytes} bytes) read back differently`);
    console.log(`# ${allocations.length} allocations in ${ranges} ranges: reserved ${heap.reservedBytes}, used ${heap.usedBytes}, mapped ${heap.mappedBytes}`);
  } finally {
    heap.dispose();
    io.dispose();
  }
});

gpuTest("allocationStats counts the mapped bytes (and the peak); dispose returns them; use after dispose throws DisposedError", () => {
  synchronize();
  const free0 = memoryInfo().free;
  resetPeakAllocation();
  const s0 = allocationStats();
  const heap = DeviceHeap.create(256 * MiB);
  for (let i = 0; i < 10; i++) heap.alloc(5 * MiB + 123);
  const s1 = allocationStats();
  assert.equal(s1.allocated - s0.allocated, heap.mappedBytes);
  assert.ok(s1.peak >= s1.allocated);
  assert.ok(free0 - memoryInfo().free >= heap.usedBytes, "cudaMemGetInfo does not show the heap's memory as taken");
  heap.dispose();
  assert.equal(heap.disposed, true);
  const s2 = allocationStats();
  assert.equal(s2.allocated, s0.allocated);
  assert.equal(s2.peak, s1.peak);
  assert.ok(memoryInfo().free >= free0 - 4 * MiB, `after dispose ${free0 - memoryInfo().free} bytes are still taken`);
  assert.throws(() => heap.alloc(1), DisposedError);
  assert.throws(() => heap.mappedBytes, DisposedError);
  assert.throws(() => heap.usedBytes, DisposedError);
  assert.throws(() => heap.reservedBytes, DisposedError);
  heap.dispose(); // idempotent
  heap[Symbol.dispose]();
});

gpuTest("out of device memory is an OutOfDeviceMemoryError naming the bytes; the heap stays usable", () => {
  const heap = DeviceHeap.create(64 * MiB);
  const io = new Pinned(MiB);
  try {
    const before = heap.alloc(MiB);
    const g = heap.granularity;
    const whole = Math.floor(memoryInfo().total / g) * g; // never free: the CUDA context takes some
    let error;
    try {
      heap.alloc(whole);
    } catch (e) {
      error = e;
    }
    assert.ok(error instanceof OutOfDeviceMemoryError, `expected an OutOfDeviceMemoryError, got ${error}`);
    assert.ok(error instanceof CudaError);
    assert.equal(error.neededBytes, whole);
    assert.match(error.message, new RegExp(`${whole}`));
    assert.match(error.message, /cuMemCreate/);
    console.log(`# ${error.message}`);
    const after = heap.alloc(MiB);
    assertApart([
      { address: before, bytes: MiB },
      { address: after, bytes: MiB },
    ]);
    const data = pattern(MiB, 5);
    io.write(after, data);
    assert.deepEqual(io.read(after, MiB), data);
  } finally {
    heap.dispose();
    io.dispose();
  }
});
