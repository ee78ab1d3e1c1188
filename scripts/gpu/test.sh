#!/usr/bin/env bash
# On the GPU host (after `source scripts/gpu/setup.sh`): the GPU tests, then compute-sanitizer memcheck on
# the decode and generation workloads. Logs into $1 (default: ./gpu-logs).
set -uo pipefail
out=${1:-gpu-logs}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv | tee "$out/device.txt"
node --test --test-reporter=spec packages/cuda-kernel/test/*.test.mjs 2>&1 | tee "$out/gpu-test.log"
status=${PIPESTATUS[0]}
if [ "${SKIP_SANITIZER:-}" = "" ]; then
  for w in sanitize.mjs sanitize-generation.mjs; do
    compute-sanitizer --tool memcheck --leak-check full --error-exitcode 9 node packages/cuda-kernel/scripts/$w 2>&1 | tail -20 | tee -a "$out/sanitize.log"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
  done
fi
exit $status
