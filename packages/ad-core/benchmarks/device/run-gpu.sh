#!/usr/bin/env bash
# One device call for the ad-core GPU figures: install the carried wheels, build mamba-ssm's and
# flash-attn's kernels for this GPU (both in parallel, about 4 min on 16 cores), run ad-core's GPU
# tests, then the throughput benchmark: Mamba, and the transformer with SDPA and with flash-attn.
# From the repo root, carrying .whl (wheelhouse + sdist/ with the mamba-ssm and flash-attn sdists)
# and .device/scripts (copies of shared/device/*.sh):
#   OUT=... bash packages/ad-core/benchmarks/device/run-gpu.sh
set -u
OUT=${OUT:-/tmp/adout}
. packages/seqmodels/benchmarks/device/setup.sh  # wheels, kernels; t MESSAGE
python3 -m pytest packages/ad-core/tests -m gpu -v -s -rA -p no:cacheprovider \
  > "$OUT/gpu-tests.log" 2>&1
t "ad-core gpu tests rc=$? ($(tail -1 "$OUT/gpu-tests.log"))"
bench=(packages/ad-core/benchmarks/throughput.py --family HalfCheetahVel --contexts 1000 50000
       --iters 2 --warmup 1 --eval-rollouts 30 --eval-episodes 4)
# MuJoCo warns once per HalfCheetah env about a deprecated XML attribute: not ours, filtered
timeout 200 python3 "${bench[@]}" --backbones mamba 2>&1 | grep -v settotalmass > "$OUT/mamba.txt"
t "mamba rc=$?"
for attention in sdpa flash-attn; do
  timeout 200 python3 "${bench[@]}" --backbones transformer --attention $attention 2>&1 |
    grep -v settotalmass > "$OUT/transformer-$attention.txt"
  t "transformer $attention rc=$?"
done
