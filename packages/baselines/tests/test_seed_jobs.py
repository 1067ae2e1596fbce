"""run_seed_jobs: seeds side by side in spawned processes, and how their failures surface."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pytest

from icrl.baselines._common import run_seed_jobs

# The fake seed lives in a module written to a folder on sys.path (which spawned processes
# inherit): a function of this test module would not do, since pytest's importlib mode gives
# the module a name no child can import.
FAKE_SEED = """
import os


def job(kind, path, *, progress):
    if kind == "fail":
        raise ValueError(f"seed at {path.name} failed")
    if kind == "die":
        os._exit(3)  # a process killed outright (OOM killer, segfault)
    path.write_text(f"{os.getpid()} {progress}")
    return path.name
"""


@pytest.fixture
def job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    (tmp_path / "icrl_fake_seed.py").write_text(FAKE_SEED)
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module("icrl_fake_seed").job


def test_jobs_run_in_other_processes_and_an_error_comes_back_after_the_rest(
    job: Callable[..., Any], tmp_path: Path
) -> None:
    jobs = [("fail", tmp_path / "a"), ("ok", tmp_path / "b"), ("ok", tmp_path / "c")]
    with pytest.raises(ValueError, match="seed at a failed"):
        run_seed_jobs(job, jobs, processes=2)
    # the other seeds ran to their end, in processes other than this one, without bars
    for name in "bc":
        pid, progress = (tmp_path / name).read_text().split()
        assert (int(pid) != os.getpid(), progress) == (True, "False")


def test_a_process_that_dies_raises_instead_of_waiting_forever(
    job: Callable[..., Any], tmp_path: Path
) -> None:
    with pytest.raises(BrokenProcessPool):
        run_seed_jobs(job, [("die", tmp_path / "a"), ("ok", tmp_path / "b")], processes=2)


def test_one_process_runs_here_with_its_progress_bars(
    job: Callable[..., Any], tmp_path: Path
) -> None:
    run_seed_jobs(job, [("ok", tmp_path / "a")], processes=1)
    assert (tmp_path / "a").read_text() == f"{os.getpid()} True"
    # one job, processes > 1: spawned all the same (its torch seeding stays out of this process)
    run_seed_jobs(job, [("ok", tmp_path / "c")], processes=2)
    assert (tmp_path / "c").read_text() != f"{os.getpid()} True"
    assert (tmp_path / "c").read_text().endswith(" False")
    run_seed_jobs(job, [("ok", tmp_path / "b")], processes=1, progress=False)
    assert (tmp_path / "b").read_text() == f"{os.getpid()} False"
    with pytest.raises(ValueError, match="processes must be at least 1"):
        run_seed_jobs(job, [], processes=0)


def test_results_come_back_in_job_order(job: Callable[..., Any], tmp_path: Path) -> None:
    jobs = [("ok", tmp_path / name) for name in "cab"]
    assert run_seed_jobs(job, jobs, processes=2) == ["c", "a", "b"]
    assert run_seed_jobs(job, jobs, processes=1, progress=False) == ["c", "a", "b"]
