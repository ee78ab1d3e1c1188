import type { TextModelConfig } from "../config.js";
import { ConfigError, WeightLayoutError } from "../errors.js";

/**
 * Tensor parallelism (Megatron-LM style) over W GPUs: which slice of each weight every rank holds, and
 * where the partial results meet. A weight W has shape [N, K] (out features × in features; y = x·Wᵀ).
 *
 * - **Column-parallel** (q/k/v, gate/up, and phi3's fused qkv_proj / gate_up_proj): a rank holds rows of
 *   W — its attention heads, its KV heads, its share of the intermediate features — and computes those
 *   outputs completely. Nothing is exchanged: its attention heads and its MLP features stay local.
 * - **Row-parallel** (o_proj, down_proj): a rank holds the K columns matching the features it produced
 *   and computes a partial sum of every output; an **all-reduce (sum)** over the ranks completes it. This
 *   is the only exchange inside a layer: two all-reduces of [rows, hidden] per layer, each before the
 *   residual add and before any norm (gemma's post-norms are not linear). Equivalently rank 0 adds its
 *   partial onto the residual stream, the others write their partial alone, and the residual buffer is
 *   all-reduced in place (`linear(..., accumulate)` on rank 0 only). A bias of a row-parallel layer is
 *   added once: rank 0 holds it.
 * (The CUDA backend, `TensorParallelBackend`, runs this plan with replicated embeddings and a vocabulary
 * that divides over the GPUs; it refuses the rest. The padded shards and `embeddings: "vocab"` below are
 * the plan's, checked by its tests on the CPU.)
 * - **lm_head** is split by vocabulary rows: each rank computes the logits of its vocabulary shard.
 *   Greedy choice: every rank's (largest logit, its global index) → {@link combineArgmax} (an all-gather
 *   of one pair per row). Sampling: all-gather the shards (padded to {@link TensorParallelPlan.vocabShard})
 *   and {@link assembleLogits}. A tied lm_head uses the same rows of the embedding table.
 * - **Embeddings** are replicated by default (every rank looks tokens up locally: no exchange; it costs
 *   vocab × hidden BF16 per GPU, e.g. 2.1 GB for Llama-3-70B, less as DF11). `embeddings: "vocab"` splits
 *   them by the same vocabulary shards: a rank returns the row of a token it holds and zeros otherwise,
 *   and an all-reduce (sum, exact: one term is non-zero) completes the lookup.
 * - **KV heads** are split when W divides num_key_value_heads. When num_key_value_heads < W and divides W
 *   (e.g. 8 KV heads over 16 GPUs, or 2 over 4) each KV head is **replicated** on W / num_key_value_heads
 *   ranks: a rank holds the one KV head its query heads read (grouped-query attention keeps working
 *   locally), at the cost of that head's k/v projection and KV cache on each of those ranks. Any other
 *   ratio is refused.
 * - Norm weights (RMSNorm, q/k head norms) are replicated; RoPE, attention scale, sliding windows and
 *   soft-capping act per head or per row and need nothing.
 *
 * On every rank the layer runs as an ordinary model with {@link RankShard.config} (its own heads, KV
 * heads and intermediate size), plus the all-reduces above. A DF11 module is decoded or transcoded per
 * rank for its slices only: column-parallel slices are whole-row ranges, row-parallel slices one range
 * per row ({@link sliceElementRanges}).
 */

/** A half-open range [start, end). */
export type Range = readonly [start: number, end: number];

/** W does not fit the model: names the config.json field that does not divide. */
export class TensorParallelError extends ConfigError {
  override name = "TensorParallelError";
  constructor(
    key: string,
    detail: string,
    /** The world size asked for. */
    readonly worldSize: number,
  ) {
    super(key, detail);
  }
}

/** How one weight is held across the ranks. */
export type SplitKind =
  /** Rows of the full matrix (column-parallel layers, lm_head, vocab-split embeddings, their biases). */
  | "rows"
  /** Columns (row-parallel layers: partial sums, all-reduced). */
  | "columns"
  /** The whole tensor on every rank. */
  | "replicated"
  /** The whole tensor on rank 0 only (bias of a row-parallel layer: added once). */
  | "rank0";

