"""Reference returns of task-agnostic policies (zero action, uniform random action)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from icrl.metaenvs._registry import make_env
from icrl.metaenvs._tasks import Task, as_task, check_family

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
        low, high = env.action_space.low, env.action_space.high
        for e in range(episodes):
            env.reset(seed=seed + 1000 * i + e)
            total, done, n = 0.0, False, 0
            while not done:
                if policy == "zero":
                    action = np.zeros_like(low)
                else:
                    action = rng.uniform(low, high).astype(low.dtype)
                _, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                n += 1
                done = terminated or truncated
            out[i, e] = total
            lengths[i, e] = n
        env.close()
    return (out, lengths) if with_lengths else out
