"""Print a Markdown table of zero-action and uniform-random returns per family on the test tasks.

    uv run python packages/metaenvs/benchmarks/reference_returns.py [--episodes 5] [--seed 0]

Mean ± std are over every (task, episode) return; "task spread" is the std of the per-task means.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from icrl.metaenvs import FAMILIES, episode_length, reference_returns, test_tasks


def _cell(returns: np.ndarray) -> str:
    return f"{returns.mean():.1f} ± {returns.std():.1f} (task spread {returns.mean(1).std():.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-tasks", type=int, default=10, help="canonical test tasks per family")
    parser.add_argument("--episodes", type=int, default=5, help="episodes per task and policy")
    parser.add_argument("--seed", type=int, default=0, help="reset and random-action seed")
    args = parser.parse_args()

    rows = [(f, {}) for f in FAMILIES] + [("AntDir", {"terminate_when_unhealthy": False})]
    print(
        f"Test tasks: {args.n_tasks} per family, {args.episodes} episodes each, seed {args.seed}."
    )
    print()
    print("| family | episode | zero action | uniform random | mean random length | seconds |")
    print("|---|---|---|---|---|---|")
    for family, kwargs in rows:
        start = time.perf_counter()
        tasks = test_tasks(family, args.n_tasks)
        zero = reference_returns(family, tasks, "zero", args.episodes, args.seed, **kwargs)
        rand, lengths = reference_returns(
            family, tasks, "random", args.episodes, args.seed, with_lengths=True, **kwargs
        )
        name = family + (" (no termination)" if kwargs else "")
        print(
            f"| {name} | {episode_length(family)} | {_cell(zero)} | {_cell(rand)} | "
            f"{lengths.mean():.1f} | {time.perf_counter() - start:.1f} |"
        )
    print()
    print(f"Machine: {_cpu()} ({os.cpu_count()} cores), Python {platform.python_version()}")


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


if __name__ == "__main__":
    main()
