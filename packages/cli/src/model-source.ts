import { resolveModel, type ResolveOptions } from "@df11/hub-loader";
import { downloadBar } from "./progress.js";

/**
 * The directory of a model given as a path or a Hub repo id (`org/name[@revision]`): Hub models come
 * from the shared Hugging Face cache, downloaded there first when needed.
 */
export async function modelDirectory(spec: string, options: ResolveOptions = {}): Promise<string> {
  const bar = downloadBar(`download ${spec}`);
  try {
    return (await resolveModel(spec, { ...options, onProgress: bar.update })).dir;
  } finally {
    bar.stop();
  }
}
