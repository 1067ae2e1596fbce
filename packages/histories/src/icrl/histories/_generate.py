"""Generating a history file: tasks in parallel processes, atomic per-task commits, resume, merge.

On disk, while a run is going on, `out.h5` has a sibling directory `out.h5.parts/` holding
`config.json` (the run's identity) and one finished `task_NNN.h5` per task. Each task file is
written as `task_NNN.h5.tmp`, flushed, fsynced and renamed, so a killed run leaves either a whole
task file or a `.tmp` that the next run deletes and redoes. When every task is there, they are
copied into `out.h5.tmp`, which is validated, fsynced and renamed to `out.h5`; only then is the
parts directory removed. A kill -9 at any point therefore never corrupts a finished task.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import queue
import shutil
import time
import warnings
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from icrl.histories import _envs
from icrl.histories._config import GenerateConfig, config_differences
from icrl.histories._learners import BACKENDS, TaskSpec
from icrl.histories._recorder import HistoryRecorder
from icrl.histories._schema import (
    SCHEMA_VERSION,
    HistoryFileError,
    TaskRecord,
    check_root,
    check_task,
    decode_attrs,
    task_name,
    write_root_attrs,
    write_task,
)

_LIBRARIES = (
    "icrl-histories",
    "icrl-metaenvs",
    "tianshou",
    "torch",
    "gymnasium",
    "mujoco",
    "numpy",
    "h5py",
)


class ConfigMismatchError(ValueError):
    """A rerun into an existing output asked for different settings."""


class TaskFailedError(RuntimeError):
    """The source run of one task raised; finished tasks stay committed for the next run."""


def library_versions() -> dict[str, str]:
    """Versions of the libraries that decide a history's content."""
    out = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def task_seed(seed: int, index: int) -> int:
    """The seed of task `index` of a run seeded `seed` (independent streams per task)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint32)[0])


def parts_dir(path: Path) -> Path:
    """The directory of finished per-task files of an unfinished run."""
    return path.with_name(path.name + ".parts")


@dataclass(frozen=True)
class _Job:
    config_json: str
    index: int
    task: dict[str, Any]
    out: str


def run_task(
    config: GenerateConfig,
    index: int,
    task: Any,
    progress: Callable[[int], None] | None = None,
    record: bool = True,
) -> TaskRecord:
    """Run the source algorithm on one task and return what it recorded."""
    import torch

    if config.backend == "batched":  # batched backend: see _batched_generate
        from icrl.histories._batched_generate import run_tasks_batched

        return run_tasks_batched(config, [index], [task], progress)[0]

    spec = TaskSpec(
        family=config.family,
        task=task,
        task_index=index,
        task_seed=task_seed(config.seed, index),
        steps=config.steps_per_task,
        n_envs=config.n_envs,
        algorithm=config.algorithm,
        device=config.device,
    )
    probe = _envs.make_env(config.family, task)
    obs_dim = int(np.prod(probe.observation_space.shape))
    act_dim = int(np.prod(probe.action_space.shape))
    probe.close()
    recorder = HistoryRecorder(config.n_envs, config.k, obs_dim, act_dim)
    threads = torch.get_num_threads()
    # One thread per task keeps runs bit-reproducible and lets tasks run side by side.
    torch.set_num_threads(1)
    try:
        BACKENDS[config.backend]().run(spec, recorder if record else None, progress)
    finally:
        torch.set_num_threads(threads)
    trans, eps = recorder.result()
    return task_record(
        config,
        index,
        task,
        spec.task_seed,
        trans,
        eps,
        recorder.env_steps,
        recorder.unfinished_transitions(),
        obs_dim,
        act_dim,
    )


def task_record(
    config: GenerateConfig,
    index: int,
    task: Any,
    seed: int,
    trans: dict[str, np.ndarray],
    eps: dict[str, np.ndarray],
    env_steps: int,
    unfinished: int,
    obs_dim: int,
    act_dim: int,
) -> TaskRecord:
    """A finished task's arrays with the attributes every backend writes."""
    algo = config.algorithm
    attrs = {
        "task": _envs.task_to_dict(task),
        "task_index": index,
        "family": config.family,
        "env_id": _envs.env_id(config.family),
        "env_definition_version": _envs.definition_version(),
        "algorithm": algo.kind,
        "hyperparameters": algo.model_dump(mode="json"),
        "k": config.k,
        "seed": config.seed,
        "task_seed": seed,
        "n_envs": config.n_envs,
        "steps": config.steps_per_task,
        "backend": config.backend,
        "device": config.device,
        "library_versions": library_versions(),
        "n_episodes": int(eps["return"].shape[0]),
        "n_transitions_total": env_steps,
        "n_transitions_kept": int(trans["reward"].shape[0]),
        "n_unfinished_transitions": unfinished,
        "obs_dim": obs_dim,
        "act_dim": act_dim,
    }
    return TaskRecord(transitions=trans, episodes=eps, attrs=attrs)


