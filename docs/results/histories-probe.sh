#!/usr/bin/env bash
# Time the batched generation of PusherGoal and AntDir (their paper algorithms and task counts:
# PPO 35 tasks, DroQ 30 tasks) on a fraction of their paper steps per task (5e5), so that
# apps/README can extrapolate what `paper`'s histories stage costs there. Each probe's wall-clock
# includes its start-up (imports, env builds), so wall_s x 5e5 / steps is an upper bound.
# Usage (repo root on the GPU machine, after .device/scripts/install.sh):
#   bash docs/results/histories-probe.sh OUT
# Environment: DEVICE (default cuda), TASKS (default: the paper's), PUSHER_STEPS (default 10000:
# 4 PPO collections of 5 envs x 500), ANT_STEPS (default 10400: 400 warm-up + 10 episodes),
# LIMIT (seconds per probe, default 150; a probe stopped by it reports rc=124).
set -u
OUT=${1:?out dir}; DEVICE=${DEVICE:-cuda}; mkdir -p "$OUT"
for spec in "PusherGoal ${PUSHER_STEPS:-10000}" "AntDir ${ANT_STEPS:-10400}"; do
  read -r fam steps <<< "$spec"
  rm -f "/tmp/probe-$fam.h5"  # a left-over file would be resumed, not regenerated
  start=$(date +%s%N)
  timeout "${LIMIT:-150}" python3 -m icrl.histories generate --family "$fam" \
    --out "/tmp/probe-$fam.h5" --backend batched --device "$DEVICE" --workers 8 --no-progress \
    --steps "$steps" ${TASKS:+--tasks "$TASKS"} > "$OUT/probe-$fam.log" 2>&1
  rc=$?; wall=$(( ($(date +%s%N) - start) / 1000000 ))
  echo "$fam steps_per_task=$steps rc=$rc wall_ms=$wall" | tee -a "$OUT/probe.txt"
done