/** The part of one weight a rank holds. */
export interface WeightSlice {
  readonly name: string;
  readonly split: SplitKind;
  /** Shape of the full tensor: [rows, cols] for a matrix, [n] for a vector (bias, norm). */
  readonly shape: readonly number[];
  /**
   * Rows (vector elements) of the full tensor held, in the order the local tensor stacks them: one range,
   * or several for fused weights (phi3 qkv_proj: its q, k and v rows; gate_up_proj: its gate and up
   * rows). Empty on ranks other than 0 for a `rank0` tensor.
   */
  readonly rows: readonly Range[];
  /** Columns held (all of them except for `columns` splits); [0, 0] for a vector. */
  readonly columns: Range;
  /** Shape of the local tensor. */
  readonly localShape: readonly number[];
}

/** One rank's share of the model. */
export interface RankShard {
  readonly rank: number;
  /** Global indices of the query heads it computes. */
  readonly qHeads: Range;
  /** Global indices of the KV heads it holds (replicated heads appear on several ranks). */
  readonly kvHeads: Range;
  /** Intermediate (MLP) features it computes. */
  readonly intermediate: Range;
  /** Vocabulary rows of lm_head it holds (and of the embeddings when they are vocab-split). */
  readonly vocab: Range;
  /**
   * The model as this rank runs it: numHeads, numKvHeads and intermediateSize are its own, vocabSize is
   * its lm_head shard's rows; everything else is the model's. Local query head j reads local KV head
   * ⌊j / (numHeads / numKvHeads)⌋, the usual grouped-query rule.
   */
  readonly config: TextModelConfig;
  /** The slice of a weight (any tensor name of the model) this rank holds. Throws WeightLayoutError for a tensor it has no rule for. */
  slice(name: string): WeightSlice;
  /** lm_head's slice (the embedding table's rows when the model ties them). */
  readonly lmHead: WeightSlice;
}

export interface TensorParallelOptions {
  /** `replicated` (default): every rank holds the embedding table; `vocab`: split like lm_head, lookups all-reduced. */
  readonly embeddings?: "replicated" | "vocab";
}

/** The whole plan: per-rank shards and the shapes shared by all. */
export interface TensorParallelPlan {
  readonly worldSize: number;
  readonly embeddings: "replicated" | "vocab";
  readonly qHeadsPerRank: number;
  readonly kvHeadsPerRank: number;
  /** Ranks holding each KV head: 1 when KV heads are split, W / num_key_value_heads when replicated. */
  readonly kvReplicas: number;
  readonly intermediatePerRank: number;
  /** Rows of each vocabulary shard (⌈vocab / W⌉; the last shard may hold fewer and is padded to this). */
  readonly vocabShard: number;
  /** Tensor names whose partial outputs are all-reduced (sum), per layer, as suffixes of `model.layers.N.`. */
  readonly allReduceAfter: readonly string[];
  readonly ranks: readonly RankShard[];
}

const range = (start: number, length: number): Range => [start, start + length];
const rowsOf = (rows: readonly Range[]) => rows.reduce((s, [a, b]) => s + b - a, 0);

/**
 * The tensor-parallel plan for `config` over `worldSize` GPUs. Throws {@link TensorParallelError} naming
 * num_attention_heads, num_key_value_heads or intermediate_size when it does not divide (see the module
 * comment for the KV-head replication rule).
 */