def _atomic_h5(final: Path, fill: Callable[[h5py.File], None]) -> None:
    """Write an HDF5 file under a temporary name, fsync it, then rename it into place."""
    tmp = final.with_name(final.name + ".tmp")
    tmp.unlink(missing_ok=True)
    with h5py.File(tmp, "w") as f:
        fill(f)
        f.flush()
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    _fsync_dir(final.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_task_file(path: Path, config: GenerateConfig, index: int, record: TaskRecord) -> None:
    """Commit one finished task as its own HDF5 file (atomically)."""
    name = task_name(index)

    def fill(f: h5py.File) -> None:
        write_root_attrs(
            f,
            family=config.family,
            env_id=record.attrs["env_id"],
            config_json=json.dumps(config.identity(), sort_keys=True),
        )
        write_task(f.create_group(name), record)
        f.attrs["complete"] = True

    _atomic_h5(path, fill)


# -- worker side -----------------------------------------------------------------------------

_QUEUE: Any = None


def _init_worker(q: Any) -> None:
    global _QUEUE
    _QUEUE = q
    os.environ.setdefault("TQDM_DISABLE", "1")


def _work(job: _Job) -> int:
    """Run one task in a worker process and commit its file; returns the task index."""
    config = GenerateConfig.model_validate_json(job.config_json)
    task = _task_from_dict(job.task)
    pending = [0, time.monotonic()]

    def progress(n: int) -> None:
        pending[0] += n
        now = time.monotonic()
        if _QUEUE is not None and now - pending[1] > 0.5:
            _QUEUE.put(pending[0])
            pending[0], pending[1] = 0, now

    try:
        record = run_task(config, job.index, task, progress)
    except Exception as exc:
        raise TaskFailedError(f"task {task_name(job.index)} ({job.task}) failed: {exc!r}") from exc
    if _QUEUE is not None and pending[0]:
        _QUEUE.put(pending[0])
    write_task_file(Path(job.out), config, job.index, record)
    return job.index


def _task_from_dict(d: dict[str, Any]) -> Any:
    return _envs.task_from_dict(d)


# -- driver side -----------------------------------------------------------------------------


def _check_identity(existing: dict[str, Any], config: GenerateConfig, where: Path) -> None:
    diffs = config_differences(existing, config.identity())
    if diffs:
        raise ConfigMismatchError(
            f"{where} was generated with different settings; refusing to mix them. "
            "Differences: " + "; ".join(diffs) + ". Use another output path, or rerun with the "
            "original settings to resume."
        )


def _finished_file(path: Path, config: GenerateConfig, names: list[str]) -> bool:
    """True when `path` already holds this run's complete output (checked, never overwritten)."""
    if not path.exists():
        return False
    try:
        with h5py.File(path, "r") as f:
            check_root(f, path)
            existing = decode_attrs(f.attrs)["generate_config"]
            _check_identity(existing, config, path)
            if not bool(f.attrs.get("complete", False)):
                raise HistoryFileError(path, "file exists but was never completed")
            missing = [n for n in names if n not in f]
            if missing:
                raise HistoryFileError(path, f"complete file lacks tasks {missing}")
            for n in names:
                check_task(f[n], path, n)
    except OSError as exc:
        raise HistoryFileError(
            path, f"exists but cannot be read as HDF5 ({exc}); move it away to regenerate"
        ) from exc
    return True


def _valid_part(path: Path, name: str) -> bool:
    """A committed task file this run can merge (readable, complete, of the current schema: a part
    left by an older version lacks newer fields, and is redone rather than merged)."""
    try:
        with h5py.File(path, "r") as f:
            check_root(f, path)
            if name not in f:
                return False
            check_task(f[name], path, name)
            if int(f[name].attrs["schema_version"]) != SCHEMA_VERSION:
                return False
            return bool(f.attrs.get("complete", False))
    except (OSError, HistoryFileError):
        return False


def _prepare_parts(parts: Path, config: GenerateConfig) -> None:
    cfg = parts / "config.json"
    if cfg.exists():
        _check_identity(json.loads(cfg.read_text()), config, parts)
        return
    parts.mkdir(parents=True, exist_ok=True)
    tmp = cfg.with_name("config.json.tmp")
    tmp.write_text(json.dumps(config.identity(), sort_keys=True, indent=1))
    os.replace(tmp, cfg)


def _merge(path: Path, parts: Path, config: GenerateConfig, names: list[str]) -> None:
    def fill(f: h5py.File) -> None:
        env_id = None
        for name in names:
            with h5py.File(parts / f"{name}.h5", "r") as src:
                src.copy(src[name], f, name=name)
                env_id = env_id or decode_attrs(src[name].attrs)["env_id"]
        write_root_attrs(
            f,
            family=config.family,
            env_id=str(env_id),
            config_json=json.dumps(config.identity(), sort_keys=True),
        )
        f.flush()
        for name in names:
            check_task(f[name], path, name)
        f.attrs["complete"] = True

    _atomic_h5(path, fill)


class _Progress:
    """Tasks done, env-steps/s and ETA (tqdm; silent when disabled or TQDM_DISABLE=1)."""

    def __init__(self, total_steps: int, n_tasks: int, done: int, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.n_tasks, self.done = n_tasks, done
        self.bar = tqdm(
            total=total_steps,
            unit="step",
            unit_scale=True,
            desc="histories",
            disable=not enabled or bool(os.environ.get("TQDM_DISABLE")),
            smoothing=0.05,
        )
        self._post()

    def _post(self) -> None:
        self.bar.set_postfix_str(f"tasks {self.done}/{self.n_tasks}")

    def steps(self, n: int) -> None:
        self.bar.update(n)

    def task_done(self) -> None:
        self.done += 1
        self._post()

    def close(self) -> None:
        self.bar.close()


def generate(config: GenerateConfig, path: str | os.PathLike[str]) -> Path:
    """Generate (or resume) the history file of `config` at `path`; returns the path.

    A rerun with the same settings skips every finished task (and does nothing at all when the
    file is complete). A rerun with other settings raises ConfigMismatchError saying what differs.
    """
    path = Path(path)
    tasks = _envs.split_tasks(config.family, config.tasks, config.split)
    names = [task_name(i) for i in range(len(tasks))]
    parts = parts_dir(path)
    if _finished_file(path, config, names):
        if (parts / "config.json").exists():
            # A run killed between the final rename and the clean-up: the file holds it all.
            _check_identity(json.loads((parts / "config.json").read_text()), config, parts)
            shutil.rmtree(parts)
        return path
    _prepare_parts(parts, config)
    for stale in parts.glob("task_*.h5.tmp"):
        stale.unlink()  # a run killed mid-write; the task is redone
    todo = [i for i, n in enumerate(names) if not _valid_part(parts / f"{n}.h5", n)]
    for i in todo:
        part = parts / f"{names[i]}.h5"
        if part.exists():
            # Only renamed-into-place files live here, so this one was damaged after its commit.
            warnings.warn(
                f"{part} is unreadable or incomplete (or of an older schema version); task "
                f"{names[i]} will be generated again",
                stacklevel=2,
            )
            part.unlink()
    bar = _Progress(
        total_steps=len(todo) * config.steps_per_task,
        n_tasks=len(tasks),
        done=len(tasks) - len(todo),
        enabled=config.progress,
    )
    try:
        if config.backend == "batched":  # all tasks at once, one process per device
            from icrl.histories._batched_generate import generate_batched

            generate_batched(config, tasks, todo, parts, bar)
        elif config.workers == 0:
            for i in todo:
                try:
                    record = run_task(config, i, tasks[i], bar.steps)
                except Exception as exc:
                    raise TaskFailedError(f"task {names[i]} ({tasks[i]}) failed: {exc!r}") from exc
                write_task_file(parts / f"{names[i]}.h5", config, i, record)
                bar.task_done()
        else:
            _run_pool(config, tasks, todo, parts, names, bar)
    finally:
        bar.close()
    _merge(path, parts, config, names)
    shutil.rmtree(parts)
    return path


def _run_pool(
    config: GenerateConfig,
    tasks: list[Any],
    todo: list[int],
    parts: Path,
    names: list[str],
    bar: _Progress,
) -> None:
    import multiprocessing as mp

    if not todo:
        return
    ctx = mp.get_context("spawn")
    cfg = config.model_dump_json()
    jobs = [_Job(cfg, i, _envs.task_to_dict(tasks[i]), str(parts / f"{names[i]}.h5")) for i in todo]
    with (
        ctx.Manager() as manager,
        ProcessPoolExecutor(
            max_workers=min(config.workers, len(jobs)),
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(q := manager.Queue(),),
        ) as pool,
    ):
        pending: set[Future[int]] = {pool.submit(_work, j) for j in jobs}
        while pending:
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            _drain(q, bar)
            for fut in finished:
                fut.result()  # re-raise a worker's error
                bar.task_done()
        _drain(q, bar)


def _drain(q: Any, bar: _Progress) -> None:
    with contextlib.suppress(queue.Empty):
        while True:
            bar.steps(q.get_nowait())
