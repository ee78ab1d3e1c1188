import type { VerifyReport } from "./verify.js";
import type { CompressSummary } from "./compress.js";
import type { InspectReport } from "./inspect.js";
import { formatBytes, percent } from "./format-bytes.js";
import { formatDtypes } from "./model-info.js";

const table = (rows: string[][]): string => {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("  ")).join("\n");
};

/** The summary `df11 compress` prints. */
export function formatCompressSummary(s: CompressSummary, output: string): string {
  const lines = [
    `Compressed ${s.modules} modules (${s.architecture}) in ${s.seconds.toFixed(1)} s → ${output}`,
    table([
      ["", "original", "DF11", "ratio"],
      ["compressed weights", formatBytes(s.weightBytes), formatBytes(s.compressedWeightBytes), percent(s.compressedWeightBytes / Math.max(1, s.weightBytes))],
      ["whole model", formatBytes(s.inputBytes), formatBytes(s.outputBytes), percent(s.outputBytes / Math.max(1, s.inputBytes))],
    ]),
    `Throughput: ${(s.weightBytes / 2 / 1e6 / s.seconds).toFixed(1)} M elements/s`,
  ];
  if (s.keptUncompressed.length) lines.push(`Kept as BF16 (values DF11 cannot code): ${s.keptUncompressed.join(", ")}`);
  lines.push(`Files: ${s.files.join(", ")}`);
  return lines.join("\n");
}

/** The per-module table `df11 inspect` prints. */
export function formatInspectReport(r: InspectReport): string {
  const stored = formatDtypes(r.uncompressedDtypes);
  if (r.format === "plain") {
    const bf16 = r.uncompressedDtypes.some((d) => d.dtype === "BF16");
    return [
      `${r.path} — not DFloat11-compressed (config.json has no dfloat11_config): ${r.uncompressedTensors} tensors, ${formatBytes(r.uncompressedBytes)}`,
      `Stored as ${stored}`,
      bf16 ? "df11 compress compresses its BF16 matrices" : "No BF16 tensors: DFloat11 is lossless for BF16 weights only, so df11 compress has nothing to compress here",
    ].join("\n");
  }
  const rows = [["module", "elements", "original", "DF11", "ratio", "bits/exp", "entropy", "code lengths", "LUT rows"]];
  for (const m of r.modules) {
    const lens = m.codeLengths.map(([, l]) => l);
    rows.push([
      m.module,
      String(m.elements),
      formatBytes(m.originalBytes),
      formatBytes(m.compressedBytes),
      percent(m.ratio),
      m.exponentBitsPerElement.toFixed(3),
      (m.exponentEntropy ?? 0).toFixed(3),
      `${m.codeLengths.length} codes, ${Math.min(...lens)}–${Math.max(...lens)} bits`,
      String(m.lutRows),
    ]);
  }
  const t = r.totals;
  rows.push(["total (compressed modules)", "", formatBytes(t.originalBytes), formatBytes(t.compressedBytes), percent(t.ratio), "", "", "", ""]);
  return [
    `${r.path} — DFloat11 ${r.version}, ${r.modules.length} compressed modules (BF16), ${r.uncompressedTensors} uncompressed tensors (${formatBytes(r.uncompressedBytes)}${stored ? `; ${stored}` : ""})`,
    ...(r.modules.length ? [table(rows)] : []),
    `Model: ${formatBytes(t.modelOriginalBytes)} decompressed → ${formatBytes(t.modelBytes)} as stored (${percent(t.modelBytes / Math.max(1, t.modelOriginalBytes))})`,
  ].join("\n");
}

/** What `df11 verify` could check against recorded checksums, and what it could not. */
export function formatChecksumCoverage(c: VerifyReport["checksums"]): string {
  if (c.filesWithout.length > 0 && c.storedTensors === 0) {
    return `Checksums: none recorded (${c.filesWithout.length} file(s); an official model, or written with --no-checksums): verified by decoding only; df11 seal adds them`;
  }
  const lines = [`Checksums (${c.writers.join(", ") || "df11"}): ${c.storedTensors} stored tensors and ${c.decodedModules} modules' decoded weights match`];
  if (c.filesWithout.length > 0) lines.push(`  not covered: ${c.filesWithout.length} file(s) record none: ${c.filesWithout.join(", ")}`);
  if (c.uncheckedTensors.length > 0) lines.push(`  not covered: ${c.uncheckedTensors.length} tensors without a record, e.g. ${c.uncheckedTensors.slice(0, 3).join(", ")}`);
  return lines.join("\n");
}
