import { readModelConfig, SafetensorsCollection } from "@df11/hub-loader";
import { CausalLM } from "./causal-lm.js";
import { parseTextModelConfig } from "./config.js";
import { ConfigError } from "./errors.js";
import type { PatternDict } from "./pattern-dict.js";
import { Bf16WeightStore, Df11WeightStore } from "./weight-store.js";

/**
 * Load a causal LM from a model directory, BF16 or DFloat11 (detected by `dfloat11_config`). For DF11
 * only the compressed modules are held; each is decoded just before use.
 */
export async function loadCausalLM(directory: string): Promise<CausalLM> {
  const raw = await readModelConfig(directory);
  const config = parseTextModelConfig(raw);
  await using weights = await SafetensorsCollection.openDirectory(directory);
  const df11 = raw.dfloat11_config as { pattern_dict?: PatternDict } | undefined;
  if (df11 !== undefined && (typeof df11 !== "object" || !df11.pattern_dict)) {
    throw new ConfigError("dfloat11_config.pattern_dict", "missing");
  }
  const store = df11 ? await Df11WeightStore.load(weights, df11.pattern_dict!) : await Bf16WeightStore.load(weights);
  return new CausalLM(config, store);
}
