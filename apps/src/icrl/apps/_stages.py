"""Stage cache: each pipeline stage runs in a directory named by a hash of its resolved config.

A stage's directory is ``<run>/stages/<name>-<key>/`` where ``key`` hashes the stage's resolved
config together with the keys of the stages it consumes. The stage function writes into that
directory and may resume from whatever an interrupted earlier attempt left there (the package
jobs are resumable themselves). The stage counts as finished only once ``stage.json`` exists;
it is written last, atomically, so a killed run is never read as complete. A changed config gives a
new key, so only the stages that depend on the change run again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RECORD = "stage.json"


@dataclass(frozen=True)
class StageResult:
    """Where a stage's outputs are and whether they came from the cache."""

    name: str
    key: str
    path: Path
    cached: bool
    wall_s: float


def stage_key(name: str, config: Any, deps: Sequence[StageResult] = ()) -> str:
    """A short stable hash of a stage's name, resolved config and upstream stage keys."""
    payload = {"name": name, "config": config, "deps": sorted(d.key for d in deps)}
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def write_json_atomic(path: Path, data: Any) -> None:
    """Write `data` as JSON, atomically (icrl.histories.runtime.atomic_write)."""
    from icrl.histories.runtime import atomic_write  # icrl.histories loads torch: not for --help

    atomic_write(path, json.dumps(data, indent=2, sort_keys=True, default=str))


def machine_load() -> dict[str, Any]:
    """The machine's CPU count (and the cores usable here) and its 1-, 5- and 15-minute load
    averages now, at a stage's end: whether the stages running side by side oversubscribed the
    cores (a load well above the count), the suspected reason for AD evaluations 3-6x slower
    beside the baselines."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # no load average on this platform
        load = None
    # the cores this process may use: fewer than cpu_count in a CPU-limited container
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"cpus": os.cpu_count(), "usable_cpus": usable, "load_avg_1_5_15min": load}


class StageCache:
    """Runs stages at most once per resolved config under one run directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, name: str, key: str) -> Path:
        """The directory of one stage instance."""
        return self.root / "stages" / f"{name}-{key}"

    def run(
        self,
        name: str,
        config: Any,
        fn: Callable[[Path], Any],
        deps: Sequence[StageResult] = (),
    ) -> StageResult:
        """Run ``fn(stage_dir)`` unless this exact stage already finished; return where it lives.

        ``config`` must be JSON-serialisable (a resolved config dump). ``fn`` may return a
        JSON-serialisable summary, kept in ``stage.json``.
        """
        key = stage_key(name, config, deps)
        path = self.path(name, key)
        record = path / RECORD
        if record.exists():
            wall = json.loads(record.read_text()).get("wall_s", 0.0)
            return StageResult(name, key, path, cached=True, wall_s=wall)
        path.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        summary = fn(path)
        wall = time.perf_counter() - start
        data = {
            "name": name,
            "key": key,
            "config": config,
            "deps": {d.name: d.key for d in deps},
            "wall_s": wall,
            "machine_load": machine_load(),
            "summary": summary,
        }
        write_json_atomic(record, data)
        return StageResult(name, key, path, cached=False, wall_s=wall)

    def summary(self, result: StageResult) -> Any:
        """The summary a finished stage's function returned."""
        return json.loads((result.path / RECORD).read_text()).get("summary")


class RunLockedError(RuntimeError):
    """Another process holds the run directory."""


class RunLock:
    """An exclusive lock on a run directory, held while a run writes into it: the shared
    ``icrl.histories.runtime.DirLock`` on ``<run>/.lock`` (an advisory flock the kernel drops
    when the holder exits or is killed), refused with reproduce's own message."""

    def __init__(self, root: Path) -> None:
        # here, not at import: `reproduce.py --help` needs no torch
        from icrl.histories.runtime import DirLock

        def refuse(holder: str) -> RunLockedError:
            return RunLockedError(
                f"{Path(root)} is in use by another reproduce.py (pid {holder}); wait for it "
                "to finish, or give another --out"
            )

        self._lock = DirLock(Path(root), "reproduce", refuse=refuse)

    def __enter__(self) -> RunLock:
        self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
