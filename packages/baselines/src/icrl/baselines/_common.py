"""Small helpers shared by the baselines: run-directory locks, checked checkpoint reads. Atomic
writes, seeds, devices and --config/--set parsing are icrl.histories.runtime's."""

from __future__ import annotations

import contextlib
import fcntl
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

LOCK_NAME = ".lock"


class RunDirInUseError(ValueError):
    """Another process holds the run directory's lock (it is training into it)."""


@contextlib.contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[Path]:
    """Hold `run_dir/.lock` exclusively (fcntl.flock) while training into `run_dir`.

    A second process training into the same directory is refused with RunDirInUseError naming
    the holder's pid. The kernel drops the lock when the holder exits or is killed, so a crash
    leaves no stale lock; the file stays (deleting it would let two processes lock two files).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise RunDirInUseError(
                f"{run_dir} is in use by another process (pid {holder} holds {path}); wait for "
                "it to finish, or use another run directory"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)  # for the next process's message
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)  # a finished run leaves the lock file as it found it
    finally:
        os.close(fd)  # releases the lock


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
