// readDF11ModuleHeader (what the GPU loader reads before streaming a module's two large tensors to the
// device) agrees with readDF11Module on good modules and refuses the same broken ones, naming the tensor.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeModule, InvalidModuleError, type DF11Module } from "@df11/codec";
import { SafetensorsCollection, writeSafetensors, type TensorToWrite } from "@df11/hub-loader";
import { compressedModulesOf, moduleTensors, readDF11Module, readDF11ModuleHeader } from "../src/index.js";
import { fixtureNames, fixturesRoot, fixturesSkipReason } from "../../../test-support/fixtures.js";

/** Realistic-ish BF16 weights: exponents around 120, any sign and mantissa. */
function weights(n: number, seed: number): Uint16Array {
  let x = seed;
  return Uint16Array.from({ length: n }, () => {
    x = (x * 1103515245 + 12345) >>> 0;
    const exponent = 116 + ((x >>> 8) % 9);
    return ((x >>> 31) << 15) | (exponent << 7) | ((x >>> 20) & 127);
  });
}

describe("readDF11ModuleHeader", () => {
  let dir: string;
  const module: DF11Module = encodeModule([weights(70_001, 1), weights(9_000, 2)], { names: ["a", "b"] }).module;
  const write = async (name: string, edit: (t: TensorToWrite[]) => TensorToWrite[]) => {
    const d = join(dir, name);
    await writeSafetensors(join(d, "model.safetensors"), edit(moduleTensors("model.layers.0.mlp", module)));
    return SafetensorsCollection.openDirectory(d);
  };
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "df11-header-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("gives what readDF11Module gives, with the two large tensors as their lengths", async () => {
    await using w = await write("good", (t) => t);
    const full = await readDF11Module(w, "model.layers.0.mlp");
    const header = await readDF11ModuleHeader(w, "model.layers.0.mlp");
    expect(header.encodedExponentBytes).toBe(full.encodedExponent.length);
    expect(header.signMantissaBytes).toBe(full.signMantissa.length);
    expect(header.luts).toEqual(full.luts);
    expect(header.outputPositions).toEqual(full.outputPositions);
    expect(header.gaps).toEqual(full.gaps);
    expect(header.splitPositions).toEqual([70_001]);
  });

  const broken: Array<[string, string, (t: TensorToWrite[]) => TensorToWrite[]]> = [
    ["a missing tensor", "model.layers.0.mlp.gaps", (t) => t.filter((x) => !x.name.endsWith(".gaps"))],
    ["a wrong dtype", "model.layers.0.mlp.split_positions", (t) => t.map((x) => (x.name.endsWith(".split_positions") ? { ...x, dtype: "U8", shape: [x.data.length] } : x))],
    ["output positions not starting at 0", "model.layers.0.mlp.output_positions", (t) => t.map((x) => (x.name.endsWith(".output_positions") ? { ...x, data: Uint8Array.from(x.data, (b, i) => (i === 0 ? 1 : b)) } : x))],
    ["gaps cut short", "model.layers.0.mlp.gaps", (t) => t.map((x) => (x.name.endsWith(".gaps") ? { ...x, data: x.data.subarray(0, 3), shape: [3] } : x))],
    ["a split beyond the elements", "model.layers.0.mlp.split_positions", (t) => t.map((x) => (x.name.endsWith(".split_positions") ? { ...x, data: new Uint8Array(new BigInt64Array([10_000_000n]).buffer) } : x))],
    ["sign_mantissa shorter than the positions say", "model.layers.0.mlp.output_positions", (t) => t.map((x) => (x.name.endsWith(".sign_mantissa") ? { ...x, data: x.data.subarray(0, 100), shape: [100] } : x))],
  ];
  for (const [what, tensor, edit] of broken) {
    it(`refuses ${what}, naming ${tensor.split(".").pop()}, as readDF11Module does`, async () => {
      await using w = await write(what.replace(/\W+/g, "-"), edit);
      const path = compressedModulesOf(w.names())[0] ?? "model.layers.0.mlp";
      for (const read of [readDF11Module, readDF11ModuleHeader]) {
        const e = await read(w, path).catch((x: unknown) => x);
        expect(e, read.name).toBeInstanceOf(InvalidModuleError);
        expect((e as InvalidModuleError).field, read.name).toBe(tensor);
      }
    });
  }

  describe.skipIf(fixtureNames.length === 0)(`official fixtures (${fixtureNames.length ? fixtureNames.join(", ") : fixturesSkipReason})`, () => {
    for (const name of fixtureNames) {
      it(`${name}: every module's header matches the full read`, async () => {
        await using w = await SafetensorsCollection.openDirectory(join(fixturesRoot, name, "df11"));
        for (const path of compressedModulesOf(w.names())) {
          const full = await readDF11Module(w, path);
          const header = await readDF11ModuleHeader(w, path);
          expect([header.encodedExponentBytes, header.signMantissaBytes, header.splitPositions]).toEqual([full.encodedExponent.length, full.signMantissa.length, full.splitPositions]);
          expect(header.outputPositions).toEqual(full.outputPositions);
        }
      });
    }
  });
});
