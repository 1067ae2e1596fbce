"""Episode rollouts, written once for every package that evaluates or collects episodes.

:func:`run_episodes` steps a batch of sub-envs episode by episode: it maps each action into the
env's box (clipped by default), sends it, adds each sub-env's rewards to its episode return and
resets a sub-env when its episode ends, until every sub-env has run ``episodes`` episodes. The
caller keeps only what differs: how its policy turns observations into actions (``act``) and what
it records of each step (``on_step``) or finished episode (``on_episode``).

The batch is either

- a Gymnasium vector env built with ``autoreset_mode=AutoresetMode.DISABLED``
  (``make_vector_env(..., autoreset_mode=AutoresetMode.DISABLED)``): every sub-env is stepped at
  every step, so a sub-env that has run its episodes keeps running (its extra episodes are not
  recorded) and the batch stays whole; finished sub-envs are reset with a ``reset_mask``; or
- a sequence of single envs: only the sub-envs still short of ``episodes`` are stepped (and
  passed to ``act``); a finished one is reset with ``env.reset()`` while it needs more episodes.

    >>> from icrl.metaenvs.rollout import run_episodes
    >>> run = run_episodes([env], lambda obs, rows, start: policy(obs), seeds=[0])
    >>> run.returns[0, 0], run.lengths[0, 0]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

__all__ = ["Act", "Rollout", "Step", "ToEnv", "clip_action", "run_episodes"]

# (obs of the stepped sub-envs, their indices, True where an episode starts) -> their actions
Act = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
# (a sub-env's action space, the policy's action(s)) -> the action(s) sent to the env
ToEnv = Callable[[gym.Space, np.ndarray], np.ndarray]


def clip_action(space: gym.spaces.Box, action: np.ndarray, dtype: Any = None) -> np.ndarray:
    """``action`` clipped to the box ``space``, as ``dtype`` (default: the space's dtype)."""
    clipped = np.clip(np.asarray(action, np.float64), space.low, space.high)
    return clipped.astype(space.dtype if dtype is None else dtype)


@dataclass(frozen=True)
class Step:
    """One env step of the sub-envs ``rows`` (row j of each array is sub-env ``rows[j]``)."""

    rows: np.ndarray
    obs: np.ndarray  # the observation acted on
    policy_action: np.ndarray  # what ``act`` returned
    action: np.ndarray  # what the env received (``to_env`` of ``policy_action``)
    reward: np.ndarray
    next_obs: np.ndarray  # the step's observation (the final one where an episode ended)
    terminated: np.ndarray
    truncated: np.ndarray


@dataclass(frozen=True)
class Rollout:
    """Undiscounted return and length of episode e of sub-env i, each ``(n, episodes)``."""

    returns: np.ndarray
    lengths: np.ndarray


def run_episodes(
    envs: VectorEnv | Sequence[gym.Env],
    act: Act,
    episodes: int = 1,
    *,
    seeds: Sequence[int | None] | None = None,
    options: Sequence[Mapping[str, Any] | None] | None = None,
    to_env: ToEnv = clip_action,
    on_step: Callable[[Step], None] | None = None,
    on_episode: Callable[[int, int, float], None] | None = None,
    max_steps: int | None = None,
) -> Rollout:
    """Run ``episodes`` episodes in every sub-env of ``envs``; see the module docstring.

    ``seeds`` (one per sub-env) and ``options`` (one per single env) go to the first reset only;
    later resets continue each env's generator. ``on_episode(i, e, return)`` is called as episode
    e of sub-env i ends; ``max_steps`` bounds one episode's steps (``RuntimeError`` beyond).
    """
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be a positive int; got {episodes!r}")
    batch = _Vector(envs) if isinstance(envs, VectorEnv) else _Singles(list(envs))
    obs = batch.reset(seeds, options)
    n = batch.n
    returns, lengths = np.zeros((n, episodes)), np.zeros((n, episodes), dtype=np.int64)
    ep_return, ep_len = np.zeros(n), np.zeros(n, dtype=np.int64)
    count = np.zeros(n, dtype=np.int64)
    start = np.ones(n, dtype=bool)
    while count.min() < episodes:
        rows = batch.rows(count < episodes)
        acted = obs if batch.whole else obs[rows]
        policy_action = act(acted, rows, start if batch.whole else start[rows])
        action = batch.to_env(to_env, rows, policy_action)
        reward, next_obs, terminated, truncated = batch.step(rows, action)
        if on_step is not None:
            on_step(
                Step(rows, acted, policy_action, action, reward, next_obs, terminated, truncated)
            )
        done = terminated | truncated
        ep_return[rows] += reward
        ep_len[rows] += 1
        for j in np.flatnonzero(done):
            i = rows[j]
            if count[i] < episodes:
                returns[i, count[i]], lengths[i, count[i]] = ep_return[i], ep_len[i]
                count[i] += 1
                if on_episode is not None:
                    on_episode(int(i), int(count[i] - 1), float(ep_return[i]))
            ep_return[i], ep_len[i] = 0.0, 0
        if max_steps is not None and (ep_len[rows[~done]] >= max_steps).any():
            raise RuntimeError(
                f"episode did not end within {max_steps} steps; is the env time-limited?"
            )
        obs = batch.advance(obs, rows, next_obs, done, count < episodes)
        start = np.zeros(n, dtype=bool)
        start[rows] = done
    return Rollout(returns, lengths)


class _Vector:
    """A vector env with autoreset disabled: all sub-envs step together."""

    whole = True

    def __init__(self, envs: VectorEnv) -> None:
        if envs.metadata.get("autoreset_mode") != AutoresetMode.DISABLED:
            raise ValueError(
                "run_episodes needs a vector env built with autoreset_mode=DISABLED "
                "(make_vector_env(..., autoreset_mode=AutoresetMode.DISABLED))"
            )
        self.envs, self.n = envs, envs.num_envs

    def reset(self, seeds, options) -> np.ndarray:
        if options is not None:
            raise ValueError("run_episodes: per-env reset options need a sequence of single envs")
        obs, _ = self.envs.reset(seed=None if seeds is None else list(seeds))
        return obs

    def rows(self, wanting: np.ndarray) -> np.ndarray:
        return np.arange(self.n)

    def to_env(self, to_env: ToEnv, rows: np.ndarray, action: np.ndarray) -> np.ndarray:
        return to_env(self.envs.single_action_space, action)

    def step(self, rows, action):
        next_obs, reward, terminated, truncated, _ = self.envs.step(action)
        return reward, next_obs, terminated, truncated

    def advance(self, obs, rows, next_obs, done, wanting) -> np.ndarray:
        if not done.any():
            return next_obs
        # the reset obs replaces the final obs only where done
        reset_obs, _ = self.envs.reset(options={"reset_mask": done})
        return np.where(done[:, None], reset_obs, next_obs)


class _Singles:
    """Single envs stepped one by one; a sub-env that has run its episodes is left alone."""

    whole = False

    def __init__(self, envs: list[gym.Env]) -> None:
        if not envs:
            raise ValueError("run_episodes: no envs")
        self.envs, self.n = envs, len(envs)

    def reset(self, seeds, options) -> np.ndarray:
        for name, given in (("seeds", seeds), ("options", options)):
            if given is not None and len(given) != self.n:
                raise ValueError(f"run_episodes: {len(given)} {name} for {self.n} envs")
        return np.stack(
            [
                env.reset(
                    seed=None if seeds is None else seeds[i],
                    options=None if options is None else options[i],
                )[0]
                for i, env in enumerate(self.envs)
            ]
        )

    def rows(self, wanting: np.ndarray) -> np.ndarray:
        return np.flatnonzero(wanting)

    def to_env(self, to_env: ToEnv, rows: np.ndarray, action: np.ndarray) -> np.ndarray:
        return np.stack([to_env(self.envs[i].action_space, action[j]) for j, i in enumerate(rows)])

    def step(self, rows, action):
        out = [self.envs[i].step(action[j]) for j, i in enumerate(rows)]
        next_obs, reward, terminated, truncated, _ = zip(*out, strict=True)
        return (
            np.asarray(reward, np.float64),
            np.stack(next_obs),
            np.asarray(terminated, bool),
            np.asarray(truncated, bool),
        )

    def advance(self, obs, rows, next_obs, done, wanting) -> np.ndarray:
        obs[rows] = next_obs
        for i in rows[done]:
            if wanting[i]:
                obs[i] = self.envs[i].reset()[0]
        return obs
