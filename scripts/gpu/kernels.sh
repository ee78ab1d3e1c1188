#!/usr/bin/env bash
# On the GPU host (after `source scripts/gpu/setup.sh`): the GPU tests, the GEMV kernel bench (with and
# without programmatic dependent launches) and the cuBLAS floor of a token's GEMVs. Logs into $1.
set -uo pipefail
out=${1:-gpu-logs}
mkdir -p "$out"
status=0
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.used,memory.total --format=csv | tee "$out/device.txt"
node --test --test-reporter=spec ${TESTS:-packages/cuda-kernel/test/*.test.mjs} 2>&1 | tee "$out/gpu-test.log" | grep -E "^✔|^✖|^ℹ (tests|pass|fail)|not ok|Error|error" | head -80
[ "${PIPESTATUS[0]}" = 0 ] || status=1
if [ -z "${SKIP_BENCH:-}" ]; then
  node apps/bench/dist/gemv-kernels.js --out "$out/gemv-kernels.json" 2>&1 | tee "$out/gemv-kernels.log" | tail -40
  DF11_PDL=0 node apps/bench/dist/gemv-kernels.js --rows 1,16 --out "$out/gemv-kernels-no-pdl.json" 2>&1 | tee "$out/gemv-kernels-no-pdl.log" | grep token
  PYTHONUNBUFFERED=1 python3 tools/cublas_floor.py "$out/cublas-floor.json" 2>&1 | tail -12
fi
exit $status
