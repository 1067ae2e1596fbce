#!/usr/bin/env bash
# One device call: build (or install a carried) mamba-ssm, GPU tests, benchmark. Results in $OUT.
# Staging (on the machine that starts the call, from the repo root; .device/ is git-ignored):
#   mkdir -p .device/seqmodels/whl/sdist && git archive HEAD packages/seqmodels | tar -x -C .device/seqmodels
#   cp packages/seqmodels/benchmarks/device/*.sh .device/seqmodels/   (this file as run.sh)
#   cp <mamba_ssm-2.3.2.post1.tar.gz> .device/seqmodels/whl/sdist/
# then run `OUT=$OUT bash .device/seqmodels/run.sh` there, carrying .device/seqmodels.
set -u
START=$SECONDS
OUT=${OUT:-/tmp/seqout}; mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1
left() { echo $(( ${1:-585} - (SECONDS - START) )); }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
lscpu | grep -E "Model name|^CPU\(s\)"
python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
if ls .device/seqmodels/whl/wheel/*.part.* >/dev/null 2>&1; then
  name=$(ls .device/seqmodels/whl/wheel/*.part.aa | sed 's/.part.aa$//')
  cat "$name".part.* > "/tmp/$(basename "$name")"
  python3 -m pip install -q --no-index --no-deps --target /tmp/site "/tmp/$(basename "$name")"
  echo "installed carried wheel $(basename "$name") at $((SECONDS - START)) s"
elif PYTHONPATH=/tmp/site python3 -c "import torch, selective_scan_cuda, mamba_ssm; assert mamba_ssm.__version__ == '2.3.2.post1'"; then
  echo "mamba-ssm with CUDA kernels already in /tmp/site on this warm machine: not rebuilding"
  mkdir -p "$OUT/site"
  (cd /tmp/site && tar czf /tmp/mamba_site.tgz mamba_ssm mamba_ssm-*.dist-info selective_scan_cuda*.so)
  split -b 15m /tmp/mamba_site.tgz "$OUT/site/mamba_site.tgz.part."; ls -la /tmp/mamba_site.tgz
else
  timeout 320 bash .device/seqmodels/build-mamba-keep.sh .device/seqmodels/whl "$OUT/wheel"
  echo "build finished (rc $?) at $((SECONDS - START)) s"
fi
export PYTHONPATH=/tmp/site:$PWD/.device/seqmodels/packages/seqmodels/src
W="-W default::DeprecationWarning -W default::FutureWarning -W default::UserWarning"
timeout $(( $(left) > 100 ? 100 : $(left) )) python3 -m pytest .device/seqmodels/packages/seqmodels/tests -m gpu \
  -k "not mamba2" -v -s -rA -p no:cacheprovider $W 2>&1 | tee "$OUT/gpu-tests.log"
echo "tests (mamba1, transformer) done at $((SECONDS - START)) s"
budget=$(( $(left 560) - 60 ))
timeout $(( budget + 25 )) python3 .device/seqmodels/packages/seqmodels/benchmarks/bench_backbones.py \
  --out "$OUT/bench.json" --budget "$budget" 2>&1 | tee "$OUT/bench.log"
echo "bench done at $((SECONDS - START)) s"
timeout $(( $(left) > 5 ? $(left) : 5 )) python3 -m pytest .device/seqmodels/packages/seqmodels/tests -m gpu \
  -k "mamba2" -v -s -rA -p no:cacheprovider $W 2>&1 | tee "$OUT/gpu-tests-mamba2.log"
echo "all done at $((SECONDS - START)) s"
