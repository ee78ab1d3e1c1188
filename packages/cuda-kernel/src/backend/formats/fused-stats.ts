// Per-matrix figures of the fused layout, from the weights' placement (pure: no device calls, so the
// grouping is tested without a GPU).

/** What a fused matrix reports about itself (FusedDeviceMatrix has these). */
export interface FusedMatrixCost {
  readonly rows: number;
  readonly cols: number;
  /** Escaped weights (exponent outside their row's table). */
  readonly escapes: number;
  /** Device bytes of the layout: blocks, tables, escape offsets and escapes. */
  readonly deviceBytes: number;
}

/** One fused matrix as the benchmarks report it. */
export interface FusedMatrixStats {
  /** Its first weight's name (kept for the reports that read `name`). */
  readonly name: string;
  /** Every weight held in it, in row order: one, or the members of a fused projection (q|k|v, gate|up). */
  readonly names: readonly string[];
  readonly rows: number;
  readonly cols: number;
  readonly escapes: number;
  /** Device bytes of the layout. */
  readonly bytes: number;
  /** bytes · 8 / (rows · cols). */
  readonly bitsPerWeight: number;
  /** escapes / (rows · cols). */
  readonly escapeRate: number;
}

/**
 * One entry per distinct matrix among `placed` (weight name → the matrix holding it and its first row
 * there), in order of first appearance, with every name it holds sorted by first row. A weight held by
 * a matrix that `isFused` rejects (BF16, Huffman) is left out.
 */
export function fusedMatrixStats<M extends object>(
  placed: Iterable<readonly [string, { readonly matrix: M; readonly firstRow: number }]>,
  isFused: (m: M) => m is M & FusedMatrixCost,
): FusedMatrixStats[] {
  const members = new Map<M & FusedMatrixCost, Array<{ name: string; firstRow: number }>>();
  for (const [name, { matrix, firstRow }] of placed) {
    if (!isFused(matrix)) continue;
    const list = members.get(matrix) ?? [];
    if (!list.some((m) => m.name === name)) list.push({ name, firstRow });
    members.set(matrix, list);
  }
  return [...members].map(([m, list]) => {
    const names = [...list].sort((a, b) => a.firstRow - b.firstRow).map((x) => x.name);
    const weights = m.rows * m.cols;
    return { name: list[0].name, names, rows: m.rows, cols: m.cols, escapes: m.escapes, bytes: m.deviceBytes, bitsPerWeight: (m.deviceBytes * 8) / weights, escapeRate: m.escapes / weights };
  });
}
