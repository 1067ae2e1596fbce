"""Env-steps/s of the Tianshou source learners, with recording on and off, and with P processes.

Each measurement is one `run_task` (one thread per process, as in `generate`), timed over its
learning phase only (after the random warm-up) through the progress callback; start-up (imports,
Numba JIT) is excluded by a first untimed run. On and off runs use the same seeds, so they do the
same computation and differ only by the recorder. Recording cost is reported three ways: the
wall-clock throughput ratio of interleaved on/off runs (noisy on a shared machine), the same ratio
in process CPU time (less sensitive to other jobs), and the time spent inside the recorder's hook
as a share of the run.

    TQDM_DISABLE=1 python packages/histories/benchmarks/bench_throughput.py --steps 1000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import time
from typing import Any

# family whose paper preset uses each algorithm (Tables 1-4), network sizes as in the presets
FAMILY = {"sac": "ReacherGoal", "ppo": "PusherGoal", "droq": "AntDir"}


def _config(algo: str, steps: int) -> Any:
    from icrl.histories import PRESETS, GenerateConfig

    preset = PRESETS[FAMILY[algo]].algorithm
    warm = getattr(preset, "warmup_steps", 0)
    if algo == "ppo":
        unit = preset.steps_per_env * 5
        steps = max(unit, steps // unit * unit)
    return GenerateConfig(
        family=FAMILY[algo], algorithm=preset, steps_per_task=warm + steps, tasks=1, workers=0
    )


def measure(algo: str, steps: int, record: bool) -> dict[str, float]:
    """One run: learning-phase env-steps/s and the share of time spent in the recorder."""
    import icrl.histories._recorder as rec_mod
    from icrl.histories import run_task
    from icrl.metaenvs import train_tasks

    config = _config(algo, steps)
    warm = getattr(config.algorithm, "warmup_steps", 0)
    state: dict[str, Any] = {"n": 0, "t_warm": None, "c_warm": None}
    hook_time = [0.0]
    original = rec_mod.HistoryRecorder.tianshou_hook

    def timed(self: Any, a: Any, b: Any, mean_action: Any) -> None:
        t = time.perf_counter()
        original(self, a, b, mean_action)
        hook_time[0] += time.perf_counter() - t

    def progress(n: int) -> None:
        state["n"] += n
        if state["t_warm"] is None and state["n"] >= warm:
            state["t_warm"] = time.perf_counter()
            state["c_warm"] = time.process_time()

    rec_mod.HistoryRecorder.tianshou_hook = timed  # type: ignore[method-assign]
    try:
        t0 = time.perf_counter()
        run_task(config, 0, train_tasks(config.family, 1)[0], progress, record=record)
        t1, c1 = time.perf_counter(), time.process_time()
    finally:
        rec_mod.HistoryRecorder.tianshou_hook = original  # type: ignore[method-assign]
    learn = t1 - state["t_warm"]
    return {
        "steps_per_s": (config.steps_per_task - warm) / learn,
        "cpu_steps_per_s": (config.steps_per_task - warm) / (c1 - state["c_warm"]),
        "hook_share": hook_time[0] / (t1 - t0),
    }


def _proc(args: tuple[str, int]) -> float:
    os.environ["TQDM_DISABLE"] = "1"
    return measure(args[0], args[1], True)["steps_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", default=["sac", "ppo", "droq"])
    parser.add_argument("--steps", type=int, default=1000, help="learning-phase env steps per run")
    parser.add_argument("--repeats", type=int, default=2, help="on/off pairs per algorithm")
    parser.add_argument("--processes", type=int, nargs="+", default=[2])
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    results: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
    }
    for algo in args.algos:
        steps = args.steps
        measure(algo, min(steps, 200) if algo != "ppo" else steps, True)  # JIT/caches, untimed
        on, off, share, cpu_on, cpu_off = [], [], [], [], []
        for _ in range(args.repeats):
            r = measure(algo, steps, True)
            on.append(r["steps_per_s"])
            cpu_on.append(r["cpu_steps_per_s"])
            share.append(r["hook_share"])
            r = measure(algo, steps, False)
            off.append(r["steps_per_s"])
            cpu_off.append(r["cpu_steps_per_s"])
        agg = {}
        for p in args.processes:
            ctx = mp.get_context("spawn")
            t0 = time.perf_counter()
            with ctx.Pool(p) as pool:
                per = pool.map(_proc, [(algo, steps)] * p)
            agg[p] = {"per_process": per, "sum": sum(per), "wall_s": time.perf_counter() - t0}
        results[algo] = {
            "family": FAMILY[algo],
            "steps": steps,
            "record_on": on,
            "record_off": off,
            "median_on": statistics.median(on),
            "median_off": statistics.median(off),
            "cost_pct_throughput": 100 * (1 - statistics.median(on) / statistics.median(off)),
            "cpu_on": cpu_on,
            "cpu_off": cpu_off,
            "cost_pct_cpu": 100 * (1 - statistics.median(cpu_on) / statistics.median(cpu_off)),
            "cost_pct_hook_time": 100 * statistics.median(share),
            "processes": agg,
        }
        r = results[algo]
        print(
            f"{algo:5s} {FAMILY[algo]:15s} on {r['median_on']:7.1f}/s  off {r['median_off']:7.1f}/s"
            f"  cost {r['cost_pct_throughput']:+5.1f}% (wall), "
            f"{r['cost_pct_cpu']:+5.1f}% (CPU time), "
            f"{r['cost_pct_hook_time']:.2f}% (time in recorder)  "
            + "  ".join(f"{p} procs: {a['sum']:.1f}/s total" for p, a in agg.items()),
            flush=True,
        )
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
