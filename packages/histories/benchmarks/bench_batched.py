"""Env-steps/s of the batched backend against the per-process Tianshou reference, same machine.

Each measurement is self-limiting: it runs for a fixed wall time after its warm-up (random
warm-up steps, CUDA-graph capture, process start-up are excluded) and then stops the run.

    python packages/histories/benchmarks/bench_batched.py --out results.json \
        --families ReacherGoal AntDir --seconds 25 --ref-procs 16 --env-workers 15

* batched: all train tasks of the family (preset algorithm and sizes) in one process on --device,
  sub-envs stepped by --env-workers processes; also the env-only rate of that pool (random
  actions), which bounds it, and a CUDA-graph vs eager check of the update.
* reference: --ref-procs processes at once, each running the Tianshou backend on one task
  (one torch thread each, as `generate` does); the aggregate is the sum of their rates.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")


class _Stop(Exception):
    """Raised from a progress callback to end a reference run."""


def _window(seconds: float, start_after: int) -> tuple[Any, Any, dict[str, float]]:
    """A progress callback and a stop predicate measuring steps in a wall-time window."""
    st = {"steps": 0, "t0": 0.0, "s0": 0, "t1": 0.0, "s1": 0}

    def progress(n: int) -> None:
        st["steps"] += n
        now = time.perf_counter()
        if not st["t0"] and st["steps"] >= start_after:
            st["t0"], st["s0"] = now, st["steps"]
        if st["t0"] and not st["t1"] and now - st["t0"] >= seconds:
            st["t1"], st["s1"] = now, st["steps"]

    def stop() -> bool:
        return bool(st["t1"])

    return progress, stop, st


def _rate(st: dict[str, float]) -> float:
    return (st["s1"] - st["s0"]) / max(st["t1"] - st["t0"], 1e-9) if st["t1"] else float("nan")


def bench_batched(
    family: str, seconds: float, device: str, env_workers: int, n_tasks: int | None
) -> dict[str, Any]:
    import numpy as np

    from icrl.histories import PRESETS
    from icrl.histories._envs import train_tasks
    from icrl.histories._records import task_seed
    from icrl.histories.batched import BatchSpec, run_batched

    preset = PRESETS[family]
    algo = preset.algorithm
    tasks = train_tasks(family, n_tasks)
    n_envs = 5
    seeds = [task_seed(0, i) for i in range(len(tasks))]
    spec = BatchSpec(
        family=family,
        tasks=tasks,
        task_seeds=seeds,
        steps=preset.steps_per_task,
        n_envs=n_envs,
        k=preset.k,
        algorithm=algo,
        device=device,
        env_workers=env_workers,
    )
    # measure from 20 training vector steps after the random warm-up
    start_after = (getattr(algo, "warmup_steps", 0) + 20 * n_envs) * len(tasks)
    progress, stop, st = _window(seconds, start_after)
    t = time.perf_counter()
    run = run_batched(spec, progress, stop)
    results = run.results
    wall = time.perf_counter() - t
    rets = [r.episodes["return"] for r in results]
    n_ep = min(len(x) for x in rets)
    q = max(n_ep // 4, 1)
    early = float(np.mean([x[:q].mean() for x in rets]))
    late = float(np.mean([x[n_ep - q : n_ep].mean() for x in rets]))
    return {
        "family": family,
        "algorithm": algo.kind,
        "tasks": len(tasks),
        "sub_envs": len(tasks) * n_envs,
        "env_steps_per_s": _rate(st),
        "env_steps_per_task": results[0].env_steps,
        "update_mode": run.update_mode,
        "wall_s_total": wall,
        "mean_return_first_quarter_of_episodes": early,
        "mean_return_last_quarter_of_episodes": late,
    }


def bench_env_pool(family: str, seconds: float, env_workers: int, n_tasks: int | None) -> float:
    """Random-action env-steps/s of the batched backend's env pool (its upper bound)."""
    from icrl.histories._envs import train_tasks
    from icrl.histories.batched import EnvPool

    tasks = [t for t in train_tasks(family, n_tasks) for _ in range(5)]
    with EnvPool(family, tasks, list(range(len(tasks))), env_workers) as pool:
        pool.reset()
        for _ in range(20):
            pool.step(None)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            pool.step(None)
            n += len(tasks)
        return n / (time.perf_counter() - t0)


