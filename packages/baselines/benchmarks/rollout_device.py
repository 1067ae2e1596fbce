"""Evaluation rollouts of MQL and MACAW: actions picked on the CPU against on the GPU.

    python packages/baselines/benchmarks/rollout_device.py --family HalfCheetahVel \
        --episodes 10 --processes 3 [--out bench.json]

Each process (like a seed of ``run_mql`` / ``evaluate_macaw`` with ``processes > 1``) runs
`--episodes` deterministic episodes of the first test task with an untrained agent at the
``small`` sizes (the network sizes, not the weights, set the cost), once with the policy on the
CPU (``rollout_device="cpu"``, one torch thread per process) and once on CUDA (``"model"``),
all processes at the same time; it prints env steps/s per process for each and the ratio. Without
CUDA only the CPU rows are measured. State the machine with the numbers.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
import torch


def _mql_steps_per_s(family: str, episodes: int, device: str) -> float:
    from icrl.baselines.mql import MQLAgent, mql_preset
    from icrl.baselines.mql._rollout import run_episodes
    from icrl.metaenvs import make_env, test_tasks

    task = test_tasks(family, 1)[0]
    env = make_env(family, task)
    cfg = mql_preset(family, "small")
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    train_device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    policy = MQLAgent(obs_dim, act_dim, cfg, train_device).policy_on(torch.device(device))
    rng = np.random.default_rng(0)
    run_episodes([env], [task], policy, "deterministic", rng, cfg.hist_len, seeds=[0])  # warm-up
    steps, start = 0, time.perf_counter()
    for e in range(episodes):
        (ep,) = run_episodes([env], [task], policy, "deterministic", rng, cfg.hist_len, seeds=[e])
        steps += len(ep)
    return steps / (time.perf_counter() - start)


def _macaw_steps_per_s(family: str, episodes: int, device: str) -> float:
    from icrl.baselines._eval import action_bounds, run_episode
    from icrl.baselines.macaw import Macaw, MacawConfig
    from icrl.baselines.macaw._eval import _policy_fn
    from icrl.metaenvs import make_env, test_tasks

    env = make_env(family, test_tasks(family, 1)[0])
    model = Macaw(env.observation_space.shape[0], env.action_space.shape[0], MacawConfig())
    model = model.to(device).requires_grad_(False)
    low, high = action_bounds(env)
    rng = np.random.default_rng(0)
    params = {k: v.detach() for k, v in model.policy_params().items()}
    policy = _policy_fn(model, params, low, high, 0.2, rng, torch.device(device))
    run_episode(env, policy, seed=0)  # warm-up
    steps, start = 0, time.perf_counter()
    for e in range(episodes):
        steps += len(run_episode(env, policy, seed=e))
    return steps / (time.perf_counter() - start)


def _job(method: str, family: str, episodes: int, device: str) -> float:
    fn = _mql_steps_per_s if method == "MQL" else _macaw_steps_per_s
    return fn(family, episodes, device)


def _side_by_side(method: str, family: str, episodes: int, device: str, n: int) -> list[float]:
    """`n` spawned processes (one torch thread each, as run_seed_jobs gives 3 seeds on 3 cores)
    running the same rollouts at once; their steps/s."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(n, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        return pool.starmap(_job, [(method, family, episodes, device)] * n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--family", default="HalfCheetahVel")
    ap.add_argument("--episodes", type=int, default=10, help="timed episodes per process")
    ap.add_argument("--processes", type=int, default=3, help="seeds side by side")
    ap.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = ap.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    machine = {
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpus": mp.cpu_count(),
    }
    results: dict[str, dict[str, list[float]]] = {}
    for method in ("MQL", "MACAW"):
        for device in devices:
            rates = _side_by_side(method, args.family, args.episodes, device, args.processes)
            results.setdefault(method, {})[device] = rates
            rate = f"{np.mean(rates):8.0f} env steps/s per process"
            print(f"{method:5s} actions on {device:4s}: {rate} ({args.processes} side by side)")
        if "cuda" in results[method]:
            ratio = np.mean(results[method]["cpu"]) / np.mean(results[method]["cuda"])
            print(f"{method:5s} CPU / GPU: {ratio:.1f}x")
    if args.out:
        payload = {"machine": machine, "args": vars(args) | {"out": str(args.out)}, **results}
        args.out.write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
