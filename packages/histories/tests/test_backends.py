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
from icrl.histories import HistoryFile, generate
from icrl.histories._backend import Backend, Job
from icrl.histories._envs import train_tasks
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


class _Reversed(Backend):
    """Yields the records last task first (a backend may finish its tasks in any order)."""

    name = "tianshou"

    def __init__(self, source: Any) -> None:
        self.source = source  # the conftest's synthetic source run

    def run(self, config: Any, jobs: Sequence[Job], progress: Any) -> Iterator[TaskRecord]:
        for job in reversed(jobs):
            progress(config.steps_per_task)
            yield self.source(config, job.index, job.task)

    def run_task(self, config: Any, job: Job, progress: Any = None, record: bool = True) -> Any:
        return self.source(config, job.index, job.task)


def test_generate_commits_what_a_backend_yields_in_any_order(
    tmp_path: Path, make_config: Any, monkeypatch: pytest.MonkeyPatch, synthetic_source: Any
) -> None:
    monkeypatch.setitem(gen.BACKENDS, "tianshou", lambda: _Reversed(synthetic_source))
    config = make_config(tasks=3)
    hf = HistoryFile(generate(config, tmp_path / "r.h5"))
    assert hf.tasks == ["task_000", "task_001", "task_002"]
    for i, name in enumerate(hf.tasks):
        assert hf.meta(name)["task_index"] == i
        want = synthetic_source(config, i, train_tasks("ReacherGoal", 3)[i]).transitions["obs"]
        np.testing.assert_array_equal(hf.history(name).obs, want)
