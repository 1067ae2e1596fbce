"""Recording a source-RL run transition by transition, ordering episodes and k-downsampling them.

The episode rule of every history is written once, in `Downsampler`; `HistoryRecorder` (one task,
online) and the batched backend's `StreamRecorder` (many tasks, cut after the run) feed it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from icrl.histories._schema import EPISODE_FIELDS, TRANSITION_FIELDS


@dataclass(frozen=True)
class EpisodeSteps:
    """One finished episode's steps, as a recorder hands them to `Downsampler.finish`."""

    reward: np.ndarray
    """(n,) float64."""
    warmup: np.ndarray
    """(n,) bool: the step was a random warm-up step."""
    rows: Callable[[], dict[str, np.ndarray]]
    """The rest of its transitions (obs, action, mean_action, next_obs, terminated, truncated),
    built only when the episode is kept."""


class Downsampler:
    """Episode numbering, k-downsampling and the episode table: the rule of every history file.

    Episodes are numbered in the order in which they finish: by the vector step of their last
    transition, ties broken by env index. Episode e keeps its transitions iff e % k == 0; every
    episode, kept or not, gets a row of the episode table (return, length, env index, end vector
    step, warm-up steps, kept, first row in the transitions).
    """

    def __init__(self, k: int, obs_dim: int, act_dim: int) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k, self.obs_dim, self.act_dim = k, obs_dim, act_dim
        self._kept: list[dict[str, np.ndarray]] = []
        self._episodes: dict[str, list] = {name: [] for name in EPISODE_FIELDS}
        self._rows = 0
        self._last_end = -1

    @property
    def n_episodes(self) -> int:
        """Episodes finished so far."""
        return len(self._episodes["return"])

    def finish(
        self, ends: Iterable[tuple[int, int]], episode: Callable[[int, int], EpisodeSteps]
    ) -> None:
        """Add the episodes that ended at `ends`, (end vector step, env index) pairs in any order
        but none before an end already added; `episode(env, end)` gives each one's steps."""
        for end, env in sorted(ends):
            if end < self._last_end:
                raise ValueError(
                    f"episode end {end} comes after one at vector step {self._last_end}"
                )
            self._last_end = end
            self._add(env, end, episode(env, end))

    def _add(self, env: int, end: int, steps: EpisodeSteps) -> None:
        index = self.n_episodes
        n = len(steps.reward)
        keep = index % self.k == 0
        ep = self._episodes
        ep["return"].append(float(steps.reward.sum()))
        ep["length"].append(n)
        ep["env_index"].append(env)
        ep["end_vstep"].append(end)
        ep["warmup_steps"].append(int(steps.warmup.sum()))
        ep["kept"].append(keep)
        ep["first_row"].append(self._rows if keep else -1)
        if keep:
            self._kept.append(
                {
                    **steps.rows(),
                    "reward": steps.reward.astype(np.float32),
                    "episode": np.full(n, index, dtype=np.int64),
                    "step": np.arange(n, dtype=np.int32),
                    "warmup": steps.warmup,
                }
            )
            self._rows += n

    def result(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(transitions, episodes) arrays in the schema's dtypes."""
        trans: dict[str, np.ndarray] = {}
        for name, (dtype, dim) in TRANSITION_FIELDS.items():
            width = {"obs": (self.obs_dim,), "act": (self.act_dim,), None: ()}[dim]
            parts = [p[name] for p in self._kept]
            trans[name] = (
                np.concatenate(parts).astype(dtype, copy=False)
                if parts
                else np.zeros((0, *width), dtype=dtype)
            )
        eps = {
            name: np.asarray(self._episodes[name], dtype=dtype)
            for name, dtype in EPISODE_FIELDS.items()
        }
        return trans, eps


class HistoryRecorder:
    """Turns the vector-env step stream of a learning run into an ordered, k-downsampled history.

    Call `record_step` once per vector-env step with one row per stepped env (any backend can
    feed it), with the executed action and the policy's deterministic action (`mean_action`, in
    the same env units); `tianshou_hook` adapts it to Tianshou's `Collector(on_step_hook=...)`.
    Episodes are numbered in the order in which they finish (vector step, then env index); episode
    e keeps its transitions iff e % k == 0, while return and length are kept for every episode
    (`Downsampler`).
    """

    def __init__(self, n_envs: int, k: int, obs_dim: int, act_dim: int) -> None:
        self._downsampler = Downsampler(k, obs_dim, act_dim)
        self.n_envs, self.k, self.obs_dim, self.act_dim = n_envs, k, obs_dim, act_dim
        self.warmup = False
        """Set by the learner while it takes random warm-up actions."""
        self.vstep = 0
        self.env_steps = 0
        self._open: list[list[tuple]] = [[] for _ in range(n_envs)]

    @property
    def n_episodes(self) -> int:
        """Episodes finished so far."""
        return self._downsampler.n_episodes

    def record_step(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        env_index: np.ndarray | None = None,
        *,
        mean_action: np.ndarray,
    ) -> None:
        """Record one vector step: row i is a transition of env `env_index[i]` (default: i).

        `action` is the action sent to the env, `mean_action` the action the policy would take
        deterministically at `obs` (same units: after the same squashing, clipping and scaling).
        """
        envs = np.arange(len(reward)) if env_index is None else np.asarray(env_index)
        obs = np.asarray(obs, dtype=np.float32).reshape(len(envs), self.obs_dim)
        next_obs = np.asarray(next_obs, dtype=np.float32).reshape(len(envs), self.obs_dim)
        action = np.asarray(action, dtype=np.float32).reshape(len(envs), self.act_dim)
        mean = np.asarray(mean_action, dtype=np.float32).reshape(len(envs), self.act_dim)
        reward = np.asarray(reward, dtype=np.float64).reshape(len(envs))
        terminated = np.asarray(terminated, dtype=bool).reshape(len(envs))
        truncated = np.asarray(truncated, dtype=bool).reshape(len(envs))
        done_envs = []
        warm = bool(self.warmup)
        for i, env in enumerate(envs.tolist()):
            self._open[env].append(
                (
                    obs[i],
                    action[i],
                    reward[i],
                    next_obs[i],
                    terminated[i],
                    truncated[i],
                    warm,
                    mean[i],
                )
            )
            if terminated[i] or truncated[i]:
                done_envs.append(env)
        self._downsampler.finish([(self.vstep, env) for env in done_envs], self._close_episode)
        self.vstep += 1
        self.env_steps += len(envs)

    def _close_episode(self, env: int, end: int) -> EpisodeSteps:
        rows = self._open[env]
        self._open[env] = []

        def columns() -> dict[str, np.ndarray]:
            return {
                "obs": np.stack([r[0] for r in rows]),
                "action": np.stack([r[1] for r in rows]),
                "mean_action": np.stack([r[7] for r in rows]),
                "next_obs": np.stack([r[3] for r in rows]),
                "terminated": np.array([r[4] for r in rows], dtype=bool),
                "truncated": np.array([r[5] for r in rows], dtype=bool),
            }

        return EpisodeSteps(
            reward=np.array([r[2] for r in rows], dtype=np.float64),
            warmup=np.array([r[6] for r in rows], dtype=bool),
            rows=columns,
        )

    def tianshou_hook(self, action_batch: Any, rollout_batch: Any, mean_action: np.ndarray) -> None:
        """`Collector(on_step_hook=...)` adapter; records the action actually sent to the env.

        `mean_action` is the policy's deterministic action in env units; the collector's batches
        do not hold it in that form (the learner derives it from `action_batch.dist`).
        """
        info = rollout_batch.info
        env_index = info.get("env_id", None)
        self.record_step(
            rollout_batch.obs,
            action_batch.act_normalized,
            rollout_batch.rew,
            rollout_batch.obs_next,
            rollout_batch.terminated,
            rollout_batch.truncated,
            env_index,
            mean_action=mean_action,
        )

    def unfinished_transitions(self) -> int:
        """Transitions of episodes that have not finished (they are dropped from the history)."""
        return sum(len(rows) for rows in self._open)

    def result(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(transitions, episodes) arrays in the schema's dtypes."""
        return self._downsampler.result()
