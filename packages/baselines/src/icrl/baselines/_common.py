"""Small helpers shared by the baselines: the run-directory lock's refusal, checked checkpoint
reads. The lock itself, atomic writes, seeds, devices and --config/--set parsing are
icrl.histories.runtime's."""

from __future__ import annotations

import contextlib
import zipfile
from collections.abc import Iterator
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
