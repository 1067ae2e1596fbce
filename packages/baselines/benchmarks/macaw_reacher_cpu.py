"""A small MACAW run on ReacherGoal, end to end on CPU: histories → 3 seeds → online evaluation.

    .venv/bin/python packages/baselines/benchmarks/macaw_reacher_cpu.py --out runs/macaw-bench

Generates a small histories file with Tianshou SAC (icrl.histories), meta-trains MACAW with a
reduced network (CPU budget), evaluates it on the canonical test tasks with the online protocol
and prints the mean return per episode; the folder then holds returns.csv and curves.png.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from icrl.baselines import MacawConfig, MacawEvalConfig, MacawTrainConfig, run_macaw
from icrl.baselines._results import read_results_csv, summarize
from icrl.histories import GenerateConfig, generate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--tasks", type=int, default=6)
    p.add_argument("--env-steps", type=int, default=3000, help="source-RL env steps per task")
    p.add_argument("--meta-steps", type=int, default=300)
    p.add_argument("--episodes", type=int, default=6)
    p.add_argument("--test-tasks", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    t0 = time.time()
    hist = args.out / "reacher.h5"
    gen = GenerateConfig.model_validate(
        {
            "family": "ReacherGoal",
            "algorithm": {"kind": "sac", "hidden_sizes": [64, 64], "warmup_steps": 500},
            "steps_per_task": args.env_steps,
            "n_envs": 2,
            "k": 1,
            "tasks": args.tasks,
            "workers": 2,
            "progress": False,
        }
    )
    generate(gen, hist)
    t1 = time.time()
    algo = MacawConfig(
        hidden_sizes=(64, 64, 64),
        latent_dim=16,
        batch_size=128,
        inner_batch_size=128,
        task_batch_size=4,
        value_lr=1e-4,
        transition_skip=1,
    )
    train = MacawTrainConfig(histories=hist, algo=algo, steps=args.meta_steps, log_every=25)
    evaluation = MacawEvalConfig(episodes=args.episodes, n_test_tasks=args.test_tasks)
    csv_path = run_macaw(train, evaluation, args.out, seeds=(0, 1, 2), progress=False)
    t2 = time.time()
    s = summarize(read_results_csv(csv_path))["MACAW"]
    print(f"histories {t1 - t0:.0f} s, MACAW train+eval (3 seeds) {t2 - t1:.0f} s")
    for e, m, c in zip(s["episode"], s["mean"], s["ci95"], strict=True):
        print(f"episode {e}: {m:.2f} ± {c:.2f}")


if __name__ == "__main__":
    main()
