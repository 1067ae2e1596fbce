"""Reference returns of task-agnostic policies (zero action, uniform random action)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from icrl.metaenvs._registry import make_env
from icrl.metaenvs._tasks import Task, as_task, check_family
from icrl.metaenvs.rollout import Act, run_episodes

Policy = Literal["zero", "random"]


def reference_returns(
    family: str,
    tasks: Sequence[Task | Mapping[str, Any]],
    policy: Policy = "zero",
    episodes: int = 1,
    seed: int = 0,
    *,
    with_lengths: bool = False,
    **env_kwargs: Any,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Undiscounted episode returns of a task-agnostic policy, shape ``(len(tasks), episodes)``.

    ``policy="zero"`` always sends the zero action; ``"random"`` samples uniformly from the action
    box with a generator seeded by ``seed`` (so results are reproducible). Episode ``e`` of task
    ``i`` resets with seed ``seed + 1000 * i + e``. ``env_kwargs`` go to :func:`make_env`.
    With ``with_lengths=True`` the episode lengths (same shape) come too: ``(returns, lengths)``.
    """
    check_family(family)
    if policy not in ("zero", "random"):
        raise ValueError(f"policy must be 'zero' or 'random'; got {policy!r}")
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be a positive int; got {episodes!r}")
    rng = np.random.default_rng(seed)
    out = np.zeros((len(tasks), episodes))
    lengths = np.zeros((len(tasks), episodes), dtype=np.int64)
    for i, task in enumerate(tasks):
        env = make_env(family, as_task(family, task), **env_kwargs)
        act = _act(policy, env.action_space, rng)
        for e in range(episodes):
            run = run_episodes([env], act, seeds=[seed + 1000 * i + e])
            out[i, e], lengths[i, e] = run.returns[0, 0], run.lengths[0, 0]
        env.close()
    return (out, lengths) if with_lengths else out


def _act(policy: Policy, space: Any, rng: np.random.Generator) -> Act:
    """The task-agnostic policy on one env: the zero action, or a uniform draw from the box."""
    low, high = space.low, space.high

    def act(obs: np.ndarray, rows: np.ndarray, start: np.ndarray) -> np.ndarray:
        if policy == "zero":
            return np.zeros((1, *low.shape), low.dtype)
        return rng.uniform(low, high).astype(low.dtype)[None]

    return act
