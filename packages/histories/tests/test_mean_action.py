"""The source policy's deterministic action (`mean_action`), recorded by both backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from icrl.histories import HistoryFile, generate

# lr 0: the policy never changes, so every row's mean_action must be the initial policy's
FROZEN = {
    "sac": {"kind": "sac", "hidden_sizes": [16], "batch_size": 16, "warmup_steps": 40, "lr": 0.0},
    "ppo": {"kind": "ppo", "hidden_sizes": [16], "steps_per_env": 25, "batch_size": 16, "lr": 0.0},
}


@pytest.mark.parametrize("backend", ["tianshou", "batched"])
@pytest.mark.parametrize("kind", ["sac", "ppo"])
def test_mean_action_is_the_policys_deterministic_action(
    tmp_path: Path, make_config: Any, policy_mean: Any, backend: str, kind: str
) -> None:
    """Every recorded row (warm-up and learning phase) against the policy recomputed from seed."""
    config = make_config(backend=backend, algorithm=FROZEN[kind], steps_per_task=100, k=1, tasks=1)
    hf = HistoryFile(generate(config, tmp_path / f"{backend}_{kind}.h5"))
    h = hf.history("task_000")
    assert len(h) == 100 and h.mean_action is not None
    assert h.mean_action.shape == h.action.shape == (100, 2)
    assert h.mean_action.dtype == np.float32
    assert np.all(np.abs(h.mean_action) <= 1.0)  # ReacherGoal's box is [-1, 1]^2
    assert h.warmup.sum() == (40 if kind == "sac" else 0)
    want = policy_mean(config, 0, h.obs)
    np.testing.assert_allclose(h.mean_action, want, atol=1e-5, rtol=0)
    # the executed actions are samples around it
    noise = hf.exploration_noise("task_000")
    assert noise is not None and noise > 1e-3
    assert not np.allclose(h.action, h.mean_action, atol=1e-3)


def test_info_shows_the_noise_floor(
    tmp_path: Path, make_config: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from icrl.histories.__main__ import main

    config = make_config(algorithm=FROZEN["ppo"], steps_per_task=100, k=1, tasks=1)
    path = generate(config, tmp_path / "p.h5")
    noise = HistoryFile(path).exploration_noise("task_000")
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "|a-mu|^2" in out and f"{noise:8.4f}" in out