def graph_vs_eager(device: str) -> dict[str, float]:
    """Max parameter difference between 5 graph-replayed and 5 eager SAC updates, same state and
    same CUDA generator state (the graph's random numbers follow the eager sequence)."""
    import copy

    import torch

    from icrl.histories import SACConfig
    from icrl.histories.batched import BatchedSAC, TaskReplay
    from icrl.histories.batched._run import _capture

    torch.manual_seed(0)
    model = BatchedSAC(SACConfig(), 8, 2, list(range(8)), device)
    replay = TaskReplay(8, 1000, 8, 2, device)
    for _ in range(100):
        replay.add(torch.randn(8, 5, 2 * 8 + 2 + 2, device=device).clamp(-1, 1).abs_())
    eager = copy.deepcopy(model)
    graphs = _capture(model, replay, 256, 1)
    torch.cuda.manual_seed(123)
    for _ in range(5):
        model.critic_steps += 1
        graphs[True].replay()
    torch.cuda.manual_seed(123)
    for _ in range(5):
        eager.update(replay.sample(256))
    torch.cuda.synchronize()
    diffs = [
        (p - q).abs().max().item()
        for p, q in zip(model.parameters(), eager.parameters(), strict=True)
    ]
    return {"max_abs_param_diff": max(diffs)}


def _ref_proc(family: str, index: int, seconds: float, warm_s: float) -> float:
    from icrl.histories import GenerateConfig
    from icrl.histories._envs import train_tasks
    from icrl.histories._generate import run_task

    config = GenerateConfig(family=family, workers=0, progress=False)
    warm = getattr(config.algorithm, "warmup_steps", 0)
    st = {"steps": 0, "t_train": 0.0, "t0": 0.0, "s0": 0}

    def progress(n: int) -> None:
        st["steps"] += n
        now = time.perf_counter()
        if st["steps"] >= warm and not st["t_train"]:
            st["t_train"] = now
        if st["t_train"] and not st["t0"] and now - st["t_train"] >= warm_s:
            st["t0"], st["s0"] = now, st["steps"]
        if st["t0"] and now - st["t0"] >= seconds:
            st["rate"] = (st["steps"] - st["s0"]) / (now - st["t0"])
            raise _Stop

    with contextlib.suppress(_Stop):
        tasks = train_tasks(family, None)
        run_task(config, index % len(tasks), tasks[index % len(tasks)], progress, record=False)
    return float(st.get("rate", float("nan")))


def bench_reference(family: str, procs: int, seconds: float, warm_s: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    with ctx.Pool(procs) as pool:
        rates = pool.starmap(_ref_proc, [(family, i, seconds, warm_s) for i in range(procs)])
    return {
        "family": family,
        "processes": procs,
        "per_process_env_steps_per_s": rates,
        "aggregate_env_steps_per_s": float(sum(rates)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", nargs="+", default=["ReacherGoal", "AntDir"])
    ap.add_argument("--seconds", type=float, default=25.0)
    ap.add_argument("--ref-seconds", type=float, default=20.0)
    ap.add_argument("--ref-procs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--env-workers", type=int, default=max((os.cpu_count() or 2) - 1, 1))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--tasks", type=int, default=None, help="first n train tasks (default all)")
    ap.add_argument("--out", default="bench_batched.json")
    args = ap.parse_args()
    import torch

    out: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "machine": {
            "cpu_count": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch": torch.__version__,
        },
        "results": [],
    }

    def save() -> None:
        with open(args.out + ".tmp", "w") as f:
            json.dump(out, f, indent=1)
        os.replace(args.out + ".tmp", args.out)
        print(json.dumps(out["results"][-1] if out["results"] else out, indent=1), flush=True)

    if args.device.startswith("cuda"):
        try:
            out["results"].append({"graph_vs_eager": graph_vs_eager(args.device)})
        except Exception as exc:  # report it, keep benchmarking
            out["results"].append({"graph_vs_eager_error": repr(exc)})
        save()
    for fam in args.families:
        out["results"].append(
            {
                "env_pool_random_steps_per_s": bench_env_pool(
                    fam, 5.0, args.env_workers, args.tasks
                ),
                "family": fam,
            }
        )
        save()
        out["results"].append(
            {"batched": bench_batched(fam, args.seconds, args.device, args.env_workers, args.tasks)}
        )
        save()
        if not args.skip_reference:
            ref = bench_reference(fam, args.ref_procs, args.ref_seconds, 3.0)
            out["results"].append({"reference": ref})
            b = out["results"][-2]["batched"]["env_steps_per_s"]
            out["results"].append({"family": fam, "speedup": b / ref["aggregate_env_steps_per_s"]})
            save()


if __name__ == "__main__":
    main()
