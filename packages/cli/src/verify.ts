import { availableParallelism } from "node:os";
import { readModelConfig, SafetensorsCollection } from "@df11/hub-loader";
import { bytesOf, compressedModulesOf, isModuleTensor, readDF11Module, weightNamesOf } from "@df11/models";
import { splitWeights } from "@df11/codec";
import { patternDictOf, recordedShapes, shapeOfWeight } from "./model-info.js";
import { orderedPipeline } from "./ordered-pipeline.js";
import { CodecPool } from "./pool.js";
import type { Progress } from "./progress.js";
import { VerificationError } from "./errors.js";

export interface VerifyOptions {
  /** The original BF16 model: every weight must match it bit for bit. */
  readonly against?: string;
  readonly threads?: number;
  readonly onProgress?: (p: Progress) => void;
}

export interface VerifyReport {
  readonly modules: number;
  readonly elements: number;
  /** Tensors compared bit for bit with the original (when `against` was given). */
  readonly comparedTensors: number;
  readonly seconds: number;
}

/**
 * Decode every module of a DF11 model with both decoders (sequential, and GPU-kernel semantics),
 * check structure and shapes, and — with `against` — compare every tensor with the original BF16
 * model. Throws {@link VerificationError} naming the first bad tensor.
 */
export async function verifyModel(dir: string, options: VerifyOptions = {}): Promise<VerifyReport> {
  const started = performance.now();
  const config = await readModelConfig(dir);
  const patternDict = patternDictOf(config, dir);
  await using weights = await SafetensorsCollection.openDirectory(dir);
  await using original = options.against ? await SafetensorsCollection.openDirectory(options.against) : undefined;
  const recorded = recordedShapes(weights);
  const modules = compressedModulesOf(weights.names());
  const threads = options.threads ?? availableParallelism();
  await using pool = new CodecPool(threads);
  let elements = 0;
  let compared = 0;
  const covered = new Set<string>();
  const totalBytes = modules.reduce((s, m) => s + weights.info(`${m}.sign_mantissa`).byteLength * 2, 0);
  let doneBytes = 0;

  const compare = async (name: string, bytes: Uint8Array) => {
    covered.add(name);
    if (!original) return;
    if (!original.has(name)) throw new VerificationError(name, `not in the original model ${options.against}`);
    const ref = await original.read(name);
    if (!Buffer.from(ref.buffer, ref.byteOffset, ref.byteLength).equals(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))) {
      throw new VerificationError(name, "differs from the original");
    }
    compared++;
  };

  await orderedPipeline(
    modules,
    threads,
    async (path) => {
      try {
        const module = await readDF11Module(weights, path);
        return { path, module, ...(await pool.check(module)) };
      } catch (e) {
        throw new VerificationError(path, (e as Error).message);
      }
    },
    async ({ path, module, decoded }, i) => {
      const names = weightNamesOf(patternDict, path);
      const parts = splitWeights(decoded, module.splitPositions);
      if (parts.length !== names.length) {
        throw new VerificationError(`${path}.split_positions`, `${parts.length} parts, the pattern_dict lists ${names.length} weights`);
      }
      for (let j = 0; j < parts.length; j++) {
        try {
          shapeOfWeight(config, recorded, names[j], parts[j].length);
        } catch (e) {
          throw new VerificationError(names[j], (e as Error).message);
        }
        await compare(names[j], bytesOf(parts[j]));
      }
      elements += decoded.length;
      doneBytes += decoded.byteLength;
      options.onProgress?.({ modulesDone: i + 1, modulesTotal: modules.length, bytesDone: doneBytes, bytesTotal: totalBytes });
    },
  );
  for (const name of weights.names().filter((n) => !isModuleTensor(n))) await compare(name, await weights.read(name));
  if (original) {
    const missing = original.names().find((n) => !covered.has(n));
    if (missing) throw new VerificationError(missing, "is in the original model but not in the DF11 model");
  }
  return { modules: modules.length, elements, comparedTensors: compared, seconds: (performance.now() - started) / 1000 };
}
