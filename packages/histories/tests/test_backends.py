"""The backend seam: both backends behind one registry, batched/ below _generate, generate
committing whatever a backend yields."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import icrl.histories._generate as gen
from icrl.histories import HistoryFile, HistoryRecorder, generate
from icrl.histories._backend import Backend, Job
from icrl.histories._envs import train_tasks
from icrl.histories._records import task_record
from icrl.histories._schema import TaskRecord

SRC = Path(gen.__file__).parent


def test_both_backends_are_registered_under_their_names() -> None:
    assert set(gen.BACKENDS) == {"tianshou", "batched"}
    for name, make in gen.BACKENDS.items():
        backend = make()
        assert isinstance(backend, Backend) and backend.name == name


def test_batched_does_not_import_generate() -> None:
    """No import circle: the batched sub-package builds on _backend and _records only."""
    for path in sorted((SRC / "batched").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or "", *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            driver = ("icrl.histories._generate", "icrl.histories.__main__")
            bad = [n for n in names if n.startswith(driver)]
            assert not bad, f"{path.name} imports {bad}"


def _synthetic(config: Any, job: Job) -> TaskRecord:
    """A record of random 2-dim data with 50-step episodes (no learner)."""
    rng = np.random.default_rng(job.index)
    rec = HistoryRecorder(config.n_envs, config.k, obs_dim=2, act_dim=2)
    n = config.n_envs
    for v in range(config.steps_per_task // n):
        rec.record_step(
            rng.normal(size=(n, 2)),
            rng.uniform(-1, 1, size=(n, 2)),
            rng.normal(size=n),
            rng.normal(size=(n, 2)),
            np.zeros(n, bool),
            np.full(n, (v + 1) % 50 == 0),
            mean_action=rng.uniform(-1, 1, size=(n, 2)),
        )
    trans, eps = rec.result()
    unfinished = rec.unfinished_transitions()
    return task_record(config, job.index, job.task, 0, trans, eps, rec.env_steps, unfinished, 2, 2)


class _Reversed(Backend):
    """Yields the records last task first (a backend may finish its tasks in any order)."""

    name = "tianshou"

    def run(self, config: Any, jobs: Sequence[Job], progress: Any) -> Iterator[TaskRecord]:
        for job in reversed(jobs):
            progress(config.steps_per_task)
            yield _synthetic(config, job)

    def run_task(self, config: Any, job: Job, progress: Any = None, record: bool = True) -> Any:
        return _synthetic(config, job)


def test_generate_commits_what_a_backend_yields_in_any_order(
    tmp_path: Path, make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(gen.BACKENDS, "tianshou", _Reversed)
    config = make_config(tasks=3)
    hf = HistoryFile(generate(config, tmp_path / "r.h5"))
    assert hf.tasks == ["task_000", "task_001", "task_002"]
    for i, name in enumerate(hf.tasks):
        assert hf.meta(name)["task_index"] == i
        want = _synthetic(config, Job(i, train_tasks("ReacherGoal", 3)[i])).transitions["obs"]
        np.testing.assert_array_equal(hf.history(name).obs, want)
