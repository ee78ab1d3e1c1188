import { copyFile, readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { ModelDirectoryError } from "./errors.js";

/** A model's config.json, as parsed JSON. */
export type ModelConfig = Record<string, unknown>;

/** The text of `config.json` of a model directory (a ModelDirectoryError when it cannot be read). */
export async function readModelConfigText(directory: string): Promise<string> {
  try {
    const s = await stat(directory);
    if (!s.isDirectory()) throw new ModelDirectoryError(directory, "is not a directory");
    return await readFile(join(directory, "config.json"), "utf8");
  } catch (e) {
    if (e instanceof ModelDirectoryError) throw e;
    throw new ModelDirectoryError(directory, `cannot read config.json (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

/** Parse config.json text (`path` names it in errors): a JSON object, or a ModelDirectoryError. */
export function parseModelConfig(text: string, path: string): ModelConfig {
  try {
    const config = JSON.parse(text);
    if (typeof config !== "object" || config === null || Array.isArray(config)) throw new Error("not a JSON object");
    return config;
  } catch (e) {
    throw new ModelDirectoryError(path, `invalid JSON (${(e as Error).message})`);
  }
}

/** Read and parse `config.json` of a model directory. */
export async function readModelConfig(directory: string): Promise<ModelConfig> {
  return parseModelConfig(await readModelConfigText(directory), join(directory, "config.json"));
}

/** Files that travel with the weights: tokenizer, generation settings, chat template, licence. */
const SIDE_FILE = /^(tokenizer.*|special_tokens_map\.json|added_tokens\.json|vocab\..*|merges\.txt|.*\.tiktoken|generation_config\.json|chat_template\..*|preprocessor_config\.json|LICEN[CS]E.*|NOTICE.*)$/;

/** Whether a file name is one of a model's side files (tokenizer, generation config, chat template, …). */
export const isSideFile = (name: string): boolean => SIDE_FILE.test(name);

/** Names of the side files present in a model directory. */
export async function listSideFiles(directory: string): Promise<string[]> {
  return (await readdir(directory)).filter((f) => SIDE_FILE.test(f)).sort();
}

/** Copy the side files of one model directory into another; returns their names. */
export async function copySideFiles(from: string, to: string): Promise<string[]> {
  const files = await listSideFiles(from);
  for (const f of files) await copyFile(join(from, f), join(to, f));
  return files;
}
