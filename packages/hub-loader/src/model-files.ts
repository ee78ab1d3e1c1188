import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { ModelDirectoryError, SafetensorsError } from "./errors.js";

/** Name of the index file of a sharded checkpoint. */
export const SAFETENSORS_INDEX = "model.safetensors.index.json";

/** Which files of a model directory hold its weights, and which were passed over. */
export interface WeightFileSelection {
  /** The safetensors files that are the model, sorted (names, not paths). */
  readonly files: readonly string[];
  /** The index they were taken from, if the checkpoint has one. */
  readonly index?: string;
  /** The index's weight map (tensor → file), if there is an index. */
  readonly weightMap?: Readonly<Record<string, string>>;
  /** Files that look like weights but are not part of the model (named once to the user). */
  readonly ignored: readonly string[];
}

/** Hidden files: macOS AppleDouble `._*` companions, editor and sync droppings. */
const isHidden = (name: string) => name.startsWith(".");
/** Files that look like weights of some kind (safetensors, pickles, GGUF, …). */
const LOOKS_LIKE_WEIGHTS = /\.(safetensors|bin|pt|pth|ckpt|pkl|pickle|gguf|npz|h5|msgpack|onnx)$|\.safetensors\./;

/**
 * The one rule for which files are the model, used by every command and loader:
 * when `model.safetensors.index.json` exists (or, for other libraries' checkpoints, exactly one other
 * `*.safetensors.index.json`), exactly the shards its weight map names; otherwise every `*.safetensors`
 * file that is not hidden. Everything else is ignored; what looks like weights among it is listed in
 * `ignored` (e.g. a macOS `._model.safetensors`, a `consolidated.safetensors` beside indexed shards, a
 * `pytorch_model.bin`).
 *
 * Throws {@link SafetensorsError} when there are no weight files, when the index is malformed or names a
 * shard that is missing, and {@link ModelDirectoryError} when several indexes leave the choice open.
 */
export async function selectWeightFiles(directory: string): Promise<WeightFileSelection> {
  let entries: string[];
  try {
    entries = (await readdir(directory)).sort();
  } catch (e) {
    throw new ModelDirectoryError(directory, `cannot list the directory (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const visible = entries.filter((f) => !isHidden(f));
  const index = chooseIndex(visible, directory);
  let files: string[];
  let weightMap: Record<string, string> | undefined;
  if (index) {
    weightMap = await readWeightMap(join(directory, index));
    files = shardsOf(weightMap);
    for (const f of files) {
      if (!existsSync(join(directory, f))) {
        const tensor = Object.keys(weightMap).find((t) => weightMap![t] === f);
        throw new SafetensorsError(join(directory, index), `weight_map puts it in the shard ${f}, which is missing from ${directory} (an incomplete download or copy?)`, tensor);
      }
    }
  } else {
    files = visible.filter((f) => f.endsWith(".safetensors"));
  }
  const used = new Set([...files, ...(index ? [index] : [])]);
  const ignored = entries.filter((f) => !used.has(f) && LOOKS_LIKE_WEIGHTS.test(f));
  if (files.length === 0) {
    const instead = ignored.length ? ` (${ignored.join(", ")} ${ignored.length === 1 ? "is" : "are"} not: df11 reads visible *.safetensors files)` : "";
    throw new SafetensorsError(directory, index ? `${index} names no shards` : `no *.safetensors files in this directory${instead}`);
  }
  return { files, index, weightMap, ignored };
}

/**
 * The index that says which shards are the model, among file names: `model.safetensors.index.json`, else
 * the only `*.safetensors.index.json` (diffusers' `diffusion_pytorch_model.safetensors.index.json`), else
 * none. Hidden files never count. Throws {@link ModelDirectoryError} when several others leave it open.
 */
export function chooseIndex(names: readonly string[], where: string): string | undefined {
  const indexes = names.filter((f) => !isHidden(f) && f.endsWith(".safetensors.index.json"));
  if (indexes.includes(SAFETENSORS_INDEX)) return SAFETENSORS_INDEX;
  if (indexes.length > 1) throw new ModelDirectoryError(where, `several safetensors indexes (${indexes.join(", ")}) and none is ${SAFETENSORS_INDEX}: which one is the model is ambiguous`);
  return indexes[0];
}

/** The shard names an index's weight map gives. */
export const shardsOf = (weightMap: Readonly<Record<string, string>>): string[] => [...new Set(Object.values(weightMap))].sort();

/** Read and check an index's weight map: an object of tensor → plain file name inside the directory. */
export async function readWeightMap(path: string): Promise<Record<string, string>> {
  let index: { weight_map?: unknown };
  try {
    index = JSON.parse(await readFile(path, "utf8"));
  } catch (e) {
    throw new SafetensorsError(path, `index is not valid JSON (${(e as Error).message})`);
  }
  const map = index?.weight_map;
  if (typeof map !== "object" || map === null || Array.isArray(map)) throw new SafetensorsError(path, "index has no weight_map object");
  for (const [tensor, file] of Object.entries(map)) {
    // Shards live beside the index: a path elsewhere (or a hidden file) is not a shard of this model.
    if (typeof file !== "string" || !file.endsWith(".safetensors") || file.includes("/") || file.includes("\\") || isHidden(file)) {
      throw new SafetensorsError(path, `weight_map gives ${JSON.stringify(file)}, not the name of a .safetensors file beside the index`, tensor);
    }
  }
  return map as Record<string, string>;
}

const warned = new Set<string>();

/**
 * Name the ignored files of a directory once per process (a Node process warning with code
 * `DF11_IGNORED_FILES`), however many times the directory is opened.
 */
export function warnIgnoredFiles(directory: string, selection: WeightFileSelection): void {
  const fresh = selection.ignored.filter((f) => !warned.has(join(directory, f)));
  if (fresh.length === 0) return;
  for (const f of fresh) warned.add(join(directory, f));
  const rule = selection.index ? `the model is the shards ${selection.index} names` : "the model is the *.safetensors files that are not hidden";
  process.emitWarning(`${directory}: ignoring ${fresh.join(", ")} (${rule})`, { code: "DF11_IGNORED_FILES" });
}
