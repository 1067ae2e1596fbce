"""Small helpers shared by the baselines: the run-directory lock's refusal, checked checkpoint
reads, seeds run side by side. The lock itself, atomic writes, seeds, devices and --config/--set
parsing are icrl.histories.runtime's."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from icrl.histories.runtime import LOCK_NAME, DirLock


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


def _in_child(job: tuple[Callable[..., Any], tuple[Any, ...], int]) -> None:
    fn, args, threads = job
    # The parent's intra-op thread count: another count changes the CPU float reductions, and
    # so the run (measured: a 3000-step MQL seed with 1 thread against 2).
    torch.set_num_threads(threads)
    fn(*args)


def run_seed_jobs(
    fn: Callable[..., Any], jobs: Sequence[tuple[Any, ...]], processes: int = 1
) -> None:
    """Call ``fn(*args)`` for every ``args`` in `jobs`: in this process one after the other, or
    with ``processes > 1`` in that many spawned processes at once (one seed each).

    One baseline seed leaves a GPU mostly idle (MQL: ~800 small updates/s, bound by kernel
    launches), so seeds side by side finish in about the time of one. Each job writes only its
    own run directory and is resumable, so an interrupted parallel run resumes like a serial
    one; each process uses this one's torch thread count, so a seed's run is the serial one's
    (on the CPU; CUDA kernels are not bitwise deterministic either way). `fn` must be
    importable (a module-level function) for the spawned processes.
    """
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    if processes == 1 or len(jobs) <= 1:
        for args in jobs:
            fn(*args)
        return
    # spawn, not fork: a forked child would inherit a CUDA context it cannot use.
    with mp.get_context("spawn").Pool(min(processes, len(jobs))) as pool:
        threads = torch.get_num_threads()
        pool.map(_in_child, [(fn, tuple(args), threads) for args in jobs], chunksize=1)
