#!/usr/bin/env bash
# Build mamba-ssm's and flash-attn's kernels for this GPU side by side (about 5 min on 16 cores)
# into /tmp/site, unless they already import there (a warm machine). Logs go to $1 (a folder).
#   bash build-kernels.sh LOGDIR      (from the repo root; .whl/sdist holds both sdists)
set -u
log=${1:?usage: build-kernels.sh LOGDIR}
dev=$(dirname "$0")
if PYTHONPATH=/tmp/site:${PYTHONPATH:-} python3 -c "import torch, selective_scan_cuda, flash_attn_2_cuda" 2>/dev/null; then
  echo "kernels already in /tmp/site: not rebuilding"
  exit 0
fi
MAX_JOBS=8 bash "$dev/build-mamba-keep.sh" .whl > "$log/build-mamba.log" 2>&1 & mamba=$!
MAX_JOBS=8 bash "$dev/build-flash.sh" .whl > "$log/build-flash.log" 2>&1 & flash=$!
# wait on the two builds only: a bare `wait` also waits on the caller's process substitutions
wait $mamba $flash
echo "kernels built: $(tail -1 "$log/build-mamba.log"); $(tail -1 "$log/build-flash.log")"
