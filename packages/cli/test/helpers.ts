import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import OpenAI from "openai";
import type { Model } from "@df11/models";
import { serveModel, type RunningServer } from "../src/index.js";
import { repoRoot } from "../../../test-support/fixtures.js";

export const run = promisify(execFile);
/** The built `df11` command. */
export const bin = join(repoRoot, "packages", "cli", "dist", "bin.js");
/** Run `df11 …` as a user would; rejects with { code, stdout, stderr } on a non-zero exit. */
export const df11 = (...args: string[]) => run(process.execPath, [bin, ...args]);
/** A small generated llama-shaped model (4 modules). */
export const SMALL = { vocab: 1000, hidden: 64, intermediate: 160, layers: 2, heads: 4, kvHeads: 2 };

/** `model` served on 127.0.0.1 (a free port) as `modelId`, an openai client for it, and close() that stops the server and frees the model. */
export async function servedModel(model: Model, modelId = "m"): Promise<{ server: RunningServer; client: OpenAI; close: () => Promise<void> }> {
  const server = await serveModel(model, { port: 0, modelId });
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "none", maxRetries: 0 });
  const close = async () => {
    await server.close();
    model.dispose();
  };
  return { server, client, close };
}