export function tensorParallelPlan(config: TextModelConfig, worldSize: number, options: TensorParallelOptions = {}): TensorParallelPlan {
  const W = worldSize;
  if (!Number.isInteger(W) || W < 1) throw new RangeError(`tensor parallelism: world size ${W} is not a positive integer`);
  const { numHeads, numKvHeads, intermediateSize, headDim, hiddenSize, vocabSize } = config;
  if (numHeads % W !== 0) throw new TensorParallelError("num_attention_heads", `${numHeads} attention heads do not divide over ${W} GPUs`, W);
  if (numKvHeads % W !== 0 && W % numKvHeads !== 0) {
    throw new TensorParallelError("num_key_value_heads", `${numKvHeads} KV heads neither divide over ${W} GPUs nor divide ${W} (to be replicated)`, W);
  }
  if (intermediateSize % W !== 0) throw new TensorParallelError("intermediate_size", `${intermediateSize} intermediate features do not divide over ${W} GPUs`, W);
  const embeddings = options.embeddings ?? "replicated";
  const qPer = numHeads / W;
  const kvReplicas = numKvHeads % W === 0 ? 1 : W / numKvHeads;
  const kvPer = kvReplicas === 1 ? numKvHeads / W : 1;
  const iPer = intermediateSize / W;
  const vocabShard = Math.ceil(vocabSize / W);
  const qDim = numHeads * headDim;
  const kvDim = numKvHeads * headDim;
  const I = intermediateSize;

  const ranks = Array.from({ length: W }, (_, r): RankShard => {
    const qHeads = range(r * qPer, qPer);
    const kvHeads = range(kvReplicas === 1 ? r * kvPer : Math.floor(r / kvReplicas), kvPer);
    const intermediate = range(r * iPer, iPer);
    const vocab: Range = [Math.min(vocabSize, r * vocabShard), Math.min(vocabSize, (r + 1) * vocabShard)];
    const qRows = range(qHeads[0] * headDim, qPer * headDim);
    const kvRows = range(kvHeads[0] * headDim, kvPer * headDim);
    const shift = ([a, b]: Range, by: number): Range => [a + by, b + by];

    const matrix = (name: string, shape: [number, number], split: SplitKind, rows: readonly Range[], columns: Range = [0, shape[1]]): WeightSlice => ({
      name,
      split,
      shape,
      rows,
      columns,
      localShape: [rowsOf(rows), columns[1] - columns[0]],
    });
    const vector = (name: string, n: number, split: SplitKind, rows: readonly Range[] = [[0, n]]): WeightSlice => {
      const held = split === "rank0" && r !== 0 ? [] : rows;
      return { name, split, shape: [n], rows: held, columns: [0, 0], localShape: [rowsOf(held)] };
    };

    const slice = (name: string): WeightSlice => {
      const isBias = name.endsWith(".bias");
      const suffix = name.replace(/^.*?(?=(self_attn|mlp)\.)/, "");
      const rowSplit = (n: number, cols: number, rows: readonly Range[]) => (isBias ? vector(name, n, "rows", rows) : matrix(name, [n, cols], "rows", rows));
      const columnSplit = (n: number, cols: number, columns: Range) => (isBias ? vector(name, n, "rank0") : matrix(name, [n, cols], "columns", [[0, n]], columns));
      if (/(^|\.)embed_tokens\.weight$/.test(name)) {
        return embeddings === "vocab" ? matrix(name, [vocabSize, hiddenSize], "rows", [vocab]) : matrix(name, [vocabSize, hiddenSize], "replicated", [[0, vocabSize]]);
      }
      if (/(^|\.)lm_head\.weight$/.test(name)) return matrix(name, [vocabSize, hiddenSize], "rows", [vocab]);
      if (/norm\.weight$/.test(name)) {
        const n = /(q_norm|k_norm)\.weight$/.test(name) ? headDim : hiddenSize;
        return vector(name, n, "replicated");
      }
      switch (suffix.replace(/\.(weight|bias)$/, "")) {
        case "self_attn.q_proj":
          return rowSplit(qDim, hiddenSize, [qRows]);
        case "self_attn.k_proj":
        case "self_attn.v_proj":
          return rowSplit(kvDim, hiddenSize, [kvRows]);
        case "self_attn.qkv_proj":
          return rowSplit(qDim + 2 * kvDim, hiddenSize, [qRows, shift(kvRows, qDim), shift(kvRows, qDim + kvDim)]);
        case "self_attn.o_proj":
          return columnSplit(hiddenSize, qDim, qRows);
        case "mlp.gate_proj":
        case "mlp.up_proj":
          return rowSplit(I, hiddenSize, [intermediate]);
        case "mlp.gate_up_proj":
          return rowSplit(2 * I, hiddenSize, [intermediate, shift(intermediate, I)]);
        case "mlp.down_proj":
          return columnSplit(hiddenSize, I, intermediate);
      }
      throw new WeightLayoutError(name, "no tensor-parallel rule for this tensor (only llama-family attention, MLP, norm, embedding and lm_head weights are split)");
    };

    const local: TextModelConfig = { ...config, numHeads: qPer, numKvHeads: kvPer, intermediateSize: iPer, vocabSize: vocab[1] - vocab[0] };
    const lmHeadName = config.tieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight";
    return { rank: r, qHeads, kvHeads, intermediate, vocab, config: local, slice, lmHead: matrix(lmHeadName, [vocabSize, hiddenSize], "rows", [vocab]) };
  });

  return {
    worldSize: W,
    embeddings,
    qHeadsPerRank: qPer,
    kvHeadsPerRank: kvPer,
    kvReplicas,
    intermediatePerRank: iPer,
    vocabShard,
    allReduceAfter: ["self_attn.o_proj", "mlp.down_proj"],
    ranks,
  };
}

