"""MQL measurements: update throughput at the official sizes, and full runs over seeds.

    # update / adaptation throughput for the paper presets (HalfCheetahVel and AntDir sizes)
    python packages/baselines/benchmarks/mql_bench.py throughput --out runs/mql-bench
    # train + adapt on ReacherGoal, 3 seeds in parallel processes, AD-format results
    python packages/baselines/benchmarks/mql_bench.py run --family ReacherGoal --size small \
        --steps 60000 --seeds 0 1 2 --out runs/mql-reacher

``run`` trains each seed in its own process (``run_mql(processes=...)``: the GPU is far from busy
with one), writes ``seed_s/returns.csv`` and then ``returns.csv`` / ``curves.png``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from icrl.baselines import (
    mql_preset,
    read_results_csv,
    run_mql,
)
from icrl.baselines._results import summarize
from icrl.baselines.mql import MQLAgent, MultiTaskReplay, mql_adapt
from icrl.baselines.mql._graph import make_updater
from icrl.baselines.mql._rollout import run_episodes
from icrl.metaenvs import make_env, test_tasks, train_tasks


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def throughput(family: str, n_updates: int) -> dict[str, float]:
    """Updates/s, env-steps/s of collection and seconds per adaptation at the paper preset."""
    cfg = mql_preset(family, "paper")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tasks = train_tasks(family, cfg.n_train_tasks)
    envs = [make_env(family) for _ in range(cfg.envs_per_iter)]
    obs_dim = envs[0].observation_space.shape[0]
    act_dim = envs[0].action_space.shape[0]
    agent = MQLAgent(obs_dim, act_dim, cfg, device)
    replay = MultiTaskReplay(100_000, obs_dim, act_dim, cfg.hist_len, len(tasks))
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    steps = 0
    while steps < 10_000:
        ids = rng.integers(0, len(tasks), size=cfg.envs_per_iter)
        eps = run_episodes(
            envs, [tasks[i] for i in ids], agent, "noisy", rng, cfg.hist_len, cfg.expl_noise
        )
        for t, ep in zip(ids, eps, strict=True):
            replay.add_episode(ep.obs, ep.act, ep.rew, ep.next_obs, ep.terminated, int(t))
        steps += sum(len(e) for e in eps)
    collect_s = time.perf_counter() - t0
    rates = {}
    for graphs in (False, True):
        timed = agent.clone()
        update = make_updater(timed, use_graphs=graphs)
        for _ in range(20):  # warm-up (cuDNN plans, allocator, graph capture)
            update(replay.batch_arrays(replay.sample_indices(cfg.batch_size, rng)))
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(n_updates):
            update(replay.batch_arrays(replay.sample_indices(cfg.batch_size, rng)))
        _sync(device)
        rates[graphs] = n_updates / (time.perf_counter() - t0)
    env = make_env(family)
    task = test_tasks(family, 1)[0]
    new = MultiTaskReplay(2000, obs_dim, act_dim, cfg.hist_len)
    (ep,) = run_episodes([env], [task], agent, "deterministic", rng, cfg.hist_len)
    new.add_episode(ep.obs, ep.act, ep.rew, ep.next_obs, ep.terminated, 0)
    t0 = time.perf_counter()
    mql_adapt(agent, new, replay, rng)
    _sync(device)
    adapt_s = time.perf_counter() - t0
    hours = cfg.total_env_steps * cfg.utd_ratio / rates[True] / 3600
    return {
        "family": family,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "collect_env_steps_per_s": steps / collect_s,
        "updates_per_s_eager": rates[False],
        "updates_per_s_cuda_graphs": rates[True],
        "adapt_s": adapt_s,
        "paper_budget_env_steps": cfg.total_env_steps,
        "paper_budget_update_hours_one_process": hours,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    tp = sub.add_parser("throughput")
    tp.add_argument("--families", nargs="+", default=["HalfCheetahVel", "AntDir"])
    tp.add_argument("--updates", type=int, default=500)
    tp.add_argument("--out", type=Path, required=True)
    rp = sub.add_parser("run")
    rp.add_argument("--family", default="ReacherGoal")
    rp.add_argument("--size", default="small", choices=["tiny", "small", "paper"])
    rp.add_argument("--steps", type=int, default=None, help="total_env_steps override")
    rp.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    rp.add_argument("--set", nargs="*", default=[], help="field=json overrides, e.g. utd_ratio=0.5")
    rp.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.cmd == "throughput":
        results = [throughput(f, a.updates) for f in a.families]
        print(json.dumps(results, indent=2))
        (a.out / "mql_throughput.json").write_text(json.dumps(results, indent=2))
        return
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in a.set)}
    if a.steps is not None:
        overrides["total_env_steps"] = a.steps
    cfg_dict = {"family": a.family, "size": a.size, **overrides}
    cfg = mql_preset(**cfg_dict)
    (a.out / "config.json").write_text(cfg.model_dump_json(indent=2))
    t0 = time.perf_counter()
    csv_path, _ = run_mql(cfg, a.out, seeds=a.seeds, progress=False, processes=len(a.seeds))
    for method, s in summarize(read_results_csv(csv_path)).items():
        for e, m, h in zip(s["episode"], s["mean"], s["ci95"], strict=True):
            print(f"{method} episode {e}: {m:.2f} ± {h:.2f}")
    print(f"wall {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
