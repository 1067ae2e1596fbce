#!/usr/bin/env bash
# One device run for seqmodels: build mamba-ssm's and flash-attn's kernels for this GPU (skipped
# when /tmp/site already has them), the GPU tests, then the benchmark. Results in $OUT.
# From the repo root, carrying .whl (wheelhouse + sdist/ with the mamba-ssm and flash-attn sdists)
# and .device/scripts (copies of shared/device/*.sh):
#   OUT=... bash packages/seqmodels/benchmarks/device/run.sh
set -u
OUT=${OUT:-/tmp/seqout}
. packages/seqmodels/benchmarks/device/setup.sh  # wheels, kernels; t MESSAGE
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
