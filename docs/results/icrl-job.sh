#!/usr/bin/env bash
# One family's in-context RL experiment on one GPU machine, end to end, detached-safe:
# histories (batched backend, strengthened SAC source) -> AD-Mamba with a Gaussian head (ours) and
# with the paper's MSE head, trained side by side on the same GPU -> in-context evaluation on the
# 10 canonical test tasks (Gaussian head sampled, Gaussian head mean, MSE head) -> summary.json.
# Usage (repo root of a copy under /tmp, carrying .whl and .device/scripts):
#   bash docs/results/icrl-job.sh FAMILY OUT [STEPS]     e.g. ReacherGoal /tmp/out 1200
# Environment: GRAD_STEPS (SAC updates per vector step, default 5), MSE=0 skips the MSE-head twin
# (HalfCheetahVel: generation ~10 min and a 12M model's 844 steps ~11 min leave no room for it),
# DIAG=1 runs `icrl.ad diagnose` on the Gaussian-head model last: on 3 *training* tasks of the
# histories file, or with TEST_HIST=1 on 3 canonical *test* tasks whose histories are generated
# beside the training (the held-out diagnosis; HalfCheetahVel's next step, see its report).
# EVALS="gauss-sampled gauss-mean" (default both) picks the 250-episode evaluations; gauss-sX adds
# one sampled with the Gaussian's std scaled by X (EvalConfig.std_scale), e.g. gauss-s0.5;
# gauss-uniform one sampled with uniform noise of the Gaussian's std (EvalConfig.sample_noise:
# the shape of uniform noise-distilled histories; the blinded twin then gets it too);
# PROMPTS (default [0,10,50,100]) and AFTER (default 5) set the diagnosis's prompt lengths and the
# episodes the model plays after each prompt; with TEST_HIST=1 a second diagnosis runs only the
# prompted rollouts with the mean action, beside the first. ND=EPISODES records noise-distilled
# histories of that many episodes per task instead of the learning runs (AD-epsilon, not the
# paper's recipe; HalfCheetahVel: 250, the paper's full-history context).
# BACKBONE=transformer trains the family's transformer paper preset instead of the Mamba (flash-attn
# when installed, PyTorch SDPA otherwise). TASKS, HSTEPS, K override the preset's training-task count, env steps per task and k (the
# task-count experiment: TASKS=60 HSTEPS=100000 K=2 keeps HalfCheetahVel's 250 kept episodes).
# With TEST_HIST=1 the test-task histories are generated beside the training histories (before
# the training), and step_vs_forward.py checks the evaluation's step path against training's
# forward on one of them (on CUDA). context_noise.py (does the model read its stage from the
# action noise in its context?) probes 3 held-out histories with TEST_HIST=1, else 3 training
# tasks of h.h5 (CSV context-noise-test.h5.csv / -h.h5.csv). CHECKS=0 skips both.
# BLIND=1 trains a blinded twin after the Gaussian-head model (the same
# settings with every context reward zeroed, data.reward_ablation=zero; after, not beside: two 12M
# models side by side run at half speed each) while the main model's evaluations run, and
# evaluates it with the same action rules as EVALS, rewards zeroed ("blind-sampled",
# "blind-mean", "blind-uniform"): the
# control that separates in-context RL from a policy that only follows its position in the history.
# MAIN=0 (with BLIND=1, MSE=0, DIAG=0, CHECKS=0) trains and evaluates only the blinded twin, on the
# GPU alone: the twin of a model an earlier window trained (the histories are deterministic, so
# the same settings and TRAIN_SETS give the same data and the same seed).
# DEVICE (default cuda) and TRAIN_SETS / EVAL_SETS / DIAG_SETS (extra `--set` values of the
# training, the evaluations and the diagnosis, space-separated) let the
# whole script be dry-run on a CPU before a window, e.g.
#   DEVICE=cpu TASKS=2 HSTEPS=1500 ND=6 TRAIN_SETS="model.d_model=32 model.n_layers=1 batch_size=2" \
#   EVAL_SETS="episodes=2" BLIND=1 MSE=0 PATH=.venv/bin:$PATH bash docs/results/icrl-job.sh \
#   HalfCheetahVel /tmp/dry 3
set -u
FAMILY=${1:?family}; OUT=${2:?out dir}; STEPS=${3:-1200}; GRAD_STEPS=${GRAD_STEPS:-5}; MSE=${MSE:-1}
BLIND=${BLIND:-0}; DEVICE=${DEVICE:-cuda}; MAIN=${MAIN:-1}
TSETS=(); for x in ${TRAIN_SETS:-}; do TSETS+=(--set "$x"); done
ESETS=(); for x in ${EVAL_SETS:-}; do ESETS+=(--set "$x"); done
DSETS=(); for x in ${DIAG_SETS:-}; do DSETS+=(--set "$x"); done  # DiagnoseConfig's own fields
DIAG=${DIAG:-0}; TEST_HIST=${TEST_HIST:-0}; EVALS=${EVALS:-gauss-sampled gauss-mean}
PROMPTS=${PROMPTS:-[0,10,50,100]}; AFTER=${AFTER:-5}
BACKBONE=${BACKBONE:-mamba}; LABEL=Mamba; [ "$BACKBONE" = transformer ] && LABEL=Transformer
# SEEDS="0 1" trains one Gaussian-head model per AD seed, one after the other, each one's
# evaluations (EVALS) beside the next one's training; nothing else (no twin, MSE head, diagnosis
# or checks: refused before the install, as is a seed in TRAIN_SETS). Each seed's evaluations are
# eval-seedS-sampled / eval-seedS-mean; combine them with combine.py --seed-labels.
if [ -n "${SEEDS:-}" ] && { [ "$MAIN" != 1 ] || [ "$BLIND" != 0 ] || [ "$MSE" != 0 ] \
    || [ "$DIAG" != 0 ] || [ "${CHECKS:-1}" != 0 ] || [ "$TEST_HIST" != 0 ] \
    || [[ " ${TRAIN_SETS:-} " == *" seed="* ]] || [[ " $EVALS " == *" gauss-s"[0-9]* ]] \
    || [ "$(tr ' ' '\n' <<< "$SEEDS" | grep -c .)" != "$(tr ' ' '\n' <<< "$SEEDS" | grep . | sort -u | wc -l)" ]; }; then
  echo "icrl-job.sh: SEEDS trains only the main model, once per distinct seed; it needs MAIN=1" \
    "BLIND=0 MSE=0 DIAG=0 CHECKS=0 TEST_HIST=0, no seed= in TRAIN_SETS, no gauss-sX in EVALS" \
    "(got MAIN=$MAIN BLIND=$BLIND MSE=$MSE DIAG=$DIAG CHECKS=${CHECKS:-1} TEST_HIST=$TEST_HIST" \
    "SEEDS='$SEEDS' TRAIN_SETS='${TRAIN_SETS:-}' EVALS='$EVALS')" >&2
  exit 2
