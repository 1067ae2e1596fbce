#!/usr/bin/env bash
# Poll a detached icrl-job.sh from a later device call, safely inside the call's limit, and keep
# what it has made under $OUT so that it comes back even when the device budget ends the call.
# Usage (in a device call; $OUT is the call's return folder):
#   bash docs/results/window-poll.sh JOB_OUT SECONDS [PATTERN] [STOP_PATTERN]
# Waits until a line of JOB_OUT/stages.log matches PATTERN (grep -E; default: the job's last line,
# "] done$") or SECONDS have passed, whichever comes first; every 30 s, and once at the end, tars
# JOB_OUT without checkpoints, HDF5 files and MQL's replay buffers (a small family's 3 would pass
# the 16 MiB a returned file may hold) into $OUT/job.tar.gz (a tar in progress goes to a
# temporary name first, so a call ended mid-tar still returns the previous whole one). With
# STOP_PATTERN (e.g. "^python3 -m icrl.ad train .*blind"; it must start with ^), processes whose
# command line matches it (pgrep -f) get SIGTERM once PATTERN has matched: the way to give up a
# stage that no longer fits the budget (icrl-job.sh then skips what depended on it). Prints stages.log at the end. Checked on the CPU
# against a fake job (docs/results/README.md, "Running a window").
set -u
JOB_OUT=${1:?job out dir}; SECONDS_MAX=${2:?seconds}; PATTERN=${3:-'\] done$'}; STOP=${4:-}
: "${OUT:?OUT is not set: the device call return folder}"
case "$STOP" in ""|"^"*) ;; *)  # unanchored, it would match this call's own shell, whose
  echo "window-poll: STOP_PATTERN must start with ^ (got '$STOP')" >&2; exit 2;;  # line holds it
esac
tarit() {
  # tar exits 1 when a file changed while read (the job's logs grow all the time): still whole
  tar czf "$OUT/.job.tar.gz.part" --warning=no-file-changed --exclude='*.pt' --exclude='*.h5' \
    --exclude='*.safetensors' --exclude='replay.npz' \
    -C "$(dirname "$JOB_OUT")" "$(basename "$JOB_OUT")"
  [ $? -le 1 ] && mv "$OUT/.job.tar.gz.part" "$OUT/job.tar.gz"
}
start=$SECONDS; last=-30; matched=0
while [ $((SECONDS - start)) -lt "$SECONDS_MAX" ]; do
  if grep -qE "$PATTERN" "$JOB_OUT/stages.log" 2>/dev/null; then matched=1; break; fi
  if [ $((SECONDS - last)) -ge 30 ]; then tarit; last=$SECONDS; fi
  sleep 5
done
if [ "$matched" = 1 ] && [ -n "$STOP" ]; then
  sleep 3  # a stage the job starts right after PATTERN's line: let it appear first
  for pid in $(pgrep -f "$STOP"); do
    if [ "$pid" != "$$" ]; then
      what=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | cut -c1-120)
      kill -TERM "$pid" && echo "stopped $pid: $what"
    fi
  done
fi
tarit
echo "poll: $((SECONDS - start)) s, pattern ${PATTERN} $([ $matched = 1 ] && echo matched || echo 'not yet')"
cat "$JOB_OUT/stages.log" 2>/dev/null
# stages.log has one line per step of the job script, and the full run is one step: the stages
# the app has finished so far (their stage.json records, oldest first) show where it is
python3 - "$JOB_OUT" <<'PY' 2>/dev/null
import json, pathlib, sys
records = sorted(pathlib.Path(sys.argv[1]).glob("run*/stages/*/stage.json"), key=lambda p: p.stat().st_mtime)
for r in records:
    print(f"  {json.loads(r.read_text()).get('wall_s', 0.0):7.1f} s  {r.parent.parent.parent.name}/{r.parent.name}")
PY
