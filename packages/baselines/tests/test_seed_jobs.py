"""run_seed_jobs: seeds side by side in spawned processes, and how their failures surface."""

from __future__ import annotations

import os
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from icrl.baselines._common import run_seed_jobs

# The fake seeds are source text run by the builtin `exec`: a spawned process unpickles its job
# by import, and pytest's importlib mode gives this module a name no child can import.
FAIL = "raise ValueError('seed at a failed')"
DIE = "import os; os._exit(3)"  # a process killed outright (OOM killer, segfault)


def _ok(path: Path) -> str:
    return f"import os, pathlib; pathlib.Path({str(path)!r}).write_text(str(os.getpid()))"


def test_jobs_run_in_other_processes_and_an_error_comes_back_after_the_rest(
    tmp_path: Path,
) -> None:
    jobs = [(FAIL,), (_ok(tmp_path / "b"),), (_ok(tmp_path / "c"),)]
    with pytest.raises(ValueError, match="seed at a failed"):
        run_seed_jobs(exec, jobs, processes=2)
    # the other seeds ran to their end, in processes other than this one
    pids = {int((tmp_path / n).read_text()) for n in "bc"}
    assert os.getpid() not in pids


def test_a_process_that_dies_raises_instead_of_waiting_forever(tmp_path: Path) -> None:
    with pytest.raises(BrokenProcessPool):
        run_seed_jobs(exec, [(DIE,), (_ok(tmp_path / "b"),)], processes=2)


def test_one_process_runs_here(tmp_path: Path) -> None:
    run_seed_jobs(exec, [(_ok(tmp_path / "a"),)], processes=1)
    assert int((tmp_path / "a").read_text()) == os.getpid()
    with pytest.raises(ValueError, match="processes must be at least 1"):
        run_seed_jobs(exec, [], processes=0)
