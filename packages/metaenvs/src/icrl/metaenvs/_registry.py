"""Gymnasium registration and the ``make_env`` / ``make_vector_env`` factories."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv

from icrl.metaenvs._tasks import FAMILIES, Task, as_task, check_family, episode_length

_ENTRY_POINTS = {
    "ReacherGoal": "icrl.metaenvs._envs:ReacherGoalEnv",
    "PusherGoal": "icrl.metaenvs._envs:PusherGoalEnv",
    "HalfCheetahVel": "icrl.metaenvs._envs:HalfCheetahVelEnv",
    "AntDir": "icrl.metaenvs._envs:AntDirEnv",
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
    if task is not None:
        task = as_task(family, task)
    return gymnasium.make(env_id(family), task=task, **kwargs)


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
