"""Multi-task replay for MQL with histories built on the fly from flat transitions.

The official code stores each sample's whole history in Python lists; we store flat
transitions, written one whole episode at a time so an episode is contiguous in the ring, and
gather the last H entries ``(a_k, r_k, s_k)``, ``k < t``, at sampling time. Entries from before
the episode start are zeros (as the official zero padding), so the history of step t never sees
step t or anything after it, and ``next_hist[t] == hist[t + 1]`` inside an episode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from icrl.histories.runtime import atomic_write


class MultiTaskReplay:
    """Ring buffer of transitions of several tasks plus, per task, its last `snapshot` indices.

    The per-task snapshot plays the role of the official ``MultiTasksSnapshot`` (the last 2000
    transitions of each train task): the propensity classifier's meta-task samples come from it.
    """

    _ARRAYS = ("obs", "act", "rew", "next_obs", "terminated", "task", "episode", "step", "gidx")

    def __init__(
        self,
        capacity: int,
        obs_dim: int,
        act_dim: int,
        hist_len: int,
        n_tasks: int = 1,
        snapshot: int = 2000,
    ) -> None:
        if capacity < 1 or hist_len < 1 or n_tasks < 1 or snapshot < 1:
            raise ValueError(
                f"MultiTaskReplay: capacity ({capacity}), hist_len ({hist_len}), n_tasks "
                f"({n_tasks}) and snapshot ({snapshot}) must all be >= 1"
            )
        self.capacity, self.hist_len = capacity, hist_len
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.act = np.zeros((capacity, act_dim), np.float32)
        self.rew = np.zeros(capacity, np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        self.task = np.zeros(capacity, np.int32)
        self.episode = np.full(capacity, -1, np.int64)
        self.step = np.zeros(capacity, np.int32)
        # global write counter of the transition in each slot: tells stale snapshot indices
        self.gidx = np.full(capacity, -1, np.int64)
        self.snap = np.full((n_tasks, snapshot), -1, np.int64)
        self.snap_count = np.zeros(n_tasks, np.int64)
        self.written = 0  # transitions ever written
        self.episodes = 0  # episodes ever written

    def __len__(self) -> int:
        return min(self.written, self.capacity)

    def add_episode(
        self,
        obs: np.ndarray,
        act: np.ndarray,
        rew: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        task: int,
    ) -> None:
        """Append one episode (arrays of length T, in time order) of task index `task`."""
        n = len(rew)
        if n == 0:
            return
        if n > self.capacity:
            raise ValueError(f"episode of {n} steps does not fit a buffer of {self.capacity}")
        g = self.written + np.arange(n)
        slots = g % self.capacity
        self.obs[slots], self.act[slots], self.rew[slots] = obs, act, rew
        self.next_obs[slots], self.terminated[slots] = next_obs, terminated
        self.task[slots], self.episode[slots] = task, self.episodes
        self.step[slots], self.gidx[slots] = np.arange(n), g
        size = self.snap.shape[1]
        pos = (self.snap_count[task] + np.arange(n)) % size
        self.snap[task, pos[-size:]] = g[-size:]
        self.snap_count[task] += n
        self.written += n
        self.episodes += 1

    def sample_indices(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """`n` slot indices drawn uniformly with replacement."""
        if len(self) == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        return rng.integers(0, len(self), size=n)

    def snapshot_indices(self, task: int) -> np.ndarray:
        """Slots of the last `snapshot` transitions of `task` still held in the ring."""
        g = self.snap[task]
        g = g[g >= 0]
        slots = g % self.capacity
        return slots[self.gidx[slots] == g]

    def histories(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(hist, next_hist), each (n, H, |A|+1+|S|), for the transitions at slots `idx`.

        ``hist`` holds steps t-H..t-1 of the same episode, ``next_hist`` steps t-H+1..t;
        entries before the episode start are zeros.
        """
        offs = np.arange(self.hist_len, -1, -1)  # H, ..., 1, 0
        src = (idx[:, None] - offs[None, :]) % self.capacity
        valid = (offs[None, :] <= self.step[idx][:, None]) & (
            self.episode[src] == self.episode[idx][:, None]
        )
        ent = np.concatenate(
            [self.act[src], self.rew[src][..., None], self.obs[src]], axis=-1
        ) * valid[..., None].astype(np.float32)
        return ent[:, :-1], ent[:, 1:]

    def batch_arrays(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """Arrays for a TD3 update on the transitions at slots `idx`."""
        hist, next_hist = self.histories(idx)
        return {
            "obs": self.obs[idx],
            "act": self.act[idx],
            "rew": self.rew[idx],
            "next_obs": self.next_obs[idx],
            "not_done": 1.0 - self.terminated[idx],
            "hist": hist,
            "next_hist": next_hist,
        }

    def batch(self, idx: np.ndarray, device: torch.device | str) -> dict[str, torch.Tensor]:
        """Tensors on `device` for a TD3 update on the transitions at slots `idx`."""
        return {k: torch.as_tensor(v, device=device) for k, v in self.batch_arrays(idx).items()}

    # -- persistence ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything needed to rebuild the buffer exactly."""
        n = len(self)
        state = {k: getattr(self, k)[:n] for k in self._ARRAYS}
        state.update(
            snap=self.snap,
            snap_count=self.snap_count,
            counters=np.array([self.written, self.episodes, self.capacity, self.hist_len]),
        )
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore from :meth:`state_dict` into a buffer built with the same shapes."""
        written, episodes, capacity, hist_len = (int(x) for x in state["counters"])
        if (capacity, hist_len) != (self.capacity, self.hist_len):
            raise ValueError(
                f"replay state has capacity {capacity}, hist_len {hist_len}; this buffer has "
                f"{self.capacity}, {self.hist_len}: resume with the config that wrote it"
            )
        for k in self._ARRAYS:
            arr = state[k]
            getattr(self, k)[: len(arr)] = arr
        self.snap[...] = state["snap"]
        self.snap_count[...] = state["snap_count"]
        self.written, self.episodes = written, episodes

    def save(self, path: Path) -> None:
        """Write the buffer atomically to `path` (.npz), replacing an older save."""
        state = self.state_dict()

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a name
                np.savez(f, **state)

        atomic_write(path, write, overwrite=True)

    def load(self, path: Path) -> None:
        """Read a buffer written by :meth:`save`."""
        with np.load(path) as data:
            self.load_state_dict({k: data[k] for k in data.files})
