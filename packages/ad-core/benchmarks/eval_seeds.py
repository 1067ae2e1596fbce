"""In-context evaluation of several training seeds: one rollout per seed vs all seeds together.

`evaluate` rolls out every checkpoint of a method (one per training seed) on the same test tasks.
With `EvalConfig.batch_seeds` (the default) it does so in one loop over one vector env of
tasks × seeds, each model acting on its own slice; the alternative is one rollout per seed. Both
give identical returns (tests/test_evaluate.py); this prints the wall time of each and the ratio,
on the family's real envs, with random weights (speed does not depend on them).

    uv run packages/ad-core/benchmarks/eval_seeds.py --family HalfCheetahVel --size paper
    uv run packages/ad-core/benchmarks/eval_seeds.py --family ReacherGoal --size tiny \
        --device cpu --tasks 3 --episodes 2
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from gymnasium.vector import AutoresetMode

from icrl.ad import ADConfig, preset_dict
from icrl.ad._evaluate import rollout
from icrl.ad._model import ADModel, NormStats
from icrl.ad._train import resolve_device
from icrl.metaenvs import episode_length, make_env, make_vector_env, test_tasks


def _models(args, device: torch.device) -> list[ADModel]:
    env = make_env(args.family)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    env.close()
    cfg = ADConfig.model_validate(preset_dict(args.family, "mamba", args.size)["model"])
    norm = NormStats((0.0,) * obs_dim, (1.0,) * obs_dim, 0.0, 1.0)
    out = []
    for s in range(args.seeds):
        torch.manual_seed(s)
        out.append(ADModel(cfg, obs_dim, act_dim, norm, None).to(device).eval())
    return out


def _timed(models, args, device: torch.device, together: bool) -> float:
    tasks = test_tasks(args.family, args.tasks)
    groups = [models] if together else [[m] for m in models]
    envs = make_vector_env(args.family, tasks * len(groups[0]), asynchronous=not args.sync,
                           autoreset_mode=AutoresetMode.DISABLED)  # fmt: skip
    horizon = args.episodes * episode_length(args.family)
    try:
        start = time.perf_counter()
        for group in groups:
            rollout(group, envs, args.episodes, seed=0, device=device, max_tokens=horizon,
                    cuda_graph=device.type == "cuda")  # fmt: skip
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start
    finally:
        envs.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", default="HalfCheetahVel")
    p.add_argument("--size", default="paper", choices=["tiny", "small", "paper"])
    p.add_argument("--seeds", type=int, default=3, help="models (training seeds)")
    p.add_argument("--tasks", type=int, default=10, help="test tasks")
    p.add_argument("--episodes", type=int, default=10, help="in-context episodes per rollout")
    p.add_argument("--device", default="auto")
    p.add_argument("--sync", action="store_true", help="step the envs in this process")
    args = p.parse_args()
    device = resolve_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)
    models = _models(args, device)
    _timed(models, argparse.Namespace(**{**vars(args), "episodes": 1}), device, True)  # warm-up
    one_by_one = _timed(models, args, device, together=False)
    together = _timed(models, args, device, together=True)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "no GPU"
    print(f"machine: {os.cpu_count()} cores, {gpu}; {args.family} {args.size} Mamba, "
          f"{args.seeds} seeds × {args.tasks} tasks × {args.episodes} episodes, "
          f"{'sync' if args.sync else 'async'} envs")  # fmt: skip
    print(f"one rollout per seed: {one_by_one:.1f} s")
    print(f"all seeds together:   {together:.1f} s  ({one_by_one / together:.2f}x)")


if __name__ == "__main__":
    main()
