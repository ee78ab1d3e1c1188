// The GPU generation bench's per-matrix report of the fused layout: every matrix (name, kind, shape, bits
// per weight, escape rate, bytes) as a compact table, and per-kind min/mean/max. Pure: the figures come
// from CudaBackend.fusedMatrices() on a GPU, or from the reference encoder (@df11/codec) in the tests.

/** One fused matrix's figures (CudaBackend.fusedMatrices() gives these, and more). */
export interface FusedMatrixFigures {
  /** Every weight held in the matrix, in row order (several for a fused projection: q|k|v, gate|up). */
  readonly names: readonly string[];
  readonly rows: number;
  readonly cols: number;
  readonly escapes: number;
  /** Bytes of the layout (device bytes on the GPU). */
  readonly bytes: number;
}

/** The columns of {@link FusedMatricesReport.perMatrix}'s rows. */
export const PER_MATRIX_COLUMNS = ["name", "kind", "rows", "cols", "bitsPerWeight", "escapeRate", "bytes"] as const;

/** One matrix: [name, kind, rows, cols, bits per weight (4 decimals), escape rate (4 significant digits), bytes]. */
export type PerMatrixRow = [name: string, kind: string, rows: number, cols: number, bitsPerWeight: number, escapeRate: number, bytes: number];

/** Min, mean (over the matrices, unweighted) and max of a figure. */
export interface Spread {
  readonly min: number;
  readonly mean: number;
  readonly max: number;
}

/** The matrices of one kind together. */
export interface KindSummary {
  /** e.g. `q+k+v` (one fused matrix holds the three projections), `o`, `gate+up`, `down`, `lm_head`. */
  readonly kind: string;
  readonly matrices: number;
  readonly weights: number;
  readonly bytes: number;
  readonly bitsPerWeight: Spread;
  readonly escapeRate: Spread;
}

/** What the bench JSON's `fused` carries besides the layout's totals. */
export interface FusedMatricesReport {
  /** How many fused matrices (all of them are in `perMatrix`). */
  readonly matrixCount: number;
  readonly perMatrixColumns: typeof PER_MATRIX_COLUMNS;
  /** Every matrix, embedding first, then by layer and kind, lm_head last. */
  readonly perMatrix: PerMatrixRow[];
  /** Per kind, in the order of a layer (q, k, v, o, gate, up, down), then lm_head, embed_tokens, others. */
  readonly byKind: KindSummary[];
}

/** Projections as kinds: `q_proj` → `q`, `gate_up_proj` → `gate_up` (phi3), `lm_head`, `embed_tokens`. */
export function weightKind(name: string): string {
  const parts = name.replace(/\.weight$/, "").split(".");
  return parts[parts.length - 1].replace(/_proj$/, "");
}

/** A matrix's kind: its weights' kinds joined by `+` (`q+k+v` for a fused q|k|v projection). */
export function matrixKind(names: readonly string[]): string {
  return [...new Set(names.map(weightKind))].join("+");
}

/**
 * A matrix's weight names in one: the name itself, or the common prefix and suffix around the parts that
 * differ, e.g. `model.layers.0.self_attn.{q,k,v}_proj.weight`.
 */
export function groupName(names: readonly string[]): string {
  if (names.length === 1) return names[0];
  let prefix = names[0];
  for (const n of names) while (!n.startsWith(prefix)) prefix = prefix.slice(0, -1);
  const rests = names.map((n) => n.slice(prefix.length));
  let suffix = rests[0];
  for (const r of rests) while (!r.endsWith(suffix)) suffix = suffix.slice(1);
  // Keep whole words in the braces: cut the prefix back to a separator.
  const cut = Math.max(prefix.lastIndexOf("."), prefix.lastIndexOf("_")) + 1;
  const head = prefix.slice(0, cut);
  const middles = names.map((n) => n.slice(head.length, n.length - suffix.length));
  return `${head}{${middles.join(",")}}${suffix}`;
}

const KIND_ORDER = ["embed_tokens", "q", "k", "v", "q+k+v", "qkv", "o", "gate", "up", "gate+up", "gate_up", "down", "lm_head"];
const kindRank = (kind: string) => (KIND_ORDER.includes(kind) ? KIND_ORDER.indexOf(kind) : KIND_ORDER.length);
/** Decoder layer index of a weight (`model.layers.12.…`), -1 before the layers (embedding), +∞ after (lm_head, others). */
const layerOf = (names: readonly string[], kind: string) => {
  const m = /\.layers\.(\d+)\./.exec(names[0]);
  return m ? Number(m[1]) : kind === "embed_tokens" ? -1 : Infinity;
};

const spread = (values: readonly number[]): Spread => ({ min: Math.min(...values), mean: values.reduce((a, b) => a + b, 0) / values.length, max: Math.max(...values) });
const round = (x: number, decimals: number) => Number(x.toFixed(decimals));

/**
 * Every fused matrix as a compact row (see {@link PER_MATRIX_COLUMNS}) and per-kind summaries of bits
 * per weight and escape rate (min/mean/max over the matrices; computed before rounding). Throws
 * RangeError for a matrix without weights or names.
 */
export function fusedMatricesReport(matrices: readonly FusedMatrixFigures[]): FusedMatricesReport {
  const rows = matrices.map((m) => {
    const weights = m.rows * m.cols;
    if (!(weights > 0) || m.names.length === 0) throw new RangeError(`fused matrix ${m.names.join(",") || "(unnamed)"}: ${m.rows} × ${m.cols} weights`);
    const kind = matrixKind(m.names);
    return { m, kind, weights, layer: layerOf(m.names, kind), bitsPerWeight: (m.bytes * 8) / weights, escapeRate: m.escapes / weights };
  });
  rows.sort((a, b) => a.layer - b.layer || kindRank(a.kind) - kindRank(b.kind) || a.m.names[0].localeCompare(b.m.names[0]));
  const kinds = [...new Set(rows.map((r) => r.kind))].sort((a, b) => kindRank(a) - kindRank(b) || a.localeCompare(b));
  return {
    matrixCount: rows.length,
    perMatrixColumns: PER_MATRIX_COLUMNS,
    perMatrix: rows.map((r): PerMatrixRow => [groupName(r.m.names), r.kind, r.m.rows, r.m.cols, round(r.bitsPerWeight, 4), Number(r.escapeRate.toPrecision(4)), r.m.bytes]),
    byKind: kinds.map((kind) => {
      const of = rows.filter((r) => r.kind === kind);
      return {
        kind,
        matrices: of.length,
        weights: of.reduce((n, r) => n + r.weights, 0),
        bytes: of.reduce((n, r) => n + r.m.bytes, 0),
        bitsPerWeight: spread(of.map((r) => r.bitsPerWeight)),
        escapeRate: spread(of.map((r) => r.escapeRate)),
      };
    }),
  };
}
