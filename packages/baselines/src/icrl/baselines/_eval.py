"""Episode rollouts shared by the baselines' evaluators."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from icrl.metaenvs.rollout import Step, clip_action, run_episodes


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
    action_bounds(env)  # a bounded Box
    steps: list[tuple] = []

    def record(step: Step) -> None:
        steps.append(
            (
                step.obs[0],
                step.action[0],
                float(step.reward[0]),
                step.next_obs[0],
                bool(step.terminated[0]),
                bool(step.truncated[0]),
            )
        )

    run_episodes(
        [env],
        lambda obs, rows, start: np.asarray(policy(obs[0]))[None],
        seeds=[seed],
        to_env=lambda space, action: clip_action(space, action, np.float32),
        on_step=record,
        max_steps=max_steps,
    )
    o, a, r, no, te, tr = zip(*steps, strict=True)
    return Episode(
        obs=np.asarray(o, np.float32),
        action=np.asarray(a, np.float32),
        reward=np.asarray(r, np.float32),
        next_obs=np.asarray(no, np.float32),
        terminated=np.asarray(te, bool),
        truncated=np.asarray(tr, bool),
    )
