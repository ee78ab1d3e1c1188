#!/usr/bin/env bash
# On the GPU host (after `source scripts/gpu/setup.sh`): peak RSS and time of df11 compress / decompress /
# verify on the Llama-3.1-8B-shaped model and on a 70B-layer-shaped slice, at the default --max-memory and
# at a small one; then the checksum benchmark (CPU GB/s, GPU ms per layer). Results into $1.
set -euo pipefail
out=${1:-gpu-logs}
work=${DF11_BENCH_WORK:-/tmp/df11-bench}
mkdir -p "$out" "$work"
stamp() { echo "[$(date +%T)] $*"; }
runs="$out/scale-runs.jsonl"
export NODE_OPTIONS="${NODE_OPTIONS:-}"
: > "$runs"
# measure LABEL MODEL CMD...: /usr/bin/time -v around a df11 command; one JSON line per run.
measure() {
  local label=$1 model=$2; shift 2
  stamp "$label: $*"
  /usr/bin/time -v -o "$work/time.txt" node packages/cli/dist/bin.js "$@" > "$work/stdout.txt" 2> "$work/stderr.txt" || { cat "$work/stderr.txt"; return 1; }
  grep -h "warning" "$work/stderr.txt" || true
  local rss secs
  rss=$(awk -F': ' '/Maximum resident/ {print $2 * 1024}' "$work/time.txt")
  secs=$(awk -F': ' '/Elapsed/ {split($2, t, ":"); s = 0; for (i = 1; i <= length(t); i++) s = s * 60 + t[i]; print s}' "$work/time.txt")
  local warn
  warn=$(grep -h "warning" "$work/stderr.txt" | head -1 | sed 's/"/\\"/g' || true)
  echo "{\"label\":\"$label\",\"model\":\"$model\",\"command\":\"$*\",\"peakRssBytes\":$rss,\"seconds\":$secs,\"warning\":\"$warn\"}" | tee -a "$runs"
}
for shape in ${SHAPES:-8b 70b-slice}; do
  dir="$work/$shape"
  if [ ! -f "$dir-bf16/config.json" ]; then stamp "writing $shape"; python3 tools/make_bench_model.py "$dir-bf16" "$shape"; fi
  du -sb "$dir-bf16" | tee -a "$out/scale-sizes.txt"
  rm -rf "$dir-df11" "$dir-back" "$dir-df11-small"
  measure "compress (default --max-memory)" "$shape" compress "$dir-bf16" -o "$dir-df11"
  measure "compress --max-memory 6GB" "$shape" compress "$dir-bf16" -o "$dir-df11-small" --max-memory 6GB
  same=1; for f in "$dir-df11"/*; do cmp -s "$f" "$dir-df11-small/$(basename "$f")" || same=0; done
  stamp "outputs at both budgets byte-identical: $same"
  rm -rf "$dir-df11-small"
  measure "verify" "$shape" verify "$dir-df11"
  measure "decompress (default --max-memory)" "$shape" decompress "$dir-df11" -o "$dir-back"
  rm -rf "$dir-back"
  measure "decompress --max-memory 6GB" "$shape" decompress "$dir-df11" -o "$dir-back" --max-memory 6GB
  rm -rf "$dir-back"
  if [ "$shape" = 8b ]; then
    stamp "checksum benchmark"
    node apps/bench/dist/checksum-bench.js --df11 "$dir-df11" --out "$out/checksum.json"
  fi
  rm -rf "$dir-bf16" "$dir-df11" # room on the disk for the next shape
done
stamp "done"
