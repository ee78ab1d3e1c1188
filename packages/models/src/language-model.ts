import type { SafetensorsCollection } from "@df11/hub-loader";
import { compressedModulesOf } from "./df11-checkpoint.js";
import { WeightLayoutError } from "./errors.js";
import { escapePath, patternEntryOf, type PatternDict } from "./pattern-dict.js";

/** A stored prefix and the usual causal-LM prefix it stands for (dotted paths, no trailing dot). */
type PrefixRule = readonly [stored: string, usual: string];

/**
 * Where a checkpoint keeps its language model. `causal-lm`: the usual `model.*` / `lm_head.*`.
 * Multimodal checkpoints (gemma-3's `Gemma3ForConditionalGeneration`) keep it beside a vision tower:
 * `language_model.model.*` / `language_model.lm_head.*` in the layout the Hub releases use (transformers
 * < 4.52), `model.language_model.*` / `lm_head.*` in the one transformers 5 writes.
 */
export interface LanguageModelLayout {
  readonly kind: "causal-lm" | "multimodal-legacy" | "multimodal";
  /** The usual name of a stored tensor name or module path, or undefined when it is not the language model's. */
  usualName(stored: string): string | undefined;
  /** The stored name of a usual tensor name or module path (`model.layers` → `language_model.model.layers`). */
  storedName(usual: string): string;
}

const RULES: Record<LanguageModelLayout["kind"], readonly PrefixRule[]> = {
  "causal-lm": [],
  "multimodal-legacy": [
    ["language_model.model", "model"],
    ["language_model.lm_head", "lm_head"],
  ],
  multimodal: [
    ["model.language_model", "model"],
    ["lm_head", "lm_head"],
  ],
};

const under = (name: string, prefix: string) => name === prefix || name.startsWith(`${prefix}.`);
const swap = (name: string, from: string, to: string) => to + name.slice(from.length);

function layoutOf(kind: LanguageModelLayout["kind"]): LanguageModelLayout {
  const rules = RULES[kind];
  if (rules.length === 0) return { kind, usualName: (n) => n, storedName: (n) => n };
  return {
    kind,
    usualName: (n) => {
      const rule = rules.find(([stored]) => under(n, stored));
      return rule && swap(n, rule[0], rule[1]);
    },
    storedName: (n) => {
      const rule = rules.find(([, usual]) => under(n, usual));
      if (!rule) throw new WeightLayoutError(n, `not a name of the language model (${kind} layout)`);
      return swap(n, rule[1], rule[0]);
    },
  };
}

/**
 * The layout of a checkpoint's language model, from its tensor names (module tensors of DF11 models
 * included). Throws {@link WeightLayoutError} when it holds both a causal LM's `model.layers.*` and a
 * multimodal model's language model.
 */
export function languageModelLayout(tensorNames: readonly string[]): LanguageModelLayout {
  const legacy = tensorNames.some((n) => n.startsWith("language_model.model."));
  const current = tensorNames.some((n) => n.startsWith("model.language_model."));
  const plain = tensorNames.find((n) => n.startsWith("model.layers."));
  if ((legacy || current) && plain) {
    throw new WeightLayoutError(plain, `the checkpoint also holds a multimodal model's language model (${legacy ? "language_model.model.*" : "model.language_model.*"}): which one to run is ambiguous`);
  }
  if (legacy && current) throw new WeightLayoutError("language_model.model.*", "stored beside model.language_model.*: two language models");
  return layoutOf(legacy ? "multimodal-legacy" : current ? "multimodal" : "causal-lm");
}

/**
 * transformers 4.52 moved multimodal (LLaVA-style) models' tensors: `language_model.model.*` →
 * `model.language_model.*`, `vision_tower.*` → `model.vision_tower.*`, `multi_modal_projector.*` →
 * `model.multi_modal_projector.*`, `language_model.lm_head.*` → `lm_head.*` (its checkpoint key mapping).
 * This maps a pre-4.52 name to its current one; names of any other layout stay as they are.
 */
export function currentLayoutName(layout: LanguageModelLayout): (name: string) => string {
  if (layout.kind !== "multimodal-legacy") return (n) => n;
  const rules: readonly PrefixRule[] = [
    ["language_model.model", "model.language_model"],
    ["language_model.lm_head", "lm_head"],
    ["vision_tower", "model.vision_tower"],
    ["multi_modal_projector", "model.multi_modal_projector"],
  ];
  return (n) => {
    const rule = rules.find(([old]) => under(n, old));
    return rule ? swap(n, rule[0], rule[1]) : n;
  };
}

/** A checkpoint under the names transformers ≥ 4.52 uses (itself unless it is a pre-4.52 multimodal one). */
export function inCurrentLayout(weights: SafetensorsCollection): SafetensorsCollection {
  const layout = languageModelLayout(weights.names());
  return layout.kind === "multimodal-legacy" ? weights.renamed(currentLayoutName(layout)) : weights;
}

/** A checkpoint's language model, under the usual names. */
export interface LanguageModelWeights {
  readonly layout: LanguageModelLayout;
  /** The language model's tensors as `model.*` / `lm_head.*` (the checkpoint itself for a causal LM). */
  readonly weights: SafetensorsCollection;
  /** The DF11 pattern_dict for `weights`' module paths (undefined for a BF16 model). */
  readonly patternDict?: PatternDict;
  /** Stored tensors that are not the language model's (a vision tower, a projector): not loaded. */
  readonly leftOut: readonly string[];
}

/**
 * The language model of a checkpoint — all of it for a causal LM; for a multimodal checkpoint (e.g.
 * gemma-3 `Gemma3ForConditionalGeneration`, either layout) its language model under the usual
 * `model.*` / `lm_head.*` names, the vision tower and projector left out. A DF11 model's pattern_dict
 * is restated for the renamed modules (one exact entry per module), so `weightNamesOf` and the
 * weight stores work unchanged. CPU and GPU loaders both go through this.
 */
export function languageModelOf(weights: SafetensorsCollection, patternDict?: PatternDict): LanguageModelWeights {
  const layout = languageModelLayout(weights.names());
  if (layout.kind === "causal-lm") return { layout, weights, patternDict, leftOut: [] };
  const view = weights.renamed(layout.usualName);
  const leftOut = weights.names().filter((n) => layout.usualName(n) === undefined);
  if (!patternDict) return { layout, weights: view, leftOut };
  const usual: Record<string, readonly string[]> = {};
  for (const stored of compressedModulesOf(weights.names())) {
    const name = layout.usualName(stored);
    if (name !== undefined) usual[escapePath(name)] = patternEntryOf(patternDict, stored).subs;
  }
  return { layout, weights: view, patternDict: usual, leftOut };
}
