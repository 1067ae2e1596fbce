#!/usr/bin/env bash
# apps/reproduce.py on one GPU machine, detached-safe: the runs that issue 18 times (`--preset
# small`, one family per window) and issue 19 commits.
# Usage (repo root of a copy under /tmp, carrying .whl and .device/scripts):
#   bash docs/results/reproduce-job.sh OUT [reproduce.py flags...]
#   e.g. bash docs/results/reproduce-job.sh /tmp/out --preset small --families '["ReacherGoal"]'
# The machine has no internet, so `uv run` cannot sync an environment there; the same program
# runs with the machine's python3 (torch, CUDA) and the carried wheels and workspace sources on
# PYTHONPATH (.device/scripts/install.sh), which is what `uv run apps/reproduce.py` runs here.
# mamba-ssm's kernels (2-4 min to build) are needed before the first AD-Mamba stage: beside the
# build, the same run goes as far as it can without them (histories, the transformer's trainings
# and an evaluation of them; see below), then the full run starts once the build is in and reuses
# the histories, trainings and the transformer's evaluation (keyed by the episode count its
# models' context covers, the same in both passes).
# The run directory is OUT/run; OUT/stages.log gets one line per step of this script and, at the
# end, OUT/stage-times.txt the wall-clock of every stage (from each stage.json). Poll it from later
# calls with `bash docs/results/window-poll.sh OUT 520` (the last line is "done"), each made at
# once after the last (a machine stays warm 30 s: later, the job is gone; docs/results/README.md,
# "Running a window", item 10); its
# job.tar.gz holds report.md, summary.json, figures, CSVs, stage.json files and logs, without
# checkpoints or HDF5 files. Rerunning this script on the same machine resumes the run from its
# stage cache (a new machine starts over unless the run directory travels: apps/README.md).
# The mamba-ssm wheel it builds is kept in /tmp/mamba-wheel as 15 MiB parts: bring them back with
# a last call (cp /tmp/mamba-wheel/* "$OUT"/), then here: cat PARTS > .whl/mamba_ssm-....whl
# (the name without .part-NN); later windows install it with the other wheels and skip the build.
# DEVICE=cpu dry-runs it here (no install, no build; reproduce.py picks the CPU by itself):
#   DEVICE=cpu PATH=.venv/bin:$PATH bash docs/results/reproduce-job.sh /tmp/rdry --preset tiny
# (DRY_BUILD=1 beside DEVICE=cpu stands a 3 s sleep in for the build, to dry-run the overlap).
# TWIN=1: after the run, AD-Mamba's blinded twin (the same config, every context reward zeroed:
# data.reward_ablation=zero; full history, every seed, no baselines) into OUT/run-twin, from the
# run's own histories (their stage directory copied in, so the cache hands them back): the
# control that tells a climb read from the rewards from one that follows the context's length.
# ARM='FLAGS': after the twin, the same command again with FLAGS appended (they replace the
# run's own, e.g. ARM='--ad.max_steps 1000'; JSON quoted inside: ARM="--seeds '[0,1]'"), into
# OUT/run-arm, on the run's histories: a second arm of a probe on the same data, without a
# second histories stage.
# DIAG=1: after that, `icrl.ad diagnose` (teacher-forced probes only, ~1 min) on AD-Mamba's first
# seed, into OUT/diagnose: what issue 19 asks for on a family where AD does not learn in context.
set -u
OUT=${1:?out dir}; shift
# The twin's flags follow the user's, and a later flag replaces an earlier one: its --backbones
# and --contexts are meant to win (the twin is AD-Mamba on the full history, whatever the run
# trained), but its --ad.overrides would silently drop the user's, so the twin would not be the
# run's model with rewards zeroed.
case " $* " in *" --ad.overrides"*)
  if [ "${TWIN:-0}" = 1 ]; then
    echo "reproduce-job.sh: TWIN=1 sets --ad.overrides itself (data.reward_ablation=zero), which" \
      "would replace yours; run without --ad.overrides, or without TWIN" >&2; exit 2
  fi;;
