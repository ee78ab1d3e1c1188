#!/usr/bin/env bash
# On the GPU host (after `source scripts/gpu/setup.sh`): writes the Llama-3.1-8B-shaped BF16 model,
# compresses it with df11, times transformers BF16 on it, then our engine (BF16 and DF11).
# Results into $1: transformers.json, gpu-generate.json, bench.log.
set -euo pipefail
out=${1:-gpu-logs}
work=${DF11_BENCH_WORK:-/tmp/df11-bench}
mkdir -p "$out" "$work"
stamp() { echo "[$(date +%T)] $*"; }
if [ ! -f "$work/bf16/config.json" ]; then
  stamp "writing the 8B-shaped model"
  python3 tools/make_bench_model.py "$work/bf16"
fi
if [ ! -f "$work/df11/config.json" ]; then
  stamp "df11 compress"
  /usr/bin/time -v node packages/cli/dist/bin.js compress "$work/bf16" -o "$work/df11" 2> >(grep -E "Maximum resident|Elapsed" >&2)
fi
if [ -z "${SKIP_GENERATE:-}" ]; then
  stamp "transformers BF16"
  PYTHONUNBUFFERED=1 python3 tools/transformers_bench.py "$work/bf16" "${PROMPT:-512}" "${NEW:-256}" "$out/transformers.json"
  stamp "df11 engine"
  [ -f "$out/cublas-floor.json" ] || PYTHONUNBUFFERED=1 python3 tools/cublas_floor.py "$out/cublas-floor.json" > /dev/null
  node apps/bench/dist/gpu-generate.js --bf16 "$work/bf16" --df11 "$work/df11" --reference "$out/transformers.json" --floor "$out/cublas-floor.json" \
    --prompt-tokens "${PROMPT:-512}" --new-tokens "${NEW:-256}" --chunks "${CHUNKS:-}" ${PROFILE:+--profile} ${NO_PDL:+--no-pdl} --out "$out/gpu-generate.json"
  stamp "done"
fi
if [ -n "${SERVE:-}" ]; then
  stamp "serving benchmark"
  node apps/bench/dist/gpu-serve.js --bf16 "$work/bf16" --df11 "$work/df11" ${SERVE_FLAGS:-} --out "$out/gpu-serve${SERVE_TAG:-}.json"
  stamp "done"
fi
