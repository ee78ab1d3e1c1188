// Costs of the allocations a load makes, on this GPU: pinned host regions (time per size) and device
// memory taken by many mid-sized cudaMalloc's (the allocator's granularity): node scripts/gpu/alloc-probe.mjs
import { DeviceBuffer, memoryInfo, PinnedBuffer } from "../../packages/cuda-kernel/dist/index.js";

memoryInfo();
for (const mb of [64, 128, 320, 700]) {
  const t = performance.now();
  const p = PinnedBuffer.alloc(mb << 20);
  const a = performance.now() - t;
  const t2 = performance.now();
  p.dispose();
  console.log(`pinned ${mb} MiB: alloc ${a.toFixed(1)} ms, free ${(performance.now() - t2).toFixed(1)} ms`);
}
for (const size of [300 << 10, (3 << 20) + 4096, (27 << 20) + 12345]) {
  const before = memoryInfo().free;
  const bufs = [];
  const t = performance.now();
  for (let i = 0; i < 100; i++) bufs.push(DeviceBuffer.alloc(size));
  const ms = performance.now() - t;
  const used = before - memoryInfo().free;
  console.log(`100 × cudaMalloc(${size} B): device ${(used / 1e6).toFixed(1)} MB for ${((100 * size) / 1e6).toFixed(1)} MB asked (${((used / (100 * size) - 1) * 100).toFixed(0)} % more), ${(ms / 100).toFixed(3)} ms each`);
  const t2 = performance.now();
  for (const b of bufs) b.dispose();
  console.log(`  free: ${((performance.now() - t2) / 100).toFixed(3)} ms each`);
}
