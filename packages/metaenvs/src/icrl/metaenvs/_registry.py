"""Gymnasium registration and the ``make_env`` / ``make_vector_env`` factories."""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium
import mujoco
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv

from icrl.metaenvs._tasks import (
    DEFINITION_VERSION,
    FAMILIES,
    Task,
    as_task,
    check_family,
    episode_length,
    task_support,
)

_ENTRY_POINTS = {
    "ReacherGoal": "icrl.metaenvs._envs:ReacherGoalEnv",
    "PusherGoal": "icrl.metaenvs._envs:PusherGoalEnv",
    "HalfCheetahVel": "icrl.metaenvs._envs:HalfCheetahVelEnv",
    "AntDir": "icrl.metaenvs._envs:AntDirEnv",
    "PointGoal": "icrl.metaenvs._envs:PointGoalEnv",
}


def env_id(family: str) -> str:
    """The registered Gymnasium id of ``family``, e.g. ``"icrl/ReacherGoal-v0"``."""
    return f"icrl/{check_family(family)}-v0"


def register_envs() -> None:
    """Register the four ``icrl/*-v0`` ids with Gymnasium; calling it again does nothing.

    Importing ``icrl.metaenvs`` calls it. It is also the package's ``gymnasium.envs`` entry point,
    which Gymnasium < 1.0 loaded on import (Gymnasium ≥ 1.0 no longer loads plugins; there, use
    ``import icrl.metaenvs`` or ``gymnasium.make("icrl.metaenvs:icrl/AntDir-v0")``).
    """
    for family in FAMILIES:
        eid = env_id(family)
        if eid in gymnasium.registry:
            continue
        gymnasium.register(
            id=eid,
            entry_point=_ENTRY_POINTS[family],
            max_episode_steps=episode_length(family),
        )


def make_env(
    family: str, task: Task | Mapping[str, Any] | None = None, **kwargs: Any
) -> gymnasium.Env:
    """Build one env of ``family`` through ``gymnasium.make`` (``TimeLimit`` at its episode length).

    ``task`` may be a task value or its dict; ``None`` lets the first ``reset`` draw one from the
    distribution (seeded by the reset seed). Other keyword arguments go to the env's constructor
    (e.g. ``include_task_in_obs=True``, ``terminate_when_unhealthy=False`` for AntDir) or to
    ``gymnasium.make`` (e.g. ``render_mode``, ``max_episode_steps``).
    """
    check_family(family)
    register_envs()
    # Passed as its dict so that the env's spec (which records the kwargs) stays JSON-serialisable.
    task_dict = None if task is None else as_task(family, task).to_dict()
    return gymnasium.make(env_id(family), task=task_dict, **kwargs)


def make_vector_env(
    family: str,
    tasks: Sequence[Task | Mapping[str, Any]],
    asynchronous: bool = True,
    *,
    autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
    context: str | None = None,
    **kwargs: Any,
) -> VectorEnv:
    """A vector env whose sub-env ``i`` holds ``tasks[i]`` (``len(tasks)`` sub-envs).

    ``asynchronous=True`` runs each sub-env in its own process (``AsyncVectorEnv``; ``context``
    picks the multiprocessing start method). ``kwargs`` go to :func:`make_env`. Change the tasks
    later with ``vec.set_attr("task", new_tasks)`` (one per sub-env), then reset.
    """
    check_family(family)
    if len(tasks) == 0:
        raise ValueError("make_vector_env needs at least one task (one sub-env per task)")
    checked = [as_task(family, t) for t in tasks]
    fns = [functools.partial(make_env, family, t, **kwargs) for t in checked]
    if asynchronous:
        return AsyncVectorEnv(fns, autoreset_mode=autoreset_mode, context=context)
    if context is not None:
        raise ValueError("context applies only to asynchronous=True")
    return SyncVectorEnv(fns, autoreset_mode=autoreset_mode)


def env_metadata(family: str, **env_kwargs: Any) -> dict[str, Any]:
    """A JSON-serialisable record of what ``make_env(family, **env_kwargs)`` builds.

    Store it next to anything recorded on the env (learning histories, evaluation results), so
    that data from different definitions or library versions is never mixed unknowingly.
    """
    env = make_env(family, **env_kwargs)
    try:
        base = env.unwrapped
        meta: dict[str, Any] = {
            "family": family,
            "env_id": env_id(family),
            "definition_version": DEFINITION_VERSION,
            "episode_length": episode_length(family),
            "task_distribution": task_support(family),
            "env_kwargs": {k: v for k, v in env_kwargs.items() if k != "task"},
            "obs_dim": int(env.observation_space.shape[0]),
            "act_dim": int(env.action_space.shape[0]),
            "action_low": env.action_space.low.tolist(),
            "action_high": env.action_space.high.tolist(),
            "dt": float(base.dt),
            "include_task_in_obs": bool(base.include_task_in_obs),
            "terminates": family == "AntDir" and bool(base._terminate_when_unhealthy),
            "versions": {
                "icrl-metaenvs": importlib.metadata.version("icrl-metaenvs"),
                "gymnasium": gymnasium.__version__,
                "mujoco": mujoco.__version__,
                "numpy": np.__version__,
            },
        }
    finally:
        env.close()
    return meta
