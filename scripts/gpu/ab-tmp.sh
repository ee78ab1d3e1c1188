set -uo pipefail
out=$1; L=/tmp/ab2; mkdir -p $L
s() { echo "[$(date +%T)] $*" | tee -a $out/summary.txt; }
for i in 1 2; do for a in old new; do
  if [ $a = old ]; then export DF11_CUDA_ADDON=$PWD/.gpu-host/old-addon/df11_cuda.node; else unset DF11_CUDA_ADDON; fi
  node apps/bench/dist/gemv-kernels.js --rows 1,16,32,64 --iterations 30 --out $L/ab-$a-$i.json > $L/ab-$a-$i.log 2>&1
  s "$a ($i): $(grep -E '^token' $L/ab-$a-$i.log | sed 's/token (32 layers + lm_head), //' | tr '\n' ' ')"
done; done
unset DF11_CUDA_ADDON
tar -czf $out/ab2.tar.gz -C /tmp ab2
s "fused + kernels tests"
node --test --test-reporter=spec packages/cuda-kernel/test/fused.test.mjs packages/cuda-kernel/test/kernels.test.mjs > $L/test.log 2>&1
grep -E "^ℹ (tests|pass|fail)|^✖" $L/test.log | head -8 | tee -a $out/summary.txt
tar -czf $out/ab2.tar.gz -C /tmp ab2
