#!/usr/bin/env bash
# On the GPU host (after `source scripts/gpu/setup.sh`): the stages named in $STAGES (default: every one
# below but steps, ncu and 70b) —
# tests (GPU tests), sanitize (compute-sanitizer memcheck workloads), kernels (GEMV bench + cuBLAS floor),
# gemm (the prefill GEMM's kernels, BF16 and DF11 fused, vs torch F.linear on the 8B shapes at 128…2048 rows),
# generate (8B generation bench, transformers in the same run), serve (HTTP serving bench), batch
# (df11 generate --batch-size 1,8,32), peer (the official dfloat11 package on df11's files), cli (the df11
# command on a reference model: every --gpu-weights, serve's /health), tp (the 8B model on one GPU vs tensor
# parallel over all of them; its tests run with `tests`, its sanitizer workload with `sanitize`), offload
# (--max-gpu-memory on the 8B models: BF16 / DF11 offloaded vs DF11 resident, longest context per budget),
# steps (decode steps of 1…64 sequences, BF16 vs fused, with a per-op profile, and how many 4,096-position
# sequences each layout holds; STEP_POSITION=4000 adds a run with every sequence first filled to 4,000
# positions → decode-steps-4k.json), ncu (per-kernel counters),
# 70b (not in the default list: a Llama-3.3-70B-shaped DF11 model made here, one GPU vs all of them).
# Logs go to $LOGS (default /tmp/df11-logs) and are packed into $1/results.tar.gz after every stage (the
# device tool returns at most 8 files, and nothing if the call runs out of time before a final step),
# with a short summary in $1/summary.txt.
set -uo pipefail
out=${1:-gpu-logs}
logs=${LOGS:-/tmp/df11-logs}
mkdir -p "$logs" "$out"
stages=${STAGES:-tests sanitize kernels gemm generate serve batch peer cli tp offload}
has() { [[ " $stages " == *" $1 "* ]]; }
summary="$out/summary.txt"
stamp() {
  tar -czf "$out/results.tar.gz" -C "$(dirname "$logs")" "$(basename "$logs")" 2>/dev/null
  echo "[$(date +%T)] $*" | tee -a "$summary"
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$summary"
if has tests; then
  stamp "GPU tests"
  # The device-memory tests (cudaMemGetInfo is device-wide) run alone first; the other files run side by side.
  alone=packages/cuda-kernel/test/device-heap.test.mjs
  node --test --test-reporter=spec $alone > "$logs/gpu-test-alone.log" 2>&1
  node --test --test-reporter=spec $(ls packages/cuda-kernel/test/*.test.mjs | grep -vxF $alone) > "$logs/gpu-test.log" 2>&1
  for f in gpu-test-alone gpu-test; do echo "$f:"; grep -E "^ℹ (tests|pass|fail|skipped)|^✖" "$logs/$f.log" | head -20; done | tee -a "$summary"
fi
if has sanitize; then
  stamp "compute-sanitizer memcheck"
  for w in sanitize.mjs sanitize-generation.mjs sanitize-tp.mjs; do
    # NCCL probes the driver with calls that fail by design (error 209 at init): API errors are not
    # counted for the tensor-parallel workload; df11 checks every CUDA call's result itself.
    api=$([ $w = sanitize-tp.mjs ] && echo "--report-api-errors no" || true)
    timeout ${SANITIZE_TIMEOUT:-100} compute-sanitizer --tool memcheck $api --leak-check full --error-exitcode 9 node packages/cuda-kernel/scripts/$w > "$logs/sanitize-$w.log" 2>&1
    echo "$w: exit $? $(grep -E 'ERROR SUMMARY|LEAK SUMMARY' "$logs/sanitize-$w.log" | tr '\n' ' ')" | tee -a "$summary"
  done
fi
if has kernels; then
  stamp "GEMV kernels"
  node apps/bench/dist/gemv-kernels.js --out "$logs/gemv-kernels.json" > "$logs/gemv-kernels.log" 2>&1
  grep -E "^token|x 1:|unpack" "$logs/gemv-kernels.log" | tee -a "$summary"
  PYTHONUNBUFFERED=1 python3 tools/cublas_floor.py "$logs/cublas-floor.json" > "$logs/cublas-floor.log" 2>&1
  grep -E "msPerToken|deviceCopy" "$logs/cublas-floor.log" | tee -a "$summary"
fi
if has gemm; then
  stamp "GEMM kernels vs torch"
  PYTHONUNBUFFERED=1 python3 tools/torch_gemm.py "$logs/torch-gemm.json" > "$logs/torch-gemm.log" 2>&1
  node apps/bench/dist/gemm-kernels.js --torch "$logs/torch-gemm.json" --out "$logs/gemm-kernels.json" > "$logs/gemm-kernels.log" 2>&1
  echo "gemm bench exit $?" | tee -a "$summary"
  grep -E "TFLOP/s" "$logs/gemm-kernels.log" | tee -a "$summary"
fi
if has generate; then
  stamp "8B generation bench"
  bash scripts/gpu/bench-generate.sh "$logs" > "$logs/bench-generate.log" 2>&1
  grep -E "^\||identical|first token" "$logs/bench-generate.log" | tee -a "$summary"
fi
if has serve; then
  stamp "serving bench"
  SKIP_GENERATE=1 SERVE=1 timeout ${SERVE_TIMEOUT:-150} bash scripts/gpu/bench-generate.sh "$logs" > "$logs/bench-serve.log" 2>&1
  grep -E "^\||ratio|concurrent" "$logs/bench-serve.log" | head -20 | tee -a "$summary"
fi
if has steps; then
  # Decode steps of 1…64 sequences at once on the 8B model, BF16 layout vs fused, as the serving
  # scheduler runs them; and each op's serialised time at PROFILE_ROWS (default 16).
  stamp "decode steps (8B, rows ${STEP_ROWS:-1,4,8,16,32,64})"
  work=${DF11_BENCH_WORK:-/tmp/df11-bench}
  [ -f "$work/df11/config.json" ] || SKIP_GENERATE=1 bash scripts/gpu/bench-generate.sh "$logs" > "$logs/bench-models.log" 2>&1
  if [ "${STEP_POSITION_ONLY:-}" = "" ]; then
    timeout ${STEPS_TIMEOUT:-300} node scripts/gpu/decode-steps.mjs "$work/df11" ${STEP_ROWS:-1,4,8,16,32,64} 40 "$logs/decode-steps.json" > "$logs/decode-steps.log" 2>&1
    echo "decode steps exit $?" | tee -a "$summary"
    grep -E "^\||^decode steps at|fit \(memory plan" "$logs/decode-steps.log" | tee -a "$summary"
  fi
  if [ "${STEP_POSITION:-}" != "" ]; then
    # The same steps with every sequence's KV cache first filled to STEP_POSITION (e.g. 4000 →
    # decode-steps-4k.json; otherwise decode-steps-<N>.json). STEP_POSITION_ONLY=1 skips the run above.
    tag=$([ "$STEP_POSITION" -ge 1000 ] && [ $((STEP_POSITION % 1000)) -eq 0 ] && echo "$((STEP_POSITION / 1000))k" || echo "$STEP_POSITION")
    stamp "decode steps at position $STEP_POSITION (8B, rows ${STEP_ROWS:-1,4,8,16,32,64})"
    POSITION=$STEP_POSITION timeout ${STEPS_TIMEOUT:-300} node scripts/gpu/decode-steps.mjs "$work/df11" ${STEP_ROWS:-1,4,8,16,32,64} 40 "$logs/decode-steps-$tag.json" > "$logs/decode-steps-$tag.log" 2>&1
    echo "decode steps at position $STEP_POSITION exit $?" | tee -a "$summary"
    grep -E "^\||^decode steps at|fit \(memory plan" "$logs/decode-steps-$tag.log" | tee -a "$summary"
  fi
fi
if has batch; then
  stamp "df11 generate --batch-size"
  for m in ${BATCH_MODELS:-df11 bf16}; do
    timeout 100 node apps/bench/dist/batch-generate.js --model /tmp/df11-bench/$m --batch-sizes 1,8,32 --device cuda --out "$logs/batch-generate-$m.json" > "$logs/batch-$m.log" 2>&1
    grep -E "^\|" "$logs/batch-$m.log" | tee -a "$summary"
  done
fi
if has peer; then
  stamp "official dfloat11 peer"
  PYTHONPATH=.gpu-host/peers/DFloat11 timeout ${PEER_TIMEOUT:-120} python3 tools/peer_official_dfloat11.py --out "$logs/peer-official.json" > "$logs/peer-official.log" 2>&1
  echo "peer exit $?" | tee -a "$summary"
  python3 -c "import json;d=json.load(open('$logs/peer-official.json'));print('ok', d['ok'], 'passed', d['passed'], 'failed', d['failed'])" 2>/dev/null | tee -a "$summary"
fi
if has cli; then
  stamp "df11 command (--gpu-weights, serve /health)"
  timeout ${CLI_TIMEOUT:-150} node scripts/gpu/cli-smoke.mjs > "$logs/cli-smoke.json" 2> "$logs/cli-smoke.log"
  echo "cli smoke exit $?" | tee -a "$summary"
  grep -E '"ok"|failures' "$logs/cli-smoke.json" | head -3 | tee -a "$summary"
fi
if has tp; then
  stamp "tensor parallelism (8B, 1 GPU vs all)"
  n=$(nvidia-smi -L | wc -l)
  if [ "$n" -ge 2 ]; then
    SKIP_GENERATE=1 bash scripts/gpu/bench-generate.sh "$logs" > "$logs/tp-models.log" 2>&1  # the 8B models, when missing
    timeout ${TP_TIMEOUT:-300} node apps/bench/dist/tp-generate.js --bf16 /tmp/df11-bench/bf16 --df11 /tmp/df11-bench/df11 --devices "$(seq -s, 0 $((n - 1)))" --out "$logs/tp-generate.json" > "$logs/tp-generate.log" 2>&1
    echo "tp bench exit $?" | tee -a "$summary"
    grep -E "^\||speed-up|tokens equal" "$logs/tp-generate.log" | tee -a "$summary"
  else
    echo "tp bench skipped: $n GPU" | tee -a "$summary"
  fi
fi
if has offload; then
  stamp "CPU offload bench (--max-gpu-memory ${OFFLOAD_BUDGET:-12GB})"
  work=${DF11_BENCH_WORK:-/tmp/df11-bench}
  [ -f "$work/df11/config.json" ] || SKIP_GENERATE=1 bash scripts/gpu/bench-generate.sh "$logs" > "$logs/bench-models.log" 2>&1
  timeout ${OFFLOAD_TIMEOUT:-540} node apps/bench/dist/offload-generate.js --bf16 "$work/bf16" --df11 "$work/df11" --budget "${OFFLOAD_BUDGET:-12GB}" \
    --context-budget "${CONTEXT_BUDGET:-18GB}" --new-tokens "${OFFLOAD_NEW:-96}" ${NO_CONTEXT:+--no-context} --out "$logs/offload-generate.json" > "$logs/offload-generate.log" 2>&1
  echo "offload bench exit $?" | tee -a "$summary"
  grep -E "^\||ratio|longest|identical|fits" "$logs/offload-generate.log" | tee -a "$summary"
fi
if has 70b; then
  # Llama-3.3-70B-shaped DF11 (made here without its BF16 twin), on one GPU and tensor parallel over all.
  stamp "70B DF11: make, then one GPU vs all"
  m70=${DF11_70B:-/tmp/df11-70b}
  [ -f "$m70/config.json" ] || { /usr/bin/time -v timeout ${MAKE70_TIMEOUT:-380} node apps/bench/dist/make-bench-model.js --shape 70b --out "$m70" --max-memory ${MAKE70_MEMORY:-160GB} > "$logs/make-70b.log" 2>&1; echo "make 70b exit $?" | tee -a "$summary"; grep -E "Elapsed|Maximum resident" "$logs/make-70b.log" | tee -a "$summary"; }
  n=$(nvidia-smi -L | wc -l)
  # Also its BF16 weights (decoded at load: no 141 GB of BF16 files needed) on one GPU (does not fit:
  # recorded) and on all; then the KV room of each DF11 run is used (--prove-capacity).
  timeout ${TP70_TIMEOUT:-420} node apps/bench/dist/tp-generate.js --df11 "$m70" --df11-only ${TP70_FLAGS:---bf16-layout --prove-capacity} --devices "$(seq -s, 0 $((n - 1)))" --prompt-tokens 512 --new-tokens ${NEW70:-64} \
    --model "Llama-3.3-70B-shaped, synthetic weights (make-bench-model --shape 70b)" --out "$logs/tp-generate-70b.json" > "$logs/tp-generate-70b.log" 2>&1
  echo "70b bench exit $?" | tee -a "$summary"
  grep -E "^\||speed-up|tokens equal|does not load|sequences of 4,096|one sequence of" "$logs/tp-generate-70b.log" | tee -a "$summary"
fi
if has ncu; then
  # Nsight Compute counters of every inference kernel of a decode step (a 2-layer 8B-shaped slice: the
  # same kernels and shapes as the full model), BF16 and the fused layout; NCU_ROWS=16: steps of 16
  # sequences (a serving batch; NCU_ROWS="1 16": both).
  stamp "ncu per-kernel counters"
  s8=/tmp/df11-8b-slice
  [ -f "$s8/df11/config.json" ] || node apps/bench/dist/make-bench-model.js --shape 8b --layers 2 --out "$s8/df11" > "$logs/ncu-models.log" 2>&1
  for rows in ${NCU_ROWS:-1}; do for layout in bf16 fused; do
    dir=$s8/df11
    timeout ${NCU_TIMEOUT:-150} ncu --clock-control none --graph-profiling node --csv --page raw \
      -k regex:'gemv|gemm|rmsNorm|attention|qkvPrepare|combine|gatedActivation|embedding|argmax|toBf16|gatherRows|unpack|reduceSplits|add|softcap' \
      --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,smsp__inst_executed.sum,smsp__thread_inst_executed.sum,lts__t_bytes.sum,smsp__issue_active.avg.pct_of_peak_sustained_active \
      node scripts/gpu/ncu-decode.mjs "$dir" $layout $rows > "$logs/ncu-$layout-$rows.csv" 2> "$logs/ncu-$layout-$rows.log"
    echo "ncu $layout $rows row(s) exit $?" | tee -a "$summary"
    node scripts/gpu/ncu-summary.mjs "$logs/ncu-$layout-$rows.csv" $layout "$logs/ncu-$layout-$rows.json" > "$logs/ncu-$layout-$rows.md" 2>&1
    cat "$logs/ncu-$layout-$rows.md" | tee -a "$summary"
  done; done
fi
stamp "done"
