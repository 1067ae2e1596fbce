"""`generate` with the batched backend: tasks split over devices, one process per device.

Each device's process trains its share of the tasks together (`run_batched`) and commits every
task's file (atomically, as the per-task backend does) when its batch ends; a run killed before
that redoes the whole batch of that device on resume, never a half-written task.
"""

from __future__ import annotations

import contextlib
import os
import queue
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from icrl.histories import _envs
from icrl.histories._config import GenerateConfig
from icrl.histories._schema import TaskRecord
from icrl.histories.batched._run import BatchSpec, run_batched


def devices_of(device: str) -> list[str]:
    """The devices a batched run uses: "cuda" means every visible GPU; "cuda:0,cuda:1" (or
    "cpu,cpu", which tests use) lists them, one process each."""
    import torch

    if "," in device:
        return [d.strip() for d in device.split(",")]
    if device == "cuda":
        n = torch.cuda.device_count()
        if n == 0:
            raise ValueError("device='cuda' but no CUDA device is visible; use device='cpu'")
        return [f"cuda:{i}" for i in range(n)]
    return [device]


def run_tasks_batched(
    config: GenerateConfig,
    indices: Sequence[int],
    tasks: Sequence[Any],
    progress: Callable[[int], None] | None = None,
    device: str | None = None,
    env_workers: int | None = None,
) -> list[TaskRecord]:
    """Train `tasks` (indices into the family's train split) together; one record per task."""
    from icrl.histories._generate import task_record, task_seed

    seeds = [task_seed(config.seed, i) for i in indices]
    spec = BatchSpec(
        family=config.family,
        tasks=list(tasks),
        task_seeds=seeds,
        steps=config.steps_per_task,
        n_envs=config.n_envs,
        k=config.k,
        algorithm=config.algorithm,
        device=device or devices_of(config.device)[0],
        env_workers=config.workers if env_workers is None else env_workers,
        noise=config.noise_distillation,
    )
    results = run_batched(spec, progress)
    return [
        task_record(
            config,
            i,
            task,
            seed,
            r.transitions,
            r.episodes,
            r.env_steps,
            r.unfinished,
            r.obs_dim,
            r.act_dim,
            r.attrs,
        )
        for i, task, seed, r in zip(indices, tasks, seeds, results, strict=True)
    ]


def _commit(config: GenerateConfig, records: Sequence[TaskRecord], parts: Path) -> None:
    from icrl.histories._generate import write_task_file
    from icrl.histories._schema import task_name

    for rec in records:
        index = int(rec.attrs["task_index"])
        write_task_file(parts / f"{task_name(index)}.h5", config, index, rec)


def _device_main(
    config_json: str,
    indices: list[int],
    task_dicts: list[dict[str, Any]],
    parts: str,
    device: str,
    env_workers: int,
    q: Any,
) -> int:
    """One device's process: train its tasks, commit their files, report progress on `q`."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    config = GenerateConfig.model_validate_json(config_json)
    tasks = [_envs.task_from_dict(d) for d in task_dicts]
    pending = [0, time.monotonic()]

    def progress(n: int) -> None:
        pending[0] += n
        if time.monotonic() - pending[1] > 0.5:
            q.put(pending[0])
            pending[0], pending[1] = 0, time.monotonic()

    records = run_tasks_batched(config, indices, tasks, progress, device, env_workers)
    q.put(pending[0])
    _commit(config, records, Path(parts))
    return len(records)


def generate_batched(
    config: GenerateConfig,
    tasks: Sequence[Any],
    todo: Sequence[int],
    parts: Path,
    bar: Any,
) -> None:
    """Train the `todo` tasks, split evenly over the devices, and commit their task files."""
    if not todo:
        return
    devices = devices_of(config.device)[: len(todo)]
    if len(devices) == 1:
        records = run_tasks_batched(config, todo, [tasks[i] for i in todo], bar.steps, devices[0])
        _commit(config, records, parts)
        for _ in records:
            bar.task_done()
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from icrl.histories._generate import init_helper_process, sigint_free_manager, stop_workers

    ctx = mp.get_context("spawn")
    groups = [list(g) for g in np.array_split(np.asarray(todo), len(devices))]
    workers = max(config.workers // len(devices), 0)
    with (
        sigint_free_manager(ctx) as manager,
        ProcessPoolExecutor(
            max_workers=len(devices), mp_context=ctx, initializer=init_helper_process
        ) as pool,
    ):
        q = manager.Queue()
        try:
            futures = [
                pool.submit(
                    _device_main,
                    config.model_dump_json(),
                    [int(i) for i in group],
                    [_envs.task_to_dict(tasks[int(i)]) for i in group],
                    str(parts),
                    dev,
                    workers,
                    q,
                )
                for group, dev in zip(groups, devices, strict=True)
            ]
            while any(not f.done() for f in futures):
                time.sleep(0.5)
                _drain(q, bar)
            _drain(q, bar)
            for f in futures:
                for _ in range(f.result()):
                    bar.task_done()
        except BaseException:  # Ctrl-C or a failed device: stop the others now
            stop_workers(pool)
            raise


def _drain(q: Any, bar: Any) -> None:
    with contextlib.suppress(queue.Empty):
        while True:
            bar.steps(q.get_nowait())
