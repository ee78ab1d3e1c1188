#!/usr/bin/env node
/**
 * Cost of df11-sum64, the checksum df11 records: on the CPU (one thread, and every core through the
 * codec pool) in GB/s, and on the GPU: ms to sum a Llama-3.1-8B layer's BF16 weights (436 MB) on the
 * device, and — given a DF11 model — the load-time checks: stored tensors (default) and decode + sum of
 * every module (--verify-weights), per module.
 *
 *   node apps/bench/dist/checksum-bench.js [--df11 DIR] [--out FILE]
 */
import { availableParallelism } from "node:os";
import { parseArgs } from "node:util";
import { checksumHex, syntheticWeights } from "@df11/codec";
import { CodecPool } from "@df11/cli";
import { CudaBackend, cudaUnavailableReason, DeviceBuffer, DeviceChecksum, devices } from "@df11/cuda-kernel";
import { saveJson } from "./child.js";

const { values: args } = parseArgs({ options: { df11: { type: "string" }, out: { type: "string", default: "bench-results/checksum.json" } } });
const log = (s: string) => console.error(s);
const best = async (runs: number, f: () => unknown | Promise<unknown>) => {
  let fastest = Infinity;
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await f();
    fastest = Math.min(fastest, performance.now() - t);
  }
  return fastest;
};

const MB = 256;
const data = new Uint8Array(syntheticWeights((MB << 20) / 2, 1).buffer);
const oneThreadMs = await best(3, () => checksumHex(data));
const threads = availableParallelism();
// Copies (slice), so that each task sends only its own bytes to its worker.
const slices = Array.from({ length: threads * 2 }, (_, i) => data.slice(Math.floor((i * data.length) / (threads * 2)), Math.floor(((i + 1) * data.length) / (threads * 2))));
const pool = new CodecPool(threads);
await Promise.all(slices.map((s) => pool.checksum(s.subarray(0, 4096)))); // warm the workers
const allCoresMs = await best(3, () => Promise.all(slices.map((s) => pool.checksum(s))));
await pool.close();
const cpu = {
  bytes: data.length,
  oneThreadGBps: data.length / oneThreadMs / 1e6,
  threads,
  allCoresGBps: data.length / allCoresMs / 1e6,
  note: "all cores includes copying each slice to its worker",
};
log(`CPU: ${cpu.oneThreadGBps.toFixed(2)} GB/s on one thread, ${cpu.allCoresGBps.toFixed(2)} GB/s on ${threads} threads`);

let gpu: Record<string, unknown> | undefined;
const reason = cudaUnavailableReason();
if (!reason) {
  // One Llama-3.1-8B layer: q, k, v, o (4096·(4096+1024+1024+4096)) + gate, up, down (3·4096·14336) BF16 elements.
  const layerElements = 4096 * (4096 + 1024 + 1024 + 4096) + 3 * 4096 * 14336;
  using layer = DeviceBuffer.alloc(layerElements * 2);
  layer.fill(0x3c);
  using sum = new DeviceChecksum();
  const sumLayerMs = await best(10, () => {
    sum.reset();
    sum.add(layer.address, layerElements * 2);
    sum.read();
  });
  gpu = { device: devices()[0]?.name, layerElements, layerBytes: layerElements * 2, sumLayerMs, sumGBps: (layerElements * 2) / sumLayerMs / 1e6 };
  log(`GPU: ${sumLayerMs.toFixed(3)} ms to sum one 8B layer (${(layerElements * 2 / 1e6).toFixed(0)} MB, ${(gpu.sumGBps as number).toFixed(0)} GB/s)`);
  if (args.df11) {
    const timed = async (options: { checkStored: boolean; verifyWeights: boolean }) => {
      const t = performance.now();
      const backend = await CudaBackend.load(args.df11!, { ...options, maxContext: 256 });
      const seconds = (performance.now() - t) / 1000;
      const checks = { ...backend.loadChecks, weightsMsPerModule: [...backend.loadChecks.weightsMsPerModule] };
      backend.dispose();
      return { ...options, loadSeconds: seconds, checks };
    };
    const loads = [];
    for (const o of [
      { checkStored: false, verifyWeights: false },
      { checkStored: true, verifyWeights: false },
      { checkStored: true, verifyWeights: true },
    ]) {
      const r = await timed(o);
      loads.push(r);
      const per = r.checks.weightsMsPerModule;
      log(
        `load ${JSON.stringify(o)}: ${r.loadSeconds.toFixed(1)} s; stored tensors ${r.checks.storedTensors} in ${r.checks.storedMs.toFixed(0)} ms` +
          (per.length ? `; decode+sum per module: median ${[...per].sort((a, b) => a - b)[per.length >> 1].toFixed(2)} ms over ${per.length}` : ""),
      );
    }
    gpu.loads = loads;
  }
} else log(`GPU: skipped (${reason})`);

saveJson(args.out!, { benchmark: "checksum", algorithm: "df11-sum64", cpu, gpu });
