#!/usr/bin/env bash
# One device call for the ad-core GPU figures: install the carried wheels, build mamba-ssm's
# kernels for this GPU (CPU-bound) while the transformer is measured (GPU), then Mamba.
# From the repo root, carrying .whl (wheelhouse + mamba sdist) and .device/scripts (copies of
# shared/device/*.sh):  OUT=... bash packages/ad-core/benchmarks/device/run-gpu.sh
set -u
OUT=${OUT:-/tmp/adout}; mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
lscpu | grep -E "Model name|^CPU\(s\)"
. .device/scripts/install.sh .whl
(timeout 210 bash .device/scripts/build-mamba.sh .whl > "$OUT/build.log" 2>&1) &
bench=(packages/ad-core/benchmarks/throughput.py --family HalfCheetahVel --contexts 1000 50000
       --iters 2 --warmup 1 --eval-rollouts 30 --eval-episodes 4)
# SKIP_TRANSFORMER=1 measures Mamba only (the transformer needs no build).
[ -n "${SKIP_TRANSFORMER:-}" ] ||
  timeout 150 python3 "${bench[@]}" --backbones transformer 2>&1 | tee "$OUT/transformer.txt"
wait
tail -2 "$OUT/build.log"
export PYTHONPATH=/tmp/site:$PYTHONPATH
timeout 100 python3 "${bench[@]}" --backbones mamba 2>&1 | tee "$OUT/mamba.txt"
