// GPU tests of the decode kernel (node:test, so they run on a GPU host with nothing but Node).
// Without a GPU (or binary) every test is skipped with the reason printed.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { decodeModule, encodeModule, mergeBF16, mulberry32, syntheticWeights, InvalidModuleError } from "../../codec/dist/index.js";
import { SafetensorsCollection } from "../../hub-loader/dist/index.js";
import { concatParts, fibonacciParts as craftedFibonacciParts } from "../../../test-support/crafted-weights.mjs";
import { gpuTest } from "./gpu-helpers.mjs";
import { DeviceBuffer, DeviceModule, DisposedError, devices, memoryInfo } from "../dist/index.js";

const here = dirname(fileURLToPath(import.meta.url));
const fixturesRoot = resolve(process.env.DF11_FIXTURES ?? join(here, "..", "..", "..", "..", "shared", "fixtures"));

/** Decode on the GPU and compare with the expected BF16 bits; reports the first difference. */
function gpuDecodeEquals(module, expected, offset = 0) {
const gpu = DeviceModule.upload(module);
const out = DeviceBuffer.alloc((gpu.elements + offset) * 2);
let got;
try {
  assert.equal(gpu.elements, expected.length);
  out.fill(0xee);
  gpu.decode(out, { offset });
  got = out.download(new Uint16Array(gpu.elements), offset * 2);
} finally {
  gpu.dispose();
  out.dispose();
}
const bad = got.findIndex((v, i) => v !== expected[i]);
assert.equal(bad, -1, `first mismatch at element ${bad}: got ${got[bad]?.toString(16)}, expected ${expected[bad]?.toString(16)}`);
}

const fibonacciParts = () => craftedFibonacciParts({ mergeBF16, mulberry32 });

gpuTest("reports the device", () => {
  const [d] = devices();
  assert.ok(d.name.length > 0);
  assert.ok(memoryInfo().total > 0);
  console.log(`# device: ${d.name}, sm_${d.computeCapability.replace(".", "")}, ${d.multiprocessors} SMs`);
});

gpuTest("every official fixture module decodes bit-exactly (vs the CPU codec and vs bf16/)", { skip: existsSync(fixturesRoot) ? false : `no fixtures at ${fixturesRoot}` }, async () => {
  for (const name of readdirSync(fixturesRoot)) {
    const dfDir = join(fixturesRoot, name, "df11");
    if (!existsSync(join(dfDir, "config.json"))) continue;
    const weights = await SafetensorsCollection.openDirectory(dfDir);
    const modules = weights.names().filter((n) => n.endsWith(".encoded_exponent")).map((n) => n.slice(0, -17));
    assert.ok(modules.length > 0);
    for (const path of modules) {
      const read = (s) => weights.read(`${path}.${s}`);
      const op = await read("output_positions");
      const split = await read("split_positions");
      const module = {
        luts: await read("luts"),
        encodedExponent: await read("encoded_exponent"),
        signMantissa: await read("sign_mantissa"),
        outputPositions: new Uint32Array(op.buffer, op.byteOffset, op.byteLength / 4).slice(),
        gaps: await read("gaps"),
        splitPositions: [...new BigInt64Array(split.buffer, split.byteOffset, split.byteLength / 8)].map(Number),
      };
      gpuDecodeEquals(module, decodeModule(module));
    }
    await weights.close();
  }
});

gpuTest("edge cases: 1 element, sizes that are multiples of nothing, every exponent, 4 LUT levels, several matrices", () => {
  const cases = [
    [new Uint16Array([0x3f80])],
    [syntheticWeights(7, 1)],
    [syntheticWeights(4095, 2), syntheticWeights(1, 3), syntheticWeights(12347, 4)],
    [concatParts(Array.from({ length: 240 }, (_, e) => new Uint16Array([mergeBF16(e, e)])))],
    fibonacciParts(),
    [syntheticWeights(1_000_003, 5), syntheticWeights(333_333, 6), syntheticWeights(2_000_001, 7)],
  ];
  for (const parts of cases) {
    const { module } = encodeModule(parts);
    gpuDecodeEquals(module, concatParts(parts));
  }
});

gpuTest("decodes at an element offset, and official files lacking the last output_positions entry", () => {
  const w = syntheticWeights(500_000, 8);
  const { module } = encodeModule([w]);
  gpuDecodeEquals(module, w, 1024);
  gpuDecodeEquals({ ...module, outputPositions: module.outputPositions.subarray(0, module.outputPositions.length - 1) }, w);
});

gpuTest("≥ 200 M realistic elements decode bit-exactly", () => {
  const parts = [syntheticWeights(120_000_000, 11, 0.02), syntheticWeights(90_000_017, 12, 0.015)];
  const { module } = encodeModule(parts);
  gpuDecodeEquals(module, concatParts(parts));
});

gpuTest("typed errors: invalid module, too small an output, use after dispose", () => {
  const { module } = encodeModule([syntheticWeights(10_000, 9)]);
  assert.throws(() => DeviceModule.upload({ ...module, gaps: module.gaps.subarray(0, 3) }), InvalidModuleError);
  const gpu = DeviceModule.upload(module);
  const small = DeviceBuffer.alloc(100);
  assert.throws(() => gpu.decode(small), /too small/);
  gpu.dispose();
  small.dispose();
  assert.throws(() => gpu.decode(small), DisposedError);
  assert.throws(() => small.download(), DisposedError);
});
