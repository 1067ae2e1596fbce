# Sourced by icrl-job.sh and reproduce-job.sh (repo root of the device copy): writes OUT/machine.txt
# (GPU and CPU) and OUT/revision.txt. The device copy's own git HEAD is the snapshot it was made
# from, not the tree sent: prefer the revision written here before the call
# (git rev-parse HEAD > .device/revision.txt; .device travels), with its date, so that a file left
# from an earlier window shows.
job_header() {  # OUT
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$1/machine.txt" 2>&1
  lscpu | grep -E "Model name|^CPU\(s\)" >> "$1/machine.txt"
  if [ -f .device/revision.txt ]; then
    { cat .device/revision.txt; echo "(.device/revision.txt written $(date -r .device/revision.txt))"; } \
      > "$1/revision.txt"
  else git rev-parse HEAD > "$1/revision.txt" 2>/dev/null || true; fi
}
