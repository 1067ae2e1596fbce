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
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
lscpu | grep -E "Model name|^CPU\(s\)"
. .device/scripts/install.sh .whl
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
bash packages/seqmodels/benchmarks/device/build-kernels.sh "$OUT"
t "kernels ready"
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
