"""An exclusive lock on a run or output directory: a second process writing it is refused.

The lock is `fcntl.flock` on `DIR/.lock`. The kernel releases it when its holder exits or is
killed (even with SIGKILL), so a crashed run never leaves a stale lock behind; the file itself
stays (removing it would let two processes lock two different files of the same name). While
held, it holds the holder's pid, for the refusal message; it is emptied on release.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

__all__ = ["LOCK_NAME", "DirLock", "DirectoryInUseError"]

LOCK_NAME = ".lock"


class DirectoryInUseError(ValueError):
    """Another process holds the directory's lock (it is training or evaluating into it)."""


class DirLock:
    """`with DirLock(path, "training"):` holds `path/.lock` exclusively (creating `path`).

    Not re-entrant: a second DirLock on the same directory is refused even in the same process,
    as two writers there would be.
    """

    def __init__(self, directory: Path, purpose: str = "writing") -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self.purpose = purpose
        self._fd: int | None = None

    def acquire(self) -> DirLock:
        """Take the lock or raise DirectoryInUseError naming the holder's pid."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DirectoryInUseError(
                f"{self.directory} is in use by another process (pid {holder} holds "
                f"{self.path}); wait for it to finish, or use another directory"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        # The holder's pid, for the refusal message of the next process (advisory only).
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Release the lock (closing the descriptor drops it); idempotent.

        The pid is cleared first, so that a run that finishes leaves the lock file as it found
        it (a killed holder leaves its pid, which the next holder overwrites).
        """
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DirLock:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