/**
 * The element ranges [start, end) of the full tensor (row-major) that a slice holds, in local order,
 * adjacent ranges merged: whole-row ranges for a `rows` split, one range per row for a `columns` split.
 * Offsets into a DF11 module's decoded stream are these plus the weight's start there.
 */
export function sliceElementRanges(slice: WeightSlice): Range[] {
  const cols = slice.shape.length === 2 ? slice.shape[1] : 1;
  const [c0, c1] = slice.shape.length === 2 ? slice.columns : [0, 1];
  const out: Array<[number, number]> = [];
  for (const [r0, r1] of slice.rows) {
    for (let r = r0; r < r1; r++) {
      const start = r * cols + c0;
      const end = r * cols + c1;
      const last = out[out.length - 1];
      if (last && last[1] === start) last[1] = end;
      else if (end > start) out.push([start, end]);
    }
  }
  return out;
}

/** The local tensor of a slice, copied out of the full tensor (row-major, any typed array). */
export function extractSlice<T extends Uint16Array | Float32Array | Float64Array>(full: T, slice: WeightSlice): T {
  const expected = slice.shape.reduce((a, b) => a * b, 1);
  if (full.length !== expected) throw new WeightLayoutError(slice.name, `${full.length} elements, the plan expects ${JSON.stringify(slice.shape)}`);
  const out = new (full.constructor as new (n: number) => T)(slice.localShape.reduce((a, b) => a * b, 1));
  let at = 0;
  for (const [start, end] of sliceElementRanges(slice)) {
    out.set(full.subarray(start, end) as never, at);
    at += end - start;
  }
  return out;
}

/** One rank's greedy candidate for a row: its largest logit and that logit's global vocabulary index. */
export interface ArgmaxCandidate {
  readonly value: number;
  readonly index: number;
}

/**
 * The global argmax from the ranks' candidates: the largest value, ties to the smallest index (what an
 * argmax over the whole row returns). NaN never wins unless every candidate is NaN.
 */
export function combineArgmax(candidates: readonly ArgmaxCandidate[]): number {
  let best = candidates[0];
  for (const c of candidates) {
    if (c.value > best.value || (c.value === best.value && c.index < best.index) || (Number.isNaN(best.value) && !Number.isNaN(c.value))) best = c;
  }
  return best.index;
}

/**
 * Full-vocabulary logits [rows, vocab] from an all-gather of the ranks' shards, laid out [W, rows,
 * vocabShard] (rank-major, each shard padded to `plan.vocabShard`; the padding is dropped).
 */
export function assembleLogits(plan: TensorParallelPlan, gathered: Float32Array, rows: number): Float32Array {
  const S = plan.vocabShard;
  if (gathered.length !== plan.worldSize * rows * S) throw new RangeError(`assembleLogits: ${gathered.length} values, expected ${plan.worldSize} × ${rows} × ${S}`);
  const V = plan.ranks[plan.worldSize - 1].vocab[1];
  const out = new Float32Array(rows * V);
  for (const { rank, vocab } of plan.ranks) {
    const n = vocab[1] - vocab[0];
    for (let r = 0; r < rows; r++) out.set(gathered.subarray((rank * rows + r) * S, (rank * rows + r) * S + n), r * V + vocab[0]);
  }
  return out;
}
