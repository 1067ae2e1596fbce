"""Per-task replay buffers kept on the learner's device as (n_tasks, capacity, dim) tensors.

All tasks take the same number of env steps, so every task's buffer holds the same number of
transitions and one `torch.rand` draws every task's indices at once: uniform with replacement over
the stored transitions, as Tianshou's `VectorReplayBuffer.sample` (sub-buffers picked in
proportion to their lengths, then uniformly within). With capacity C and N envs it overwrites the
oldest step when full, like a VectorReplayBuffer of C split into N rings of C / N.
"""

from __future__ import annotations

import numpy as np
import torch

from icrl.histories.batched._sac import Batch


class TaskReplay:
    """Replay memory of T tasks; a row holds obs, act, rew, next_obs, terminated."""

    def __init__(
        self, n_tasks: int, capacity: int, obs_dim: int, act_dim: int, device: str | torch.device
    ) -> None:
        self.n_tasks, self.capacity = n_tasks, capacity
        self.obs_dim, self.act_dim = obs_dim, act_dim
        width = 2 * obs_dim + act_dim + 2
        # one tensor, so a vector step is one host-to-device copy and one scatter
        self.data = torch.zeros(n_tasks, capacity, width, device=device)
        self.ptr = 0
        self.size = 0
        self.size_t = torch.zeros((), device=device)
        """The fill level as a device tensor (read inside CUDA graphs)."""
        self._task = torch.arange(n_tasks, device=device).view(n_tasks, 1)

    @staticmethod
    def pack(
        obs: np.ndarray,
        act: np.ndarray,
        rew: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
    ) -> np.ndarray:
        """Concatenate (rows, ...) numpy fields into the buffer's row layout (float32)."""
        n = len(rew)
        return np.concatenate(
            [
                obs.reshape(n, -1),
                act.reshape(n, -1),
                rew.reshape(n, 1),
                next_obs.reshape(n, -1),
                terminated.reshape(n, 1),
            ],
            axis=1,
            dtype=np.float32,
        )

    def add(self, rows: torch.Tensor) -> None:
        """Append one vector step: rows (T, N, width) already on the device."""
        n = rows.shape[1]
        if self.capacity % n:
            raise ValueError(f"capacity {self.capacity} must be a multiple of n_envs {n}")
        self.data[:, self.ptr : self.ptr + n] = rows
        self.ptr = (self.ptr + n) % self.capacity
        self.size = min(self.size + n, self.capacity)
        self.size_t.fill_(self.size)

    def sample(self, batch_size: int) -> Batch:
        """batch_size transitions per task, uniform with replacement (graph-capturable)."""
        u = torch.rand(self.n_tasks, batch_size, device=self.data.device)
        idx = torch.minimum((u * self.size_t).long(), self.size_t.long() - 1)
        rows = self.data[self._task, idx]  # (T, B, width)
        o, a = self.obs_dim, self.act_dim
        return Batch(
            obs=rows[..., :o],
            act=rows[..., o : o + a],
            rew=rows[..., o + a],
            next_obs=rows[..., o + a + 1 : 2 * o + a + 1],
            terminated=rows[..., -1],
        )