fi
# MAIN=0 leaves nothing for the main model's twin, diagnosis or checks to read: refuse before the
# install and the histories rather than fail after them
if [ "$MAIN" = 0 ] && { [ "$BLIND" != 1 ] || [ "$MSE" != 0 ] || [ "$DIAG" != 0 ] || [ "${CHECKS:-1}" != 0 ]; }; then
  echo "icrl-job.sh: MAIN=0 trains only the blinded twin; it needs BLIND=1 MSE=0 DIAG=0 CHECKS=0" \
    "(got BLIND=$BLIND MSE=$MSE DIAG=$DIAG CHECKS=${CHECKS:-1})" >&2
  exit 2
fi
W=/tmp/icrl-work/$FAMILY; mkdir -p "$OUT" "$W"
START=$SECONDS
t() { echo "[$((SECONDS - START)) s] $*" | tee -a "$OUT/stages.log"; }
. docs/results/job-header.sh && job_header "$OUT"
[ "$DEVICE" = cuda ] && . .device/scripts/install.sh .whl > "$OUT/install.log" 2>&1
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
t "installed"
if [ "$DEVICE" = cuda ] && ! python3 -c "import torch, selective_scan_cuda" 2>/dev/null; then
  (bash .device/scripts/build-mamba.sh .whl > "$OUT/build-mamba.log" 2>&1) & build=$!
