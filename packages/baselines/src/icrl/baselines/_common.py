"""Small helpers shared by the baselines: the run-directory lock's refusal, checked checkpoint
reads, seeds run side by side. The lock itself, atomic writes, seeds, devices and --config/--set
parsing are icrl.histories.runtime's."""

from __future__ import annotations

import contextlib
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import wait
from pathlib import Path
from typing import Any

import torch

from icrl.histories.runtime import LOCK_NAME, DirLock, spawned_pool


class RunDirInUseError(ValueError):
    """Another process holds the run directory's lock (it is training into it)."""


@contextlib.contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[Path]:
    """Hold `run_dir/.lock` exclusively while training into `run_dir`; yields the lock's path.

    icrl.histories.runtime's DirLock (fcntl.flock; the kernel drops it when the holder exits or
    is killed, so a crash leaves no stale lock), refused with RunDirInUseError naming the
    holder's pid.
    """
    run_dir = Path(run_dir)
    path = run_dir / LOCK_NAME

    def refuse(holder: str) -> RunDirInUseError:
        return RunDirInUseError(
            f"{run_dir} is in use by another process (pid {holder} holds {path}); wait for "
            "it to finish, or use another run directory"
        )

    with DirLock(run_dir, "training", refuse=refuse) as lock:
        yield lock.path


def load_torch(path: Path, map_location: Any = "cpu") -> Any:
    """`torch.load(path)`, raising ValueError that says plainly when the file is cut short.

    torch writes a zip archive whose directory is at its end: a truncated file (a copy or a full
    disk) has no end record, and torch's own error is then "[Errno 22] Invalid argument" or an
    internal zip message.
    """
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # torch raises several unrelated types for a bad file
        size = path.stat().st_size
        if not zipfile.is_zipfile(path):
            what = f"it is truncated or not a torch file ({size} bytes, no complete zip archive)"
        else:
            what = f"it is corrupt ({size} bytes; torch says: {err})"
        raise ValueError(
            f"checkpoint {path} cannot be read: {what}; restore it, or remove it to train the "
            "run again from the start"
        ) from err


def run_seed_jobs(
    fn: Callable[..., Any],
    jobs: Sequence[tuple[Any, ...]],
    processes: int = 1,
    *,
    progress: bool = True,
) -> list[Any]:
    """Call ``fn(*args, progress=...)`` for every ``args`` in `jobs` and return the results in
    job order: with ``processes == 1`` in this process one after the other, otherwise in up to
    that many spawned processes at once, even for one job (one seed each; `progress` is then
    False, since side-by-side bars would interleave; results must pickle).

    One baseline seed leaves a GPU mostly idle (MQL: ~800 small updates/s, bound by kernel
    launches), so seeds side by side finish in about the time of one. Each job writes only its
    own run directory and is resumable, so an interrupted parallel run resumes like a serial
    one. The processes share this one's torch threads (at least one each): with one thread here
    (the tests; icrl.apps on a CPU) a seed's run is the serial one's bit for bit, since another
    thread count changes the CPU float reductions (measured: a 3000-step MQL seed diverged with 1
    thread against 2). The first failing job's error is raised once the others have ended (they
    keep their progress); a process that dies outright raises ``BrokenProcessPool`` instead of
    leaving the run waiting. `fn` must be importable (a module-level function).
    """
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    if processes == 1 or not jobs:
        return [fn(*args, progress=progress) for args in jobs]
    # (one job with processes > 1 is spawned too: its torch seeding then stays out of this
    # process, where another stage may be running at the same time: icrl.apps on a GPU)
    with spawned_pool(min(processes, len(jobs))) as pool:
        futures = [pool.submit(fn, *args, progress=False) for args in jobs]
        wait(futures)
    return [f.result() for f in futures]  # raises the first failure, in job order
