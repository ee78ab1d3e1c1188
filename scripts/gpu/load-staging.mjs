// The loader's pinned ring, compared: DeviceWeights.load of DIR in LAYOUT with chunk size × chunks from
// the list, each timed (host ms per phase): node scripts/gpu/load-staging.mjs DIR LAYOUT 32x6,16x8,8x8
import { readModelConfig, SafetensorsCollection } from "../../packages/hub-loader/dist/index.js";
import { dfloat11ConfigOf, languageModelOf } from "../../packages/models/dist/index.js";
import { DeviceWeights, memoryInfo } from "../../packages/cuda-kernel/dist/index.js";

const [dir, layout = "fused", list = "32x6,16x8,8x8"] = process.argv.slice(2);
memoryInfo();
const config = await readModelConfig(dir);
const dfc = dfloat11ConfigOf(config, dir);
for (const spec of list.split(",")) {
  const [mib, chunks] = spec.split("x").map(Number);
  const files = await SafetensorsCollection.openDirectory(dir); // (Node 20 has no `await using`)
  try {
    const { weights, patternDict } = languageModelOf(files, dfc?.patternDict);
    const t = performance.now();
    const w = await DeviceWeights.load(weights, patternDict, { layout, config, staging: { chunkBytes: mib << 20, chunks } });
    const ms = performance.now() - t;
    const phases = Object.entries(w.loadTimes).map(([k, v]) => `${k.replace(/Ms$/, "")} ${v.toFixed(0)}`);
    console.log(`${layout} ${spec}: weights load ${ms.toFixed(0)} ms; ${phases.join(", ")}`);
    w.dispose();
  } finally {
    await files.close();
  }
}
