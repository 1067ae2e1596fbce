"""Generating a history file: the backends' runs, atomic per-task commits, resume, merge.

A backend (`BACKENDS`: the Tianshou one here, the batched one in `icrl.histories.batched`; the
seam is `_backend.Backend`) trains the tasks and hands back each finished task's record; this
module alone writes files.

On disk, while a run is going on, `out.h5` has a sibling directory `out.h5.parts/` holding
`config.json` (the run's identity), `lock` (flock'ed by the one process generating `out.h5`) and
one finished `task_NNN.h5` per task. Each task file is built in memory, written as
`task_NNN.h5.tmp`, fsynced and renamed, so a killed run leaves either a whole task file or a
`.tmp` that the next run deletes and redoes. When every task is there, they are
copied into `out.h5.tmp`, which is validated, fsynced and renamed to `out.h5`; only then is the
parts directory removed. A kill -9 at any point therefore never corrupts a finished task.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from icrl.histories import _envs, runtime
from icrl.histories._backend import Backend, Job, ProgressFn, QueueProgress, in_helper_processes
from icrl.histories._config import GenerateConfig, config_differences
from icrl.histories._learners import TaskSpec, TianshouLearner
from icrl.histories._recorder import HistoryRecorder
from icrl.histories._records import task_record, task_seed
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
from icrl.histories.runtime import DeviceError, atomic_write


class ConfigMismatchError(ValueError):
    """A rerun into an existing output asked for different settings."""


class TaskFailedError(RuntimeError):
    """The source run of one task raised; finished tasks stay committed for the next run."""


class OutputPathError(ValueError):
    """The output path cannot hold a history file (it is a directory, or lies under a file)."""


class RunLockedError(RuntimeError):
    """Another process is generating into the same output (it holds `OUT.parts/lock`)."""


class OutputWriteError(OSError):
    """Writing the output failed (full disk, read-only directory, ...); `filename` names the file.

    Built like OSError, (errno, strerror, filename), so that it pickles from a worker process.
    """


LOCK_NAME = "lock"
"""The lock file inside `OUT.parts`: held (fcntl.flock) by the one process generating OUT."""


def parts_dir(path: Path) -> Path:
    """The directory of finished per-task files of an unfinished run."""
    return path.with_name(path.name + ".parts")


# -- the backends ------------------------------------------------------------------------------


def run_task(
    config: GenerateConfig,
    index: int,
    task: Any,
    progress: Callable[[int], None] | None = None,
    record: bool = True,
) -> TaskRecord:
    """Run the source algorithm on one task, in this process, and return what it recorded."""
    return BACKENDS[config.backend]().run_task(config, Job(index, task), progress, record)


class TianshouBackend(Backend):
    """Each task on its own with `TianshouLearner` and one torch thread: one after the other in
    this process (`workers=0`), or `workers` at a time in helper processes.

    Every task runs by `run_task`, looked up at call time (tests replace the source run there).
    """

    name = "tianshou"

    def run(
        self, config: GenerateConfig, jobs: Sequence[Job], progress: ProgressFn
    ) -> Iterator[TaskRecord]:
        if config.workers == 0:
            for job in jobs:
                try:
                    record = run_task(config, job.index, job.task, progress)
                except Exception as exc:
                    raise TaskFailedError(
                        f"task {task_name(job.index)} ({job.task}) failed: {exc!r}"
                    ) from exc
                yield record
            return
        cfg = config.model_dump_json()
        calls = [(cfg, job.index, _envs.task_to_dict(job.task)) for job in jobs]
        yield from in_helper_processes(_work, calls, min(config.workers, len(jobs)), progress)

    def run_task(
        self,
        config: GenerateConfig,
        job: Job,
        progress: ProgressFn | None = None,
        record: bool = True,
    ) -> TaskRecord:
        import torch

        spec = TaskSpec(
            family=config.family,
            task=job.task,
            task_index=job.index,
            task_seed=task_seed(config.seed, job.index),
            steps=config.steps_per_task,
            n_envs=config.n_envs,
            algorithm=config.algorithm,
            device=config.device,
        )
        probe = _envs.make_env(config.family, job.task)
        obs_dim = int(np.prod(probe.observation_space.shape))
        act_dim = int(np.prod(probe.action_space.shape))
        probe.close()
        recorder = HistoryRecorder(config.n_envs, config.k, obs_dim, act_dim)
        threads = torch.get_num_threads()
        # One thread per task keeps runs bit-reproducible and lets tasks run side by side.
        torch.set_num_threads(1)
        try:
            TianshouLearner().run(spec, recorder if record else None, progress)
        finally:
            torch.set_num_threads(threads)
        trans, eps = recorder.result()
        return task_record(
            config,
            job.index,
            job.task,
            spec.task_seed,
            trans,
            eps,
            recorder.env_steps,
            recorder.unfinished_transitions(),
            obs_dim,
            act_dim,
        )


def _work(config_json: str, index: int, task: dict[str, Any], q: Any) -> TaskRecord:
    """One task in a helper process of the Tianshou backend; its record goes back to the driver."""
    config = GenerateConfig.model_validate_json(config_json)
    progress = QueueProgress(q)
    try:
        record = run_task(config, index, _envs.task_from_dict(task), progress)
    except Exception as exc:
        raise TaskFailedError(f"task {task_name(index)} ({task}) failed: {exc!r}") from exc
    progress.flush()
    return record


def _batched() -> Backend:
    from icrl.histories.batched import BatchedBackend  # loads Tianshou's layers: only when used

    return BatchedBackend()


BACKENDS: dict[str, Callable[[], Backend]] = {"tianshou": TianshouBackend, "batched": _batched}
"""Every backend, by its `GenerateConfig.backend` name."""


# -- files -------------------------------------------------------------------------------------


def _atomic_h5(final: Path, fill: Callable[[h5py.File], None]) -> None:
    """Write an HDF5 file under a temporary name (`NAME.tmp`, which a later run cleans up),
    fsync it, then rename it into place (runtime.atomic_write)."""
    tmp = final.with_name(final.name + ".tmp")
    image = _h5_image(fill)

    def write(p: Path) -> None:
        with open(p, "wb") as fh:
            fh.write(image)

    with _writing(tmp):
        atomic_write(final, write, tmp=tmp)


def _h5_image(fill: Callable[[h5py.File], None]) -> bytes:
    """The bytes of the HDF5 file that `fill` writes, built in memory.

    The file is then written with one plain write, so a full disk fails as one OSError from
    that write. When HDF5 itself hits a failing write mid-file, every object still open fails
    again as it is freed (an "Exception ignored ... Traceback" report each) and the process
    can crash (seen: SIGSEGV). Memory: one task's data for a part, all tasks' for the merge
    (compressed; at the paper's scale hundreds of MB).
    """
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        fill(f)
        f.flush()
    return buffer.getvalue()


@contextlib.contextmanager
def _writing(target: Path) -> Iterator[None]:
    """Report an OS error inside as an OutputWriteError naming `target` (h5py's name none)."""
    try:
        yield
    except OutputWriteError:
        raise
    except OSError as exc:
        if exc.errno is None:
            raise
        raise OutputWriteError(exc.errno, os.strerror(exc.errno), str(target)) from exc


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


# -- driver side -----------------------------------------------------------------------------


def _check_identity(
    existing: dict[str, Any], config: GenerateConfig, where: Path, advice: str
) -> None:
    diffs = config_differences(existing, config.identity())
    if diffs:
        raise ConfigMismatchError(
            f"{where} was generated with different settings; refusing to mix them. "
            "Differences: " + "; ".join(diffs) + f". {advice}"
        )


def resume_command(path: Path) -> str:
    """The command line that resumes the unfinished run at `path` with its own settings."""
    return (
        f"python -m icrl.histories generate --config {parts_dir(path) / 'config.json'} --out {path}"
    )


def _finished_file(path: Path, config: GenerateConfig, names: list[str]) -> bool:
    """True when `path` already holds this run's complete output (checked, never overwritten)."""
    if not path.exists():
        return False
    try:
        with h5py.File(path, "r") as f:
            check_root(f, path)
            try:
                existing = decode_attrs(f.attrs)["generate_config"]
            except (KeyError, ValueError) as exc:
                raise HistoryFileError(
                    path, f"malformed root attribute 'generate_config' ({exc!r})"
                ) from exc
            advice = f"Use another output path, or move {path} away to generate it again."
            _check_identity(existing, config, path, advice)
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


def finished_parts(parts: Path) -> list[str]:
    """Names of the tasks committed in an unfinished run's parts directory (readable ones)."""
    if not parts.is_dir():
        return []
    return sorted(p.stem for p in parts.glob("task_*.h5") if _valid_part(p, p.stem))


def _parts_config(cfg: Path) -> dict[str, Any] | None:
    """The settings recorded in `OUT.parts/config.json`; None when it is unreadable."""
    try:
        data = json.loads(cfg.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _summary(diffs: list[str], most: int = 3) -> str:
    """The first few differences, each cut short: enough to recognise the earlier run."""
    shown = [d if len(d) <= 80 else d[:77] + "..." for d in diffs[:most]]
    more = f"; and {len(diffs) - most} more" if len(diffs) > most else ""
    return "; ".join(shown) + more


def _prepare_parts(parts: Path, config: GenerateConfig, path: Path) -> None:
    """Record the run's settings in `parts/config.json`, or check them against a resumed run's.

    Settings that differ are refused only when the parts hold a finished task: with none, there
    is nothing to mix (an earlier run failed or was killed before finishing any task, e.g. on a
    bad device), and a corrected rerun must not be blocked by it.
    """
    cfg = parts / "config.json"
    if cfg.exists():
        existing = _parts_config(cfg)
        diffs = config_differences(existing or {}, config.identity())
        if not diffs:
            return
        done = finished_parts(parts)
        if done:
            if existing is None:
                raise ConfigMismatchError(
                    f"{cfg} is unreadable, but {parts} holds {len(done)} finished task(s) of "
                    f"that run; remove {parts} to start over (discarding them)"
                )
            n = len(done)
            _check_identity(
                existing,
                config,
                parts,
                f"It holds {n} finished task{'s' if n != 1 else ''} of that run: resume it with "
                f"its own settings (`{resume_command(path)}`), use another output path, or "
                f"remove {parts} to start over with the new settings (discarding them).",
            )
        warnings.warn(
            f"{parts} holds no finished task of an earlier run with other settings "
            f"({_summary(diffs) if existing is not None else 'unreadable config.json'}); "
            "starting over with the new settings",
            stacklevel=3,
        )
    with _writing(cfg):
        text = json.dumps(config.identity(), sort_keys=True, indent=1)
        atomic_write(cfg, text, tmp=cfg.with_name("config.json.tmp"))


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

        self.n_tasks, self.done, self._started = n_tasks, done, False
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
        if not self._started:
            # Start the rate (and so the ETA) at the first env step, not at the bar's creation:
            # the workers' start-up (imports, env and learner builds) took many seconds without a
            # step, which made the first ETAs read hours.
            self._started = True
            self.bar.reset(total=self.bar.total)
            self._post()
        self.bar.update(n)

    def task_done(self) -> None:
        self.done += 1
        self._post()

    def close(self) -> None:
        self.bar.close()


def generate(config: GenerateConfig, path: str | os.PathLike[str]) -> Path:
    """Generate (or resume) the history file of `config` at `path`; returns the path.

    A rerun with the same settings skips every finished task (and does nothing at all when the
    file is complete). A rerun with other settings raises ConfigMismatchError saying what differs
    (unless the earlier run finished no task). Everything that can be checked up front (the
    output path, the device) is checked before anything is written; a second process generating
    into the same `path` meanwhile is refused (RunLockedError).
    """
    path = Path(path)
    check_output_path(path)
    tasks = _envs.split_tasks(config.family, config.tasks, config.split)
    names = [task_name(i) for i in range(len(tasks))]
    parts = parts_dir(path)
    if _finished_file(path, config, names):
        _remove_leftover_parts(parts)
        return path
    check_device(config.device, config.backend)
    check_writable(path)
    lock = _lock_parts(parts)
    try:
        if _finished_file(path, config, names):  # a run that held the lock finished it
            shutil.rmtree(parts)
            return path
        _prepare_parts(parts, config, path)
        _run_todo(config, tasks, names, parts)
        _merge(path, parts, config, names)
        shutil.rmtree(parts)
    except BaseException:
        if lock.created and not finished_parts(parts):
            # Nothing of this run is worth keeping: leave the disk as it was.
            shutil.rmtree(parts, ignore_errors=True)
        raise
    finally:
        lock.release()
    return path


def _run_todo(config: GenerateConfig, tasks: list[Any], names: list[str], parts: Path) -> None:
    """Run and commit every task without a valid part in `parts` (the rest are resumed)."""
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
                stacklevel=3,
            )
            part.unlink()
    bar = _Progress(
        total_steps=len(todo) * config.steps_per_task,
        n_tasks=len(tasks),
        done=len(tasks) - len(todo),
        enabled=config.progress,
    )
    try:
        if todo:
            jobs = [Job(i, tasks[i]) for i in todo]
            run = BACKENDS[config.backend]().run(config, jobs, bar.steps)
            with contextlib.closing(run) as records:  # closing stops a backend's helpers
                for record in records:
                    i = int(record.attrs["task_index"])
                    write_task_file(parts / f"{names[i]}.h5", config, i, record)
                    bar.task_done()
    finally:
        bar.close()


def _remove_leftover_parts(parts: Path) -> None:
    """Remove the parts of a run killed between its final rename and its clean-up (the file
    holds it all); left alone while another process holds their lock."""
    if not parts.is_dir():
        return
    try:
        lock = _lock_parts(parts)
    except RunLockedError:
        return
    try:
        shutil.rmtree(parts)
    finally:
        lock.release()


# -- checks before anything is written -------------------------------------------------------


def check_output_path(path: Path) -> None:
    """Refuse an output path that cannot be a file: a directory, or one under a file."""
    if path.is_dir():
        raise OutputPathError(
            f"output path (--out) {path} is a directory; give the history file's path, e.g. "
            f"{path / 'histories.h5'}"
        )
    parts = parts_dir(path)
    if parts.exists() and not parts.is_dir():
        raise OutputPathError(
            f"{parts} is a file, but generate keeps its unfinished tasks in a directory of that "
            "name; move the file away or choose another --out"
        )
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputPathError(
                    f"{parent} is a file, not a directory, so --out {path} cannot be created "
                    "under it; choose an --out inside a directory"
                )
            return


def check_writable(path: Path) -> None:
    """Refuse an output whose directories cannot be written (checked before any work is done):
    the parts directory (task files) and the output's own directory (the merged file)."""
    parts = parts_dir(path)
    places = [parts] if parts.is_dir() else []
    places.append(next(p for p in path.parents if p.exists()))
    for where in places:
        if os.access(where, os.W_OK | os.X_OK):
            continue
        readonly = bool(os.statvfs(where).f_flag & os.ST_RDONLY)
        code = errno.EROFS if readonly else errno.EACCES
        # Name what would fail first: the parts directory, unless it exists (then the merge).
        target = path if where != parts and parts.is_dir() else parts
        raise OutputWriteError(code, os.strerror(code), str(target))


def check_device(device: str, backend: str) -> None:
    """Refuse a torch device that does not exist here (before a task fails on it, or a file is
    written): a CUDA device without CUDA, an index past the visible GPUs, a typo."""
    names = [d.strip() for d in device.split(",")]
    if len(names) > 1 and backend != "batched":
        raise DeviceError(
            f"device {device!r} (--device) lists several devices; only --backend batched splits "
            "tasks over devices (the tianshou backend uses one)"
        )
    for name in names:
        runtime.check_device(name, label=f"device {name!r} (--device)", cpu="--device cpu")


def _lock_parts(parts: Path) -> runtime.DirLock:
    """Create `parts` if needed and take its lock (`.created` says whether parts was created).

    The shared run-directory lock on `parts/lock`, never waited for: a second generate into the
    same output is refused at once (RunLockedError). The kernel drops the lock when its holder
    exits or is killed, so a lock left by a killed run never blocks the resume. A holder that
    finishes removes `parts` (and the lock file, still held: `remove=True`); the lock notices
    that and takes a fresh lock on a new directory. Releasing it leaves an interrupted run's
    parts, and a refused run's disk, as they were.
    """
    lock_file = parts / LOCK_NAME

    def refuse(holder: str) -> RunLockedError:
        return RunLockedError(
            f"another process (pid {holder}) is generating into {parts.parent / parts.stem} "
            f"(it holds {lock_file}); wait for it to finish or stop it, then rerun this command "
            "(it resumes from the finished tasks)"
        )

    lock = runtime.DirLock(parts, "generating", name=LOCK_NAME, remove=True, refuse=refuse)
    with _writing(parts):
        return lock.acquire()
