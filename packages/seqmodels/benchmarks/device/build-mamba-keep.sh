#!/usr/bin/env bash
# Copy of shared/device/build-mamba.sh that also keeps the built wheel in $2 (for carrying).
set -euo pipefail
dir=$(cd "${1:-.whl}" && pwd)
keep=${2:-}
sdist=$(ls "$dir"/sdist/mamba_ssm-*.tar.gz | head -n 1)
arch=$(python3 -c "import torch; m, n = torch.cuda.get_device_capability(); print(f'{m}{n}')")
work=$(mktemp -d); cd "$work"; tar xzf "$sdist"; src=$(ls -d mamba_ssm-*/)
python3 - "$src/setup.py" "$arch" <<'PY'
import re, sys
path, arch = sys.argv[1], sys.argv[2]
text = open(path).read()
pattern = r'cc_flag\.append\("-gencode"\)\n(\s*)cc_flag\.append\("arch=compute_(\d+),code=sm_\d+"\)'
text = re.sub(pattern, lambda m: m.group(0) if m.group(2) == arch else "pass", text)
open(path, "w").write(text)
print("architectures left:", re.findall(r'arch=compute_(\d+)', text))
PY
export MAMBA_FORCE_BUILD=TRUE TORCH_CUDA_ARCH_LIST="${arch:0:1}.${arch:1}" MAX_JOBS=${MAX_JOBS:-$(nproc)} NVCC_THREADS=4
time python3 -m pip wheel -q --no-build-isolation --no-deps -w "$work/wheels" "./$src"
python3 -m pip install -q --no-index --no-deps --target /tmp/site "$work"/wheels/*.whl
if [ -n "$keep" ]; then
  mkdir -p "$keep"; whl=$(ls "$work"/wheels/*.whl); ls -la "$whl"
  (cd "$(dirname "$whl")" && sha256sum "$(basename "$whl")") > "$keep/SHA256SUMS"
  split -b 15m "$whl" "$keep/$(basename "$whl").part."
fi
PYTHONPATH=/tmp/site python3 -c "import torch, selective_scan_cuda, mamba_ssm; print('mamba_ssm', mamba_ssm.__version__, 'with CUDA kernels')"
