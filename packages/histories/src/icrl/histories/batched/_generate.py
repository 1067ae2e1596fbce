"""The batched backend: tasks split over devices, each device's share trained together.

One device trains its tasks in this process; several train theirs in one helper process each
(`"cuda"`: every visible GPU), which hands its records back when its batch ends. `generate`
commits a device's tasks when its records arrive, so a run killed before that redoes that
device's whole batch on resume, never a half-written task.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from icrl.histories import _envs
from icrl.histories._backend import Backend, Job, ProgressFn, QueueProgress, in_helper_processes
from icrl.histories._config import GenerateConfig
from icrl.histories._records import task_record, task_seed
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


class BatchedBackend(Backend):
    """All tasks of a device trained at once (`run_batched`), one process per device;
    `GenerateConfig.workers` env worker processes (split over the devices)."""

    name = "batched"

    def run(
        self, config: GenerateConfig, jobs: Sequence[Job], progress: ProgressFn
    ) -> Iterator[TaskRecord]:
        devices = devices_of(config.device)[: len(jobs)]
        if len(devices) == 1:
            yield from run_tasks_batched(config, jobs, progress, devices[0])
            return
        cfg = config.model_dump_json()
        workers = max(config.workers // len(devices), 0)
        groups = np.array_split(np.arange(len(jobs)), len(devices))
        calls = [
            (cfg, [(jobs[i].index, _envs.task_to_dict(jobs[i].task)) for i in group], dev, workers)
            for group, dev in zip(groups, devices, strict=True)
        ]
        for records in in_helper_processes(_device_main, calls, len(devices), progress):
            yield from records

    def run_task(
        self,
        config: GenerateConfig,
        job: Job,
        progress: ProgressFn | None = None,
        record: bool = True,
    ) -> TaskRecord:
        return run_tasks_batched(config, [job], progress)[0]  # always records


def run_tasks_batched(
    config: GenerateConfig,
    jobs: Sequence[Job],
    progress: ProgressFn | None = None,
    device: str | None = None,
    env_workers: int | None = None,
) -> list[TaskRecord]:
    """Train the jobs' tasks together in this process; one record per job, in order."""
    seeds = [task_seed(config.seed, job.index) for job in jobs]
    spec = BatchSpec(
        family=config.family,
        tasks=[job.task for job in jobs],
        task_seeds=seeds,
        steps=config.steps_per_task,
        n_envs=config.n_envs,
        k=config.k,
        algorithm=config.algorithm,
        device=device or devices_of(config.device)[0],
        env_workers=config.workers if env_workers is None else env_workers,
        noise=config.noise_distillation,
    )
    results = run_batched(spec, progress).results
    return [
        task_record(
            config,
            job.index,
            job.task,
            seed,
            r.transitions,
            r.episodes,
            r.env_steps,
            r.unfinished,
            r.obs_dim,
            r.act_dim,
            r.attrs,
        )
        for job, seed, r in zip(jobs, seeds, results, strict=True)
    ]


def _device_main(
    config_json: str,
    tasks: list[tuple[int, dict[str, Any]]],
    device: str,
    env_workers: int,
    q: Any,
) -> list[TaskRecord]:
    """One device's helper process: train its (index, task) pairs together, return the records."""
    config = GenerateConfig.model_validate_json(config_json)
    jobs = [Job(i, _envs.task_from_dict(d)) for i, d in tasks]
    progress = QueueProgress(q)
    records = run_tasks_batched(config, jobs, progress, device, env_workers)
    progress.flush()
    return records