fi
# The source: the paper's SAC (Table 2) with one update per transition (5 per vector step of 5
# envs, Tianshou's own ratio) and an initial temperature of 0.1 instead of 1.
SRC=(--set gradient_steps="$GRAD_STEPS" --set init_alpha=0.1)
[ -n "${ND:-}" ] && SRC+=(--noise-distilled "$ND")
[ -n "${HSTEPS:-}" ] && SRC+=(--steps "$HSTEPS")
[ -n "${K:-}" ] && SRC+=(--k "$K")
if [ "$TEST_HIST" = 1 ] && [ ! -f "$W/test.h5" ]; then  # beside the training histories
  (python3 -m icrl.histories generate --family "$FAMILY" --out "$W/test.h5" --split test \
     --tasks 3 --backend batched --device "$DEVICE" --workers 3 --no-progress "${SRC[@]}" \
     > "$OUT/test-histories.log" 2>&1; t "test histories rc=$? $(tail -1 "$OUT/test-histories.log")") &
  testgen=$!
fi
if [ ! -f "$W/h.h5" ]; then
  python3 -m icrl.histories generate --family "$FAMILY" --out "$W/h.h5" --backend batched \
    --device "$DEVICE" --workers 8 --no-progress ${TASKS:+--tasks "$TASKS"} "${SRC[@]}" \
    > "$OUT/histories.log" 2>&1
fi
t "histories rc=$? $(tail -1 "$OUT/histories.log" 2>/dev/null)"
[ -n "${testgen:-}" ] && wait "$testgen"
python3 -m icrl.histories info "$W/h.h5" > "$OUT/histories-info.txt" 2>&1
[ -n "${build:-}" ] && wait "$build"
t "mamba-ssm: $(tail -1 "$OUT/build-mamba.log" 2>/dev/null)"
common=(--preset "$FAMILY/$BACKBONE/paper" --histories "$W/h.h5" --set max_steps="$STEPS"
        --set progress=false --set tensorboard=false --set "device=\"$DEVICE\"" "${TSETS[@]}")
declare -A pid
bg() {  # name log command...: in the background, logging "name rc=..." when it ends
  local name=$1 log=$2; shift 2
  { "$@" > "$log" 2>&1; t "$name rc=$?"; } & pid[$name]=$!
}
ev() {  # name run-dir extra --set ...
  local name=$1 run=$2; shift 2
  bg "$name" "$OUT/eval-$name.log" python3 -m icrl.ad evaluate --checkpoint "$run" \
    --out-dir "$OUT/eval-$name" --set progress=false --set "device=\"$DEVICE\"" "${ESETS[@]}" "$@"
}
rules() {  # prefix run-dir label-suffix: the Gaussian head's evaluations that EVALS names
  local p=$1 run=$2 sfx=$3
  case " $EVALS " in *" gauss-sampled "*)
    ev "$p-sampled" "$run" --set "method=\"AD-$LABEL (Gaussian head, sampled$sfx)\"";; esac
  case " $EVALS " in *" gauss-mean "*)
    ev "$p-mean" "$run" --set sample=false --set "method=\"AD-$LABEL (Gaussian head, mean$sfx)\"";; esac
  case " $EVALS " in *" gauss-uniform "*)  # the Gaussian's mean and std, uniform noise (EvalConfig.sample_noise)
    ev "$p-uniform" "$run" --set 'sample_noise="uniform"' \
      --set "method=\"AD-$LABEL (Gaussian head, sampled uniform$sfx)\"";; esac
}
if [ -n "${SEEDS:-}" ]; then
  for seed in $SEEDS; do
    python3 -m icrl.ad train "${common[@]}" --run-dir "$W/gauss-seed$seed" \
      --set model.action_head=gaussian --set "seed=$seed" > "$OUT/train-seed$seed.log" 2>&1
    rc=$?; t "train seed $seed rc=$rc"
    cp "$W/gauss-seed$seed/metrics.jsonl" "$OUT/metrics-seed$seed.jsonl"
    # in the background, beside the next training; a training that failed is not evaluated
    [ "$rc" = 0 ] && rules "seed$seed" "$W/gauss-seed$seed" ""
  done
  for name in "${!pid[@]}"; do wait "${pid[$name]}"; done
  t "done"; exit 0
fi
if [ "$MAIN" = 1 ]; then
  python3 -m icrl.ad train "${common[@]}" --run-dir "$W/gauss" --set model.action_head=gaussian \
    > "$OUT/train-gauss.log" 2>&1 & g=$!
