"""The backend seam of `generate`, and the helper-process plumbing that the backends share.

A backend (`GenerateConfig.backend`, registered in `_generate.BACKENDS`) runs the source algorithm
on a set of tasks and hands back each task's `TaskRecord` as soon as it is finished; `generate`
commits the records, resumes and merges, whatever the backend. How a backend spreads its tasks
(one at a time in this process, one per helper process, all together on each device) is its own
business; helper processes hand their records back and never write files.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, ClassVar

from icrl.histories._config import GenerateConfig
from icrl.histories._schema import TaskRecord

ProgressFn = Callable[[int], None]
"""Called with the number of env steps taken since the previous call."""


@dataclass(frozen=True)
class Job:
    """One task to run: its index in the run's task list (which decides its seed) and the task."""

    index: int
    task: Any


class Backend(ABC):
    """Runs the source algorithm of a `GenerateConfig` on tasks and returns what each recorded.

    Every record is built by `_records.task_record` (so files differ only in their `backend`
    attribute), and a task's record depends on the config and the task's index only: never on
    the number of helper processes, and never on which tasks ran before it. `name` is the value of
    `GenerateConfig.backend` that selects the backend.
    """

    name: ClassVar[str]

    @abstractmethod
    def run(
        self, config: GenerateConfig, jobs: Sequence[Job], progress: ProgressFn
    ) -> Iterator[TaskRecord]:
        """Train every job's task from scratch; yield its record as soon as it is finished.

        `jobs` is not empty; records may come in any order (`attrs["task_index"]` says whose).
        `progress` is called in this process. Helper processes, if any, are stopped at once when
        the iterator raises or is closed before its end (the caller's error or Ctrl-C).
        """

    @abstractmethod
    def run_task(
        self,
        config: GenerateConfig,
        job: Job,
        progress: ProgressFn | None = None,
        record: bool = True,
    ) -> TaskRecord:
        """Train one task in this process (`icrl.histories.run_task`); `record=False` may skip
        the recording (benchmarks), where the backend can run without it."""


# -- helper processes -------------------------------------------------------------------------


def init_helper_process() -> None:
    """Set up a helper process so that the driver can stop it cleanly (on Ctrl-C or an error).

    Ctrl-C is left to the driver, which stops the helpers itself (a terminal's Ctrl-C reaches
    every process of the group, and each would print a traceback); tqdm bars are off unless
    asked for, and tqdm (which the learners use) gets a thread lock instead of its default
    multiprocessing one, whose semaphore a stopped helper could not unregister (Python then
    warns of a "leaked semaphore" at exit).
    """
    import threading

    from tqdm import tqdm

    os.environ.setdefault("TQDM_DISABLE", "1")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tqdm.set_lock(threading.RLock())


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def sigint_free_manager(ctx: Any) -> Any:
    """A started multiprocessing manager that ignores Ctrl-C (the driver shuts it down)."""
    from multiprocessing.managers import SyncManager

    manager = SyncManager(ctx=ctx)
    manager.start(_ignore_sigint)
    return manager


def stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel the queued jobs and stop the running ones now (on an error or Ctrl-C).

    A task commits only when whole, so a stopped one loses nothing committed; waiting for the
    running tasks instead (what leaving the `with` block does) could take hours, and a helper
    would start the next queued job meanwhile. Helpers ignore SIGINT, hence the SIGTERM.
    """
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.join(timeout=10)


class QueueProgress:
    """A helper process's `progress`: env steps sent to the driver's queue at most every 0.5 s."""

    def __init__(self, q: Any, every: float = 0.5) -> None:
        self.q, self.every = q, every
        self.pending, self.sent = 0, time.monotonic()

    def __call__(self, n: int) -> None:
        self.pending += n
        now = time.monotonic()
        if now - self.sent > self.every:
            self.q.put(self.pending)
            self.pending, self.sent = 0, now

    def flush(self) -> None:
        """Send what is left (call it when the helper's work is done)."""
        if self.pending:
            self.q.put(self.pending)
            self.pending = 0


def _drain(q: Any, progress: ProgressFn) -> None:
    with contextlib.suppress(queue.Empty):
        while True:
            progress(q.get_nowait())


def in_helper_processes(
    fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]], processes: int, progress: ProgressFn
) -> Iterator[Any]:
    """`fn(*args, q)` for each `args` of `calls`, in `processes` spawned helper processes; yields
    each result as it comes. `fn` (a module-level function) reports env steps through
    `QueueProgress(q)`, passed on to `progress` here. An error (re-raised here), Ctrl-C or
    closing the iterator early stops every helper at once.
    """
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    with (
        sigint_free_manager(ctx) as manager,
        ProcessPoolExecutor(
            max_workers=processes, mp_context=ctx, initializer=init_helper_process
        ) as pool,
    ):
        q = manager.Queue()
        try:
            pending = {pool.submit(fn, *args, q) for args in calls}
            while pending:
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                _drain(q, progress)
                for fut in finished:
                    yield fut.result()  # re-raises a helper's error
            _drain(q, progress)
        except BaseException:
            stop_workers(pool)
            raise
