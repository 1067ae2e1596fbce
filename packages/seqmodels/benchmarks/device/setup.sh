# The start of every device run, sourced from the repo root by seqmodels' run.sh and ad-core's
# run-gpu.sh once they have set OUT: prints the GPU and CPU, installs the carried wheels, builds
# mamba-ssm's and flash-attn's kernels for this GPU, and defines t MESSAGE (seconds since the
# start, then MESSAGE).
mkdir -p "$OUT"
START=$SECONDS
t() { echo "[$((SECONDS - START)) s] $*"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
lscpu | grep -E "Model name|^CPU\(s\)"
. .device/scripts/install.sh .whl
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
bash packages/seqmodels/benchmarks/device/build-kernels.sh "$OUT"
t "kernels ready"
