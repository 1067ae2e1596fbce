"""On a small ReacherGoal run, the batched and reference backends learn alike (slow)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from icrl.histories import GenerateConfig, HistoryFile, generate

SMALL = {
    "family": "ReacherGoal",
    "algorithm": {
        "kind": "sac",
        "hidden_sizes": [64, 64],
        "batch_size": 64,
        "lr": 1e-3,
        "warmup_steps": 200,
    },
    "steps_per_task": 2600,
    "n_envs": 2,
    "k": 1,
    # six learners per backend, each on its own task: one generation per backend keeps both of a
    # 2-core machine's workers busy (3 tasks x 2 seeds left one idle half the time: 230 s in CI)
    "tasks": 6,
    "workers": 2,
    "progress": False,
}


def curve(path: Any) -> np.ndarray:
    """Episode returns (tasks, episodes) of every task, first 50 episodes."""
    hf = HistoryFile(path)
    return np.stack([hf.episode_returns(name)[0][:50] for name in hf.tasks])


@pytest.mark.slow
def test_learning_curves_agree_within_run_spread(tmp_path: Any) -> None:
    curves = {}
    for backend in ("tianshou", "batched"):
        # the batched backend's `workers` are env workers: none needed for 12 sub-envs
        workers = 2 if backend == "tianshou" else 0
        cfg = GenerateConfig.model_validate(
            {**SMALL, "backend": backend, "seed": 0, "workers": workers}
        )
        curves[backend] = curve(generate(cfg, tmp_path / f"{backend}.h5"))  # 6 runs x 50 episodes
    summary = {}
    for backend in ("tianshou", "batched"):
        c = curves[backend]
        early, late = c[:, :10].mean(1), c[:, -15:].mean(1)
        summary[backend] = (early, late)
        assert late.mean() > early.mean() + 5, f"{backend} did not learn: {early} -> {late}"
    (_, late_r), (_, late_b) = summary["tianshou"], summary["batched"]
    spread = np.sqrt((late_r.var(ddof=1) + late_b.var(ddof=1)) / 2)
    # difference of the two means within 2.5 standard errors of the run-to-run spread
    tol = 2.5 * spread * np.sqrt(2 / len(late_r))
    print({b: (e.mean(), v.mean(), v.std()) for b, (e, v) in summary.items()})
    assert abs(late_r.mean() - late_b.mean()) < max(tol, 1.0)
