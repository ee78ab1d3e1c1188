// Small decode workload for compute-sanitizer:  compute-sanitizer --tool memcheck node sanitize.mjs
import { encodeModule, mergeBF16, syntheticWeights } from "../../codec/dist/index.js";
import { DeviceBuffer, DeviceModule, synchronize } from "../dist/index.js";

const cases = [
  [new Uint16Array([0x3f80])],
  [syntheticWeights(4095, 2), syntheticWeights(1, 3), syntheticWeights(12347, 4)],
  [Uint16Array.from({ length: 240 }, (_, e) => mergeBF16(e, e))],
  [syntheticWeights(300_001, 5)],
];
for (const parts of cases) {
  const { module } = encodeModule(parts);
  const gpu = DeviceModule.upload(module);
  const out = DeviceBuffer.alloc(gpu.elements * 2);
  gpu.decode(out);
  synchronize();
  const got = out.download(new Uint16Array(gpu.elements));
  gpu.dispose();
  out.dispose();
  const expected = parts.flatMap((p) => [...p]);
  const bad = got.findIndex((v, i) => v !== expected[i]);
  if (bad >= 0) throw new Error(`mismatch at ${bad}`);
}
console.log(`sanitize workload: ${cases.length} modules decoded`);
