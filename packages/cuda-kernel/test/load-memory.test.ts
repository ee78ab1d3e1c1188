import { describe, expect, it } from "vitest";
import { LoadMemory, type TemporaryBuffer } from "../src/backend/load-memory.js";

// A fake device: addresses count up, freed buffers are remembered, and the allocator can be told to fail.
function fakeDevice() {
  let next = 0x1000;
  const freed = new Set<number>();
  let failNext = false;
  const alloc = (bytes: number): TemporaryBuffer => {
    if (failNext) {
      failNext = false;
      throw new Error(`out of device memory: ${bytes} bytes`);
    }
    const address = next;
    next += bytes;
    return { address, byteLength: bytes, dispose: () => void freed.add(address) };
  };
  return { alloc, freed, failOnce: () => void (failNext = true) };
}

describe("LoadMemory", () => {
  it("reuses one temporary buffer and grows it only for a larger request", () => {
    const dev = fakeDevice();
    const mem = new LoadMemory(undefined, () => 0, dev.alloc);
    const a = mem.temporary(1000);
    expect(mem.temporary(1000)).toBe(a);
    expect(mem.temporary(10)).toBe(a);
    const b = mem.temporary(1001);
    expect(b).not.toBe(a);
    expect(dev.freed.has(a)).toBe(true);
    mem.dispose();
    expect(dev.freed.has(b)).toBe(true);
  });

  it("never hands out a freed buffer after a failed grow", () => {
    const dev = fakeDevice();
    const mem = new LoadMemory(undefined, () => 0, dev.alloc);
    const a = mem.temporary(100);
    dev.failOnce();
    expect(() => mem.temporary(4 << 20)).toThrow(/out of device memory/);
    expect(dev.freed.has(a)).toBe(true);
    // A smaller request next must not get the freed buffer back.
    const c = mem.temporary(100);
    expect(c).not.toBe(a);
    expect(dev.freed.has(c)).toBe(false);
    mem.dispose();
  });

  it("keeps arrays from the heap when it has one (counting the bytes), else from the fallback", () => {
    const heapCalls: Array<[number, number | undefined]> = [];
    const heap = { alloc: (bytes: number, alignment?: number) => (heapCalls.push([bytes, alignment]), 0x9000) };
    const fallbackCalls: number[] = [];
    const withHeap = new LoadMemory(heap, (b) => (fallbackCalls.push(b), 0x5000), fakeDevice().alloc);
    expect(withHeap.keep(300)).toBe(0x9000);
    withHeap.keep(5);
    expect(heapCalls).toEqual([[300, 256], [5, 256]]);
    expect(withHeap.keptBytes).toBe(305);
    const without = new LoadMemory(undefined, (b) => (fallbackCalls.push(b), 0x5000), fakeDevice().alloc);
    expect(without.keep(300)).toBe(0x5000);
    expect(fallbackCalls).toEqual([300]);
    expect(without.keptBytes).toBe(0);
  });
});
