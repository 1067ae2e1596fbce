"""Episode rollouts shared by the baselines' evaluators."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np


@dataclass(frozen=True)
class Episode:
    """One episode's transitions (actions as sent to the env) and its undiscounted return."""

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray

    @property
    def ret(self) -> float:
        """Undiscounted return."""
        return float(self.reward.sum())

    def __len__(self) -> int:
        return len(self.reward)


def action_bounds(env: gym.Env) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` of a Box action space, checked finite."""
    space = env.action_space
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"expected a Box action space, got {space}")
    low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ValueError(f"action space {space} must be bounded for a tanh policy")
    return low, high


def run_episode(
    env: gym.Env,
    policy: Callable[[np.ndarray], np.ndarray],
    *,
    seed: int | None = None,
    max_steps: int = 100_000,
) -> Episode:
    """Roll out one episode; `policy` maps an observation to an action inside the env's box
    (values outside are clipped to it, and the clipped action is what is recorded)."""
    low, high = action_bounds(env)
    obs, _ = env.reset(seed=seed)
    rows: list[tuple] = []
    for _ in range(max_steps):
        action = np.clip(np.asarray(policy(obs), np.float64), low, high).astype(np.float32)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        rows.append((obs, action, float(reward), next_obs, bool(terminated), bool(truncated)))
        obs = next_obs
        if terminated or truncated:
            break
    else:
        raise RuntimeError(
            f"episode did not end within {max_steps} steps; is the env time-limited?"
        )
    o, a, r, no, te, tr = zip(*rows, strict=True)
    return Episode(
        obs=np.asarray(o, np.float32),
        action=np.asarray(a, np.float32),
        reward=np.asarray(r, np.float32),
        next_obs=np.asarray(no, np.float32),
        terminated=np.asarray(te, bool),
        truncated=np.asarray(tr, bool),
    )
