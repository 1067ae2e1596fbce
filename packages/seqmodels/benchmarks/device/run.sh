#!/usr/bin/env bash
# One device run for seqmodels: build mamba-ssm's and flash-attn's kernels for this GPU (skipped
# when /tmp/site already has them), the GPU tests, then the benchmark. Results in $OUT.
# From the repo root, carrying .whl (wheelhouse + sdist/ with the mamba-ssm and flash-attn sdists)
# and .device/scripts (copies of shared/device/*.sh):
#   OUT=... bash packages/seqmodels/benchmarks/device/run.sh
set -u
OUT=${OUT:-/tmp/seqout}; mkdir -p "$OUT"
START=$SECONDS
t() { echo "[$((SECONDS - START)) s] $*"; }
dev=packages/seqmodels/benchmarks/device
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
lscpu | grep -E "Model name|^CPU\(s\)"
. .device/scripts/install.sh .whl
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
if ! python3 -c "import torch, selective_scan_cuda, flash_attn_2_cuda" 2>/dev/null; then
  MAX_JOBS=8 bash $dev/build-mamba-keep.sh .whl > "$OUT/build-mamba.log" 2>&1 & mamba=$!
  MAX_JOBS=8 bash $dev/build-flash.sh .whl > "$OUT/build-flash.log" 2>&1 & flash=$!
  wait $mamba $flash
  t "kernels built: $(tail -1 "$OUT/build-mamba.log"); $(tail -1 "$OUT/build-flash.log")"
fi
# the project's pytest config turns warnings into errors, here as in CI
python3 -m pytest packages/seqmodels/tests -m gpu -v -s -rA -p no:cacheprovider \
  > "$OUT/gpu-tests.log" 2>&1
t "seqmodels gpu tests rc=$? ($(tail -1 "$OUT/gpu-tests.log"))"
for backbones in mamba transformer; do
  timeout 260 python3 packages/seqmodels/benchmarks/bench_backbones.py \
    --out "$OUT/bench-$backbones.json" --budget 230 --backbones $backbones \
    > "$OUT/bench-$backbones.log" 2>&1
  t "bench $backbones rc=$?"
done
