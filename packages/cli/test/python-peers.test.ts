// transformers as a peer: a model df11 compresses and decompresses loads in transformers (CPU) with the
// same logits as the original, and transformers' greedy tokens on it equal df11's on the DF11 model.
// Needs Python with torch + transformers: $DF11_PYTHON (.ci/run makes a venv from the machine's wheel
// mirror); skipped, saying why, without it.
import { execFile, execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generate, loadCausalLM } from "@df11/models";
import { repoRoot } from "../../../test-support/fixtures.js";
import { pythonSkipReason } from "../../../test-support/python.js";
import { compressModel, decompressModel } from "../src/index.js";

const python = process.env.DF11_PYTHON;
const skipReason = pythonSkipReason(["torch", "transformers"], "transformers peer tests");

const models = ["mistral-tiny", "qwen2-tiny", "qwen3-tied-tiny", "gemma2-tiny", "gemma3-tiny", "gemma3-vlm-tiny", "phi3-tiny"].map((name) => ({ name, dir: join(repoRoot, "test-support", "reference-models", name) }));
let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "df11-peers-"));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe.skipIf(!!skipReason)(`transformers as a peer${skipReason ? ` (skipped: ${skipReason})` : ""}`, () => {
  for (const m of models) {
    it(`${m.name}: df11 compress → decompress loads in transformers with identical logits; transformers' greedy tokens equal df11's on the DF11 model`, async () => {
      const bf16 = join(m.dir, "bf16");
      const df11 = join(work, `${m.name}-df11`);
      const back = join(work, `${m.name}-back`);
      await compressModel(bf16, df11);
      await decompressModel(df11, back);
      const ids: number[] = JSON.parse(readFileSync(join(m.dir, "reference.json"), "utf8")).input_ids;
      const { stdout } = await promisify(execFile)(python!, [join(repoRoot, "tools", "peer_transformers.py"), bf16, back, ids.join(","), "12"], { maxBuffer: 1 << 24 });
      const peer = JSON.parse(stdout.trim().split("\n").pop()!);
      expect(peer.maxLogitDifference).toBe(0);
      expect(peer.greedyOther).toEqual(peer.greedyOriginal);
      using model = await loadCausalLM(df11);
      const ours: number[] = [];
      for await (const t of generate(model, ids, { maxTokens: 12, stopTokenIds: [] })) ours.push(t.id);
      expect(ours).toEqual(peer.greedyOther);
    });
  }
});
