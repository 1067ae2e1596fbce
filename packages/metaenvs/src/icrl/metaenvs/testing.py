"""Conformance checks for meta-task environments, usable from any project's tests.

    from icrl.metaenvs.testing import check_conformance
    check_conformance("AntDir")          # raises ConformanceError on the first failed property

What is checked, for one family (with the given ``make_env`` keyword arguments):

- Gymnasium's ``check_env`` on the unwrapped env (render checks skipped: rendering is Gymnasium's
  MuJoCo renderer, unchanged, and ``human`` mode needs a display);
- reset/step return shapes and types, observations inside the observation space, all values finite,
  the ``reward_*`` terms in ``info`` summing to the reward;
- episodes end exactly at the family's episode length (or earlier by termination, AntDir only);
- determinism: the same seed, task and actions give identical trajectories;
- the task is hidden: the same seed and actions under two different tasks give identical
  observations (until a step whose ``info`` has a truthy ``"object_contact"``: in PusherGoal the
  object's position is the task, and once the arm touches it the arm's motion depends on it) while
  the rewards differ;
- the task persists across ``reset()`` and ``reset(options={"task": ...})`` replaces it;
- tasks survive a JSON round trip and the env survives pickling with its task.
"""

from __future__ import annotations

import json
import pickle
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from gymnasium.utils.env_checker import check_env

from icrl.metaenvs._registry import make_env
from icrl.metaenvs._tasks import (
    Task,
    as_task,
    check_family,
    episode_length,
    sample_tasks,
    task_from_dict,
)

__all__ = ["ConformanceError", "check_conformance", "gymnasium_check_env", "rollout"]

# Style advice that Gymnasium's checker gives every MuJoCo v5 env (unbounded observation boxes;
# Pusher's native [−2, 2] action box). They are not defects; anything else still surfaces.
_CHECKER_ADVICE = (
    r".*A Box observation space (minimum|maximum) value is .?infinity",
    r".*For Box action spaces, we recommend using a symmetric and normalized space",
)


class ConformanceError(AssertionError):
    """A meta-task environment broke one of the conformance properties (the message says which)."""


@contextmanager
def _quiet_checker_advice() -> Iterator[None]:
    with warnings.catch_warnings():
        for pattern in _CHECKER_ADVICE:
            warnings.filterwarnings("ignore", pattern, UserWarning)
        yield


def gymnasium_check_env(family: str, task: Task | None = None, **env_kwargs: Any) -> None:
    """Run Gymnasium's ``check_env`` on the unwrapped env of ``family`` (render checks skipped)."""
    env = make_env(family, task, **env_kwargs)
    try:
        with _quiet_checker_advice():
            check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()


