"""Shared tiny configurations: Tianshou runs small enough for a 2-core CI machine."""

from __future__ import annotations

import os
from typing import Any

import pytest

os.environ.setdefault("TQDM_DISABLE", "1")

from icrl.histories import GenerateConfig

TINY_SAC: dict[str, Any] = {
    "kind": "sac",
    "hidden_sizes": [16],
    "batch_size": 16,
    "warmup_steps": 40,
    "lr": 1e-3,
}


def tiny_config(**overrides: Any) -> GenerateConfig:
    """Two ReacherGoal tasks, 2 envs, 140 env steps each with a one-layer SAC, in-process."""
    data: dict[str, Any] = {
        "family": "ReacherGoal",
        "algorithm": TINY_SAC,
        "steps_per_task": 240,
        "n_envs": 2,
        "k": 2,
        "tasks": 2,
        "workers": 0,
        "progress": False,
    }
    data.update(overrides)
    return GenerateConfig.model_validate(data)


@pytest.fixture(scope="session")
def make_config() -> Any:
    """The `tiny_config` factory (test modules cannot import conftest in importlib mode)."""
    return tiny_config