esac
DEVICE=${DEVICE:-cuda}; build=  # the background build's pid, if one starts (not inherited)
mkdir -p "$OUT"
START=$SECONDS
t() { echo "[$((SECONDS - START)) s] $*" | tee -a "$OUT/stages.log"; }
. docs/results/job-header.sh && job_header "$OUT"
if [ "$DEVICE" = cuda ]; then
  . .device/scripts/install.sh .whl > "$OUT/install.log" 2>&1 || { t "install failed"; exit 1; }
  export PYTHONPATH="$PWD/apps/src:$PYTHONPATH"
  t "installed"
  # (no build when the flags leave Mamba out: --backbones without mamba in it, and neither the
  # twin, which is AD-Mamba, nor a second arm, whose flags may bring it back)
  case " $* " in *" --backbones"*) case " $* " in *mamba*) need=1;; *) need=0;; esac;; *) need=1;; esac
  [ "${TWIN:-0}" = 1 ] || [ -n "${ARM:-}" ] && need=1
  if [ "$need" = 1 ] && ! python3 -c "import torch, selective_scan_cuda" 2>/dev/null; then
    bash .device/scripts/build-mamba.sh .whl > "$OUT/build-mamba.log" 2>&1 & build=$!
  fi
fi
if [ "$DEVICE" = cpu ] && [ "${DRY_BUILD:-0}" = 1 ]; then  # dry run of the overlap below
  { sleep 3; echo "dry run: no build"; } > "$OUT/build-mamba.log" 2>&1 & build=$!
fi
keep_wheel() {
  # Keep the built wheel, in parts that the device tool returns (<= 16 MiB each), outside OUT
  # (window-poll.sh tars OUT): carried back in .whl, install.sh installs it and the next
  # window skips this build. Fetch with a last call: cp /tmp/mamba-wheel/* "$OUT"/
  local whl
  whl=$(ls -t /tmp/tmp.*/wheels/mamba_ssm-*.whl 2>/dev/null | head -n 1)
  if [ -n "$whl" ]; then
    mkdir -p /tmp/mamba-wheel && split -b 15M -d "$whl" "/tmp/mamba-wheel/$(basename "$whl").part-"
    t "mamba-ssm wheel kept: $(ls /tmp/mamba-wheel | tr '\n' ' ')"
  fi
}
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1  # bars in a log file are noise; stages.log has the steps
{ printf 'python3 apps/reproduce.py'; printf ' %q' "$@" --out "$OUT/run"; echo; } > "$OUT/command.txt"
if [ -n "${build:-}" ]; then
  # While mamba-ssm builds (2-4 min, every core), the stages that do not import it run: the
  # histories and the transformer's trainings and evaluation, from the same config, into the
  # same run directory, whose stage
  # cache the full run below then reuses (checked on the CPU with --preset tiny, and on one H200:
  # docs/results/probes/reproduce-overlap-2026-12-02/).
  # Their wall-clock is measured beside the build, i.e. inflated. Skipped when the flags choose
  # the backbones themselves.
  case " $* " in *" --backbones"*) ;; *)
    t "reproduce.py $* (transformer only, beside the mamba-ssm build)"
    python3 apps/reproduce.py "$@" --backbones '["transformer"]' --no-macaw.enabled \
      --no-mql.enabled --out "$OUT/run" > "$OUT/reproduce-transformer.log" 2>&1
    t "reproduce (transformer only) rc=$?";;
  esac
  wait "$build"; rc=$?; t "mamba-ssm rc=$rc $(tail -1 "$OUT/build-mamba.log")"
  # without the kernels the AD stage would train on the reference scan: its times would lie
  [ "$rc" = 0 ] || { t "stopped: mamba-ssm did not build (build-mamba.log)"; exit 1; }
  keep_wheel
fi
t "reproduce.py $*"
python3 apps/reproduce.py "$@" --out "$OUT/run" > "$OUT/reproduce.log" 2>&1
rc=$?; t "reproduce rc=$rc"
if [ "$rc" = 1 ]; then
  # One retry, from the stage cache (finished stages come back at once, an interrupted one
  # resumes): a window is scarce, and a transient failure has been seen there once (oneMKL
  # "Cannot load libtorch_cpu.so" right after a call began; docs/results README). Bad flags
  # exit 2 and a signal 130+, which a retry would not change.
  mv "$OUT/reproduce.log" "$OUT/reproduce-failed.log"
  t "reproduce.py $* (retry from the stage cache; the first log: reproduce-failed.log)"
  python3 apps/reproduce.py "$@" --out "$OUT/run" > "$OUT/reproduce.log" 2>&1
  rc=$?; t "reproduce rc=$rc"
