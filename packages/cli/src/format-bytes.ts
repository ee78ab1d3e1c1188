/** Human-readable byte size (binary units). */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(u === 0 ? 0 : 2)} ${units[u]}`;
}

/** Parse sizes like `5GB`, `500MiB`, `1e9`. */
export function parseBytes(text: string): number {
  const m = /^\s*([\d.e+]+)\s*([kmgt]?i?b?)?\s*$/i.exec(text);
  if (!m) throw new Error(`not a size: ${text}`);
  const unit = (m[2] ?? "").toLowerCase();
  const base = unit.includes("i") ? 1024 : 1000;
  const power = { "": 0, k: 1, m: 2, g: 3, t: 4 }[unit[0] ?? ""] ?? 0;
  return Math.round(Number(m[1]) * base ** power);
}

export const percent = (x: number): string => `${(x * 100).toFixed(2)} %`;
