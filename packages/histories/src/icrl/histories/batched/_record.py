"""Recording the vector-step stream of many tasks at once, and cutting it into histories afterwards.

`HistoryRecorder.record_step` is a per-task Python call; with 70 tasks it would sit in the hot loop
70 times per vector step. Here every vector step is one vectorised write of all tasks' rows into
preallocated arrays, and each task's episodes are cut out after the run by `task_history`, which
produces exactly what `HistoryRecorder` would have produced from the same stream (a test checks
this on random streams).
"""

from __future__ import annotations

import numpy as np

from icrl.histories._schema import EPISODE_FIELDS, TRANSITION_FIELDS


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
        """(transitions, episodes, unfinished transitions) of one task, as HistoryRecorder would."""
        vs = self.vsteps
        done = (self.terminated[task, :vs] | self.truncated[task, :vs]).T  # (N, V)
        ends_env, ends_v = np.nonzero(done)
        starts = np.zeros_like(ends_v)
        for e in range(self.n_envs):
            sel = ends_env == e
            starts[sel] = np.concatenate([[0], ends_v[sel][:-1] + 1])
        order = np.lexsort((ends_env, ends_v))  # by finishing step, ties by env index
        ends_env, ends_v, starts = ends_env[order], ends_v[order], starts[order]
        last = np.full(self.n_envs, -1)
        for e in range(self.n_envs):
            sel = ends_v[ends_env == e]
            last[e] = sel.max() if len(sel) else -1
        unfinished = int(((vs - 1) - last).sum())

        eps: dict[str, list] = {name: [] for name in EPISODE_FIELDS}
        kept: dict[str, list[np.ndarray]] = {name: [] for name in TRANSITION_FIELDS}
        rows = 0
        for i, (e, s, end) in enumerate(zip(ends_env, starts, ends_v, strict=True)):
            span = slice(s, end + 1)
            rewards = self.reward[task, span, e]
            warm = self.warmup[span]
            n = end + 1 - s
            keep = i % k == 0
            eps["return"].append(float(rewards.sum()))
            eps["length"].append(n)
            eps["env_index"].append(e)
            eps["end_vstep"].append(end)
            eps["warmup_steps"].append(int(warm.sum()))
            eps["kept"].append(keep)
            eps["first_row"].append(rows if keep else -1)
            if keep:
                kept["obs"].append(self.obs[task, span, e])
                kept["action"].append(self.action[task, span, e])
                kept["mean_action"].append(self.mean_action[task, span, e])
                kept["reward"].append(rewards.astype(np.float32))
                kept["next_obs"].append(self.next_obs[task, span, e])
                kept["terminated"].append(self.terminated[task, span, e])
                kept["truncated"].append(self.truncated[task, span, e])
                kept["episode"].append(np.full(n, i, np.int64))
                kept["step"].append(np.arange(n, dtype=np.int32))
                kept["warmup"].append(warm)
                rows += n
        trans = {}
        for name, (dtype, dim) in TRANSITION_FIELDS.items():
            width = {"obs": (self.obs_dim,), "act": (self.act_dim,), None: ()}[dim]
            parts = kept[name]
            trans[name] = (
                np.concatenate(parts).astype(dtype, copy=False)
                if parts
                else np.zeros((0, *width), dtype=dtype)
            )
        episodes = {
            name: np.asarray(eps[name], dtype=dtype) for name, dtype in EPISODE_FIELDS.items()
        }
        return trans, episodes, unfinished