fi
if [ "$MSE" = 1 ]; then
  python3 -m icrl.ad train "${common[@]}" --run-dir "$W/mse" > "$OUT/train-mse.log" 2>&1 & m=$!
fi
if [ "$MAIN" = 1 ]; then
  wait $g; grc=$?; t "train gaussian rc=$grc"
  cp "$W/gauss/metrics.jsonl" "$OUT/metrics-gauss.jsonl"
fi
if [ "$MSE" = 1 ]; then
  wait $m; t "train mse rc=$?"; cp "$W/mse/metrics.jsonl" "$OUT/metrics-mse.jsonl"
fi
if [ "$BLIND" = 1 ]; then  # after the main model: side by side two 12M models gain nothing
  python3 -m icrl.ad train "${common[@]}" --run-dir "$W/blind" --set model.action_head=gaussian \
    --set data.reward_ablation=zero > "$OUT/train-blind.log" 2>&1 & b=$!
fi
# a main model whose training failed (or was stopped) is not evaluated as if trained
[ "$MAIN" = 1 ] && [ "$grc" = 0 ] && rules gauss "$W/gauss" ""
[ "$MAIN" = 1 ] && [ "$grc" = 0 ] && for e in $EVALS; do case $e in gauss-s[0-9]*)  # sampled with the std scaled: gauss-s0.5 -> std_scale=0.5
  ev "$e" "$W/gauss" --set "std_scale=${e#gauss-s}" \
    --set "method=\"AD-$LABEL (Gaussian head, sampled, std x ${e#gauss-s})\"";; esac; done
[ "$MSE" = 1 ] && ev mse "$W/mse" --set "method=\"AD-$LABEL (MSE head, paper)\""
if [ "$DIAG" = 1 ]; then  # beside the evaluations: GPU and cores have room for all of them
  held=h.h5 split=train; [ "$TEST_HIST" = 1 ] && held=test.h5 split=test
  dg=(--checkpoint "$W/gauss" --histories "$W/$held" --set n_tasks=3 --set split_tasks=3
      --set "prompt_episodes=$PROMPTS" --set episodes="$AFTER" --set "device=\"$DEVICE\""
      "${DSETS[@]}")
  bg diagnose "$OUT/diagnose.log" \
    python3 -m icrl.ad diagnose "${dg[@]}" --out-dir "$OUT/diagnose-gauss-$split-tasks"
  if [ "$TEST_HIST" = 1 ]; then
    bg diagnose-mean "$OUT/diagnose-mean.log" python3 -m icrl.ad diagnose "${dg[@]}" \
      --out-dir "$OUT/diagnose-gauss-mean-$split-tasks" --set sample=false --set 'parts=["prompted"]'
  fi
fi
if [ "${CHECKS:-1}" = 1 ]; then  # teacher-forced checks, beside the evaluations
  probe=h.h5; [ "$TEST_HIST" = 1 ] && probe=test.h5  # held out when there are test histories
  if [ "$TEST_HIST" = 1 ] && [ "$DEVICE" = cuda ]; then  # compares the CUDA step with forward
    bg step-vs-forward "$OUT/step-vs-forward.log" python3 docs/results/step_vs_forward.py \
      --checkpoint "$W/gauss" --histories "$W/test.h5" --task 1 --episodes 100 \
      --out "$OUT/step-vs-forward.csv"
  fi
  bg context-noise "$OUT/context-noise.log" python3 docs/results/context_noise.py \
    --checkpoint "$W/gauss" --histories "$W/$probe" --tasks 3 --out "$OUT/context-noise-$probe.csv"
fi
if [ "$BLIND" = 1 ]; then  # its evaluations follow its training (blinded: EvalConfig follows it)
  wait $b; rc=$?; t "train blind rc=$rc"; cp "$W/blind/metrics.jsonl" "$OUT/metrics-blind.jsonl"
fi
# a twin stopped before its end (window-poll.sh's STOP_PATTERN) is not evaluated as if trained
if [ "$BLIND" = 1 ] && [ "$rc" = 0 ]; then
  rules blind "$W/blind" ", blinded"  # the main model's action rules, rewards zeroed
fi
# each background step logs its own "NAME rc=..." line when it ends (so stages.log shows the
# main model's evaluations while the blinded twin still trains); here only wait for them all
for name in "${!pid[@]}"; do wait "${pid[$name]}"; done
t "done"
