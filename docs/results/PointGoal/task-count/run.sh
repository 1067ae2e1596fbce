set -u
cd /work/main
export TQDM_DISABLE=1 PYTHONUNBUFFERED=1
unset PYTHONDONTWRITEBYTECODE
for N in 5 40 10; do
  O=/tmp/tc/n$N
  rm -rf $O
  /usr/bin/time -f "%e s" .venv/bin/python docs/results/PointGoal/testbed_run.py $O --backbone transformer --tasks $N --variants gaussian > /tmp/tc/n$N.log 2>&1
  .venv/bin/python -m icrl.ad diagnose --checkpoint $O/gaussian/run --histories $O/histories.h5 --out-dir $O/diag --set device=\"cpu\" \
    --set 'parts=["train_vs_test"]' --set split_tasks=10 --set episodes=60 >> /tmp/tc/n$N.log 2>&1
done
echo ALLDONE >> /tmp/tc/n10.log
