"""What every backend writes for a finished task: its seed, its attributes and its record.

Both backends (the per-task Tianshou one in `_generate` and `batched/`) build their `TaskRecord`s
here, so that a file does not tell which backend wrote it except by its `backend` attribute.
"""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

import numpy as np

from icrl.histories import _envs
from icrl.histories._config import GenerateConfig
from icrl.histories._schema import TaskRecord

_LIBRARIES = (
    "icrl-histories",
    "icrl-metaenvs",
    "tianshou",
    "torch",
    "gymnasium",
    "mujoco",
    "numpy",
    "h5py",
)


def library_versions() -> dict[str, str]:
    """Versions of the libraries that decide a history's content."""
    out = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def task_seed(seed: int, index: int) -> int:
    """The seed of task `index` of a run seeded `seed` (independent streams per task)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint32)[0])


def task_record(
    config: GenerateConfig,
    index: int,
    task: Any,
    seed: int,
    trans: dict[str, np.ndarray],
    eps: dict[str, np.ndarray],
    env_steps: int,
    unfinished: int,
    obs_dim: int,
    act_dim: int,
    extra: dict[str, Any] | None = None,
) -> TaskRecord:
    """A finished task's arrays with the attributes every backend writes (`extra` added last)."""
    algo = config.algorithm
    attrs = {
        "task": _envs.task_to_dict(task),
        "task_index": index,
        "family": config.family,
        "env_id": _envs.env_id(config.family),
        "env_definition_version": _envs.definition_version(),
        "algorithm": algo.kind,
        "hyperparameters": algo.model_dump(mode="json"),
        "k": config.k,
        "seed": config.seed,
        "task_seed": seed,
        "n_envs": config.n_envs,
        "steps": config.steps_per_task,
        "backend": config.backend,
        "device": config.device,
        "library_versions": library_versions(),
        "n_episodes": int(eps["return"].shape[0]),
        "n_transitions_total": env_steps,
        "n_transitions_kept": int(trans["reward"].shape[0]),
        "n_unfinished_transitions": unfinished,
        "obs_dim": obs_dim,
        "act_dim": act_dim,
    }
    return TaskRecord(transitions=trans, episodes=eps, attrs={**attrs, **(extra or {})})
