"""Recording the vector-step stream of many tasks at once, and cutting it into histories afterwards.

`HistoryRecorder.record_step` is a per-task Python call; with 70 tasks it would sit in the hot loop
70 times per vector step. Here every vector step is one vectorised write of all tasks' rows into
preallocated arrays, and each task's episodes are cut out after the run by `task_history`, which
feeds them to the `Downsampler` that `HistoryRecorder` feeds as they finish, so it produces exactly
what `HistoryRecorder` would have produced from the same stream (a test checks this on random
streams).
"""

from __future__ import annotations

import numpy as np

from icrl.histories._recorder import Downsampler, EpisodeSteps


class StreamRecorder:
    """All vector steps of T tasks x N envs: arrays (T, V, N, ...), one vector step at a time."""

    def __init__(
        self, n_tasks: int, n_vsteps: int, n_envs: int, obs_dim: int, act_dim: int
    ) -> None:
        shape = (n_tasks, n_vsteps, n_envs)
        self.obs = np.zeros((*shape, obs_dim), np.float32)
        self.next_obs = np.zeros((*shape, obs_dim), np.float32)
        self.action = np.zeros((*shape, act_dim), np.float32)
        self.mean_action = np.zeros((*shape, act_dim), np.float32)
        self.reward = np.zeros(shape, np.float64)
        self.terminated = np.zeros(shape, np.bool_)
        self.truncated = np.zeros(shape, np.bool_)
        self.warmup = np.zeros(n_vsteps, np.bool_)
        self.n_tasks, self.n_envs, self.obs_dim, self.act_dim = n_tasks, n_envs, obs_dim, act_dim
        self.vsteps = 0

    def record(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        warmup: bool,
        *,
        mean_action: np.ndarray,
    ) -> None:
        """One vector step of every task; rows ordered (task, env), T * N of them.

        `mean_action` is the policy's deterministic action, in the units of `action`.
        """
        v, t, n = self.vsteps, self.n_tasks, self.n_envs
        self.obs[:, v] = obs.reshape(t, n, self.obs_dim)
        self.next_obs[:, v] = next_obs.reshape(t, n, self.obs_dim)
        self.action[:, v] = action.reshape(t, n, self.act_dim)
        self.mean_action[:, v] = mean_action.reshape(t, n, self.act_dim)
        self.reward[:, v] = reward.reshape(t, n)
        self.terminated[:, v] = terminated.reshape(t, n)
        self.truncated[:, v] = truncated.reshape(t, n)
        self.warmup[v] = warmup
        self.vsteps += 1

    def task_history(
        self, task: int, k: int
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int]:
        """(transitions, episodes, unfinished transitions) of one task, as HistoryRecorder would
        give them (both feed `Downsampler`)."""
        vs = self.vsteps
        ends_v, ends_env = np.nonzero(self.terminated[task, :vs] | self.truncated[task, :vs])
        start = np.zeros(self.n_envs, np.int64)  # each env's open episode begins here

        def episode(env: int, end: int) -> EpisodeSteps:
            span = slice(int(start[env]), end + 1)
            start[env] = end + 1

            def columns() -> dict[str, np.ndarray]:
                return {
                    "obs": self.obs[task, span, env],
                    "action": self.action[task, span, env],
                    "mean_action": self.mean_action[task, span, env],
                    "next_obs": self.next_obs[task, span, env],
                    "terminated": self.terminated[task, span, env],
                    "truncated": self.truncated[task, span, env],
                }

            return EpisodeSteps(self.reward[task, span, env], self.warmup[span], columns)

        episodes = Downsampler(k, self.obs_dim, self.act_dim)
        episodes.finish(zip(ends_v.tolist(), ends_env.tolist(), strict=True), episode)
        trans, eps = episodes.result()
        return trans, eps, int((vs - start).sum())