fi
share_histories() {
  # hard links where the filesystem allows them: the histories are read, never written
  mkdir -p "$1/stages" && { cp -al "$OUT"/run/stages/histories-* "$1/stages/" 2>/dev/null \
    || cp -r "$OUT"/run/stages/histories-* "$1/stages/"; }
}
if [ "${TWIN:-0}" = 1 ] && [ "$rc" = 0 ]; then
  share_histories "$OUT/run-twin"
  t "reproduce.py $* (AD-Mamba's blinded twin)"
  python3 apps/reproduce.py "$@" --backbones '["mamba"]' --contexts '["full"]' \
    --no-macaw.enabled --no-mql.enabled --ad.overrides '["data.reward_ablation=zero"]' \
    --out "$OUT/run-twin" > "$OUT/reproduce-twin.log" 2>&1
  t "reproduce (blinded twin) rc=$?"
fi
if [ -n "${ARM:-}" ] && [ "$rc" = 0 ]; then
  # the shell's own word splitting and quoting, as on a command line (quote JSON inside it:
  # ARM="--seeds '[0,1]'"), without filename expansion ([0,1] would match a file named 0) and
  # with unset variables left empty (set -u would end the job here, before stage-times.txt)
  set -f +u; eval "arm=( $ARM )"; set +f -u
  share_histories "$OUT/run-arm"
  t "reproduce.py $* ${arm[*]} (the second arm)"
  python3 apps/reproduce.py "$@" "${arm[@]}" --out "$OUT/run-arm" > "$OUT/reproduce-arm.log" 2>&1
  t "reproduce (second arm) rc=$?"
fi
if [ "${DIAG:-0}" = 1 ] && [ "$rc" = 0 ]; then
  # icrl.ad diagnose on AD-Mamba's first seed (full history): its teacher-forced probes (one
  # forward pass per history, no rollout: about a minute), read on 3 of the run's training
  # tasks (diagnose.md warns that these are memorised; held-out histories would need a test-split
  # generation that the window has no time for). Issue 19 asks for it where a family is flat.
  ckpt=$(ls -d "$OUT"/run/stages/train-*-mamba-full-s*-*/run 2>/dev/null | head -n 1)
  h5=$(ls "$OUT"/run/stages/histories-*/histories.h5 2>/dev/null | head -n 1)
  if [ -n "$ckpt" ] && [ -n "$h5" ]; then
    t "diagnose $ckpt"
    python3 -m icrl.ad diagnose --checkpoint "$ckpt" --histories "$h5" \
      --out-dir "$OUT/diagnose" --set n_tasks=3 --set split_tasks=3 \
      --set 'parts=["teacher_forced","reward_ablation"]' > "$OUT/diagnose.log" 2>&1
    t "diagnose rc=$?"
  else t "diagnose skipped: no AD-Mamba full-history run or histories in $OUT/run"; fi
fi
python3 - "$OUT/run" > "$OUT/stage-times.txt" <<'PY'
# One line per stage of the run; a stage written twice under different keys (a run made before
# the evaluation's key held its resolved episode count evaluated the transformer once per pass)
# counts once, its newest record (by file time: this runs on the machine that wrote them, right
# after), the other listed apart.
import json, pathlib, sys
latest = {}
for record in pathlib.Path(sys.argv[1], "stages").glob("*/stage.json"):
    name = record.parent.name.rsplit("-", 1)[0]
    if name not in latest or record.stat().st_mtime > latest[name].stat().st_mtime:
        latest[name] = record
total = 0.0
for record in sorted(pathlib.Path(sys.argv[1], "stages").glob("*/stage.json")):
    wall = json.loads(record.read_text()).get("wall_s", 0.0)
    used = latest[record.parent.name.rsplit("-", 1)[0]] == record
    total += wall if used else 0.0
    print(f"{wall:8.1f} s  {record.parent.name}" + ("" if used else "  (not reused: not counted)"))
print(f"{total:8.1f} s  all stages")
PY
t "done"
