import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { decodeLikeKernel, decodeModule, encodeModule, splitWeights } from "@df11/codec";
import { SafetensorsCollection } from "@df11/hub-loader";
import { compressedModulesOf, readDF11Module, weightNamesOf, type PatternDict } from "@df11/models";
import { readFileSync } from "node:fs";
import { fixtureNames, fixturesRoot, fixturesSkipReason } from "../../../test-support/fixtures.js";

const patternDictOf = (name: string): PatternDict =>
  JSON.parse(readFileSync(join(fixturesRoot, name, "df11", "config.json"), "utf8")).dfloat11_config.pattern_dict;

describe.skipIf(fixtureNames.length === 0)(`official fixtures (${fixtureNames.length ? fixtureNames.join(", ") : fixturesSkipReason})`, () => {
  for (const name of fixtureNames) {
    it(`${name}: every official module decodes bit-exactly to bf16/, and our encoder reproduces it byte for byte`, async () => {
      await using df11 = await SafetensorsCollection.openDirectory(join(fixturesRoot, name, "df11"));
      await using bf16 = await SafetensorsCollection.openDirectory(join(fixturesRoot, name, "bf16"));
      const modules = compressedModulesOf(df11.names());
      expect(modules.length).toBeGreaterThan(2);
      for (const path of modules) {
        const official = await readDF11Module(df11, path);
        const weightNames = weightNamesOf(patternDictOf(name), path);
        const originals = await Promise.all(weightNames.map((w) => bf16.readU16(w)));
        const fast = decodeModule(official);
        const kernel = decodeLikeKernel(official);
        const parts = splitWeights(fast, official.splitPositions);
        expect(parts.length).toBe(originals.length);
        parts.forEach((p, i) => expect(Buffer.from(p.buffer, p.byteOffset, p.byteLength).equals(Buffer.from(originals[i].buffer, originals[i].byteOffset, originals[i].byteLength)), `${path} part ${i}`).toBe(true));
        expect(Buffer.compare(Buffer.from(kernel.buffer), Buffer.from(fast.buffer, fast.byteOffset, fast.byteLength))).toBe(0);

        const { module: ours } = encodeModule(originals, { names: weightNames });
        for (const key of ["luts", "encodedExponent", "signMantissa", "outputPositions", "gaps"] as const) {
          const a = ours[key];
          const b = official[key];
          expect(Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength)), `${path}.${key}`).toBe(true);
        }
        expect(ours.splitPositions).toEqual(official.splitPositions);
      }
    });
  }
});