def rollout(
    env: Any, actions: np.ndarray, seed: int, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Reset with ``seed`` (and ``options``), then step through ``actions`` until the episode ends.

    Returns ``obs`` (T+1, obs_dim) including the reset observation, ``reward`` (T,), ``terminated``,
    ``truncated`` (T,) and ``infos`` (list of T dicts).
    """
    obs, _ = env.reset(seed=seed, options=options)
    observations, rewards, terms, truncs, infos = [np.array(obs, copy=True)], [], [], [], []
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        observations.append(np.array(obs, copy=True))
        rewards.append(reward)
        terms.append(terminated)
        truncs.append(truncated)
        infos.append(info)
        if terminated or truncated:
            break
    return {
        "obs": np.stack(observations),
        "reward": np.asarray(rewards, dtype=np.float64),
        "terminated": np.asarray(terms, dtype=bool),
        "truncated": np.asarray(truncs, dtype=bool),
        "infos": infos,
    }


def _fail(family: str, what: str) -> ConformanceError:
    return ConformanceError(f"{family}: {what}")


def _check_steps(family: str, env: Any, run: dict[str, Any]) -> None:
    space = env.observation_space
    for t, obs in enumerate(run["obs"]):
        if obs.shape != space.shape or obs.dtype != space.dtype:
            raise _fail(
                family,
                f"observation {t} has shape {obs.shape} / dtype {obs.dtype}; the observation "
                f"space says {space.shape} / {space.dtype}",
            )
        if not np.all(np.isfinite(obs)):
            raise _fail(family, f"observation {t} is not finite: {obs}")
        if obs not in space:
            raise _fail(family, f"observation {t} is outside the observation space")
    if not np.all(np.isfinite(run["reward"])):
        raise _fail(family, f"non-finite reward in {run['reward']}")
    for t, (reward, info) in enumerate(zip(run["reward"], run["infos"], strict=True)):
        terms = {k: v for k, v in info.items() if k.startswith("reward_")}
        if not terms:
            raise _fail(family, f"info at step {t} has no reward_* terms: {sorted(info)}")
        total = float(sum(terms.values()))
        if not np.isclose(total, reward, rtol=1e-12, atol=1e-12):
            raise _fail(family, f"step {t}: reward {reward} but its info terms sum to {total}")
    n, limit = len(run["reward"]), episode_length(family)
    ended_by_termination = bool(run["terminated"][-1])
    if ended_by_termination:
        if family != "AntDir":
            raise _fail(family, f"terminated at step {n}; only AntDir may terminate")
        if n > limit:
            raise _fail(family, f"episode ran {n} steps, past its limit {limit}")
    elif n != limit or not run["truncated"][-1] or run["truncated"][:-1].any():
        raise _fail(family, f"episode of {n} steps should be truncated at exactly {limit}")


def _check_deterministic(family: str, a: dict[str, Any], b: dict[str, Any]) -> None:
    for key in ("obs", "reward", "terminated", "truncated"):
        if a[key].shape != b[key].shape or not np.array_equal(a[key], b[key]):
            raise _fail(family, f"same seed, task and actions gave different {key!r}")


def _check_hidden(family: str, a: dict[str, Any], b: dict[str, Any]) -> None:
    n = min(len(a["reward"]), len(b["reward"]))
    horizon = n
    for t in range(n):
        if a["infos"][t].get("object_contact") or b["infos"][t].get("object_contact"):
            horizon = t  # this step's observation may already depend on the task
            break
    if horizon == 0:
        raise _fail(family, "the task affected dynamics from the first step: nothing to compare")
    if not np.array_equal(a["obs"][: horizon + 1], b["obs"][: horizon + 1]):
        t = int(np.argmax(np.any(a["obs"][: horizon + 1] != b["obs"][: horizon + 1], axis=1)))
        raise _fail(
            family,
            f"observation {t} differs between two tasks with the same seed and actions: "
            "the observation depends on the task",
        )
    if np.array_equal(a["reward"][:n], b["reward"][:n]):
        raise _fail(family, "two different tasks gave identical rewards: the task is ignored")


def _check_persistence(family: str, env: Any, task_a: Task, task_b: Task) -> None:
    base = env.unwrapped
    env.reset(seed=1, options={"task": task_a})
    for _ in range(2):
        env.reset()
        if base.task != task_a:
            raise _fail(family, f"task changed across reset(): {task_a} became {base.task}")
    env.reset(options={"task": task_b})
    env.reset(seed=3)
    if base.task != task_b:
        raise _fail(family, f"reset(options={{'task': ...}}) did not persist: got {base.task}")
    restored = pickle.loads(pickle.dumps(base))
    try:
        if restored.task != task_b:
            raise _fail(family, f"pickling lost the task: {task_b} became {restored.task}")
    finally:
        restored.close()
    for task in (task_a, task_b):
        if task_from_dict(json.loads(json.dumps(task.to_dict()))) != task:
            raise _fail(family, f"task {task} does not survive a JSON round trip")


def check_conformance(
    family: str,
    tasks: Sequence[Task] | None = None,
    *,
    seed: int = 0,
    check_hidden: bool = True,
    **env_kwargs: Any,
) -> None:
    """Check every conformance property (see the module docstring) for one family.

    ``tasks``: two different tasks to compare (default: two sampled with ``seed``). Pass
    ``check_hidden=False`` together with ``include_task_in_obs=True``. Raises
    :class:`ConformanceError` naming the first property that fails.
    """
    check_family(family)
    if tasks is None:
        tasks = sample_tasks(family, 2, seed)
    if len(tasks) != 2 or tasks[0] == tasks[1]:
        raise ValueError(f"tasks must be two different {family} tasks; got {tasks!r}")
    task_a, task_b = (as_task(family, t) for t in tasks)

    gymnasium_check_env(family, task_a, **env_kwargs)
    env = make_env(family, task_a, **env_kwargs)
    try:
        rng = np.random.default_rng(seed)
        space = env.action_space
        actions = rng.uniform(space.low, space.high, size=(episode_length(family), *space.shape))
        actions = actions.astype(space.dtype)
        run_a = rollout(env, actions, seed, options={"task": task_a})
        _check_steps(family, env, run_a)
        _check_deterministic(family, run_a, rollout(env, actions, seed, {"task": task_a}))
        run_b = rollout(env, actions, seed, options={"task": task_b})
        _check_steps(family, env, run_b)
        if check_hidden:
            _check_hidden(family, run_a, run_b)
        _check_persistence(family, env, task_a, task_b)
    finally:
        env.close()
