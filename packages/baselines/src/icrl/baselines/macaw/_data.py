"""MACAW's per-task buffers: transitions with Monte-Carlo returns-to-go and terminal bootstraps.

For an episode of length ``T`` (steps ``t = 0..T-1``) the official ``ReplayBuffer.add_trajectory``
stores ``G_t = Σ_{k=t}^{T-1} γ^{k-t} r_k`` (``mc_rewards``), ``d_t = γ^{T-t}``
(``terminal_discounts``) and ``s_T = next_obs_{T-1}`` (``terminal_obs``); the value target is
``G_t + d_t V(s_T)``. Deviation (documented in the README): when an episode ended by a *true*
termination (``terminated``), ``d_t`` is 0 by default because a terminal state has no future
reward; ``official_terminal_bootstrap=True`` restores the official behaviour (bootstrap anyway).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class MacawBuffer:
    """One task's transitions as tensors; actions are normalised to [-1, 1]."""

    obs: torch.Tensor
    """(N, obs_dim) float32."""
    action: torch.Tensor
    """(N, act_dim) float32, mapped from the env's action box to [-1, 1]."""
    reward: torch.Tensor
    """(N,) float32."""
    next_obs: torch.Tensor
    """(N, obs_dim) float32."""
    terminal_obs: torch.Tensor
    """(N, obs_dim) float32: the last next_obs of the transition's episode (s_T)."""
    terminal_discount: torch.Tensor
    """(N,) float32: γ^(T−t), or 0 after a true termination (unless official bootstrap)."""
    mc_return: torch.Tensor
    """(N,) float32: discounted reward-to-go G_t inside the episode."""
    terminated: torch.Tensor
    """(N,) bool: the episode this transition belongs to ended by true termination."""

    def __len__(self) -> int:
        return int(self.obs.shape[0])

    def index(self, idx: Any) -> MacawBuffer:
        """The sub-buffer at `idx` (a slice or an index array)."""
        return MacawBuffer(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def to(self, device: torch.device | str) -> MacawBuffer:
        """This buffer on `device`."""
        return MacawBuffer(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    @staticmethod
    def concat(buffers: list[MacawBuffer]) -> MacawBuffer:
        """Concatenate buffers of the same task (e.g. episodes collected online)."""
        if not buffers:
            raise ValueError("MacawBuffer.concat needs at least one buffer")
        return MacawBuffer(
            **{
                f.name: torch.cat([getattr(b, f.name) for b in buffers])
                for f in fields(MacawBuffer)
            }
        )


def episode_ends(episode: np.ndarray, terminated: np.ndarray, truncated: np.ndarray) -> np.ndarray:
    """Bool (T,): transition t is the last one of its episode.

    An episode ends at a terminated/truncated flag or where the episode index changes; the last
    transition of the array always closes its episode (an unfinished final episode is treated as
    truncated there, i.e. bootstrapped from its last next_obs).
    """
    n = len(episode)
    end = np.asarray(terminated, bool) | np.asarray(truncated, bool)
    if n:
        end[:-1] |= episode[1:] != episode[:-1]
        end[-1] = True
    return end


def returns_to_go(
    reward: np.ndarray,
    end: np.ndarray,
    terminated: np.ndarray,
    gamma: float,
    *,
    official_terminal_bootstrap: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(G, d, last)``: reward-to-go, terminal discount and the index of each row's episode end.

    `end[t]` marks the last transition of an episode; `terminated` is read at that transition.
    """
    n = len(reward)
    g = np.zeros(n, dtype=np.float64)
    d = np.zeros(n, dtype=np.float64)
    last = np.zeros(n, dtype=np.int64)
    running, disc, cur_last, no_boot = 0.0, 1.0, n - 1, False
    for t in range(n - 1, -1, -1):
        if end[t]:
            running, disc, cur_last = 0.0, 1.0, t
            no_boot = bool(terminated[t]) and not official_terminal_bootstrap
        running = float(reward[t]) + gamma * running
        disc *= gamma
        g[t], d[t], last[t] = running, (0.0 if no_boot else disc), cur_last
    return g, d, last


def _normalise_actions(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    low, high = np.broadcast_to(low, action.shape[-1:]), np.broadcast_to(high, action.shape[-1:])
    if not np.all(np.isfinite(low) & np.isfinite(high) & (high > low)):
        raise ValueError(
            f"action bounds must be finite with high > low, got low={low}, high={high}"
        )
    return (action - (high + low) / 2) / ((high - low) / 2)


def build_macaw_buffer(
    obs: np.ndarray,
    action: np.ndarray,
    reward: np.ndarray,
    next_obs: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    episode: np.ndarray | None = None,
    *,
    gamma: float = 0.99,
    skip: int = 1,
    action_low: np.ndarray | float = -1.0,
    action_high: np.ndarray | float = 1.0,
    official_terminal_bootstrap: bool = False,
    source: str = "arrays",
) -> MacawBuffer:
    """A task's buffer from its transitions in time order (one learning run or online episodes).

    Returns-to-go are computed on the full episode stream first; then every `skip`-th row is kept
    (official ``buffer_skip = 7``, starting at row 0 as the official loader does with size −1).
    `source` names the data in error messages.
    """
    obs, next_obs = np.asarray(obs, np.float32), np.asarray(next_obs, np.float32)
    action, reward = np.asarray(action, np.float32), np.asarray(reward, np.float64)
    terminated, truncated = np.asarray(terminated, bool), np.asarray(truncated, bool)
    n = len(obs)
    if n == 0:
        raise ValueError(f"{source}: no transitions to build a MACAW buffer from")
    for name, arr, nd in (
        ("obs", obs, 2),
        ("action", action, 2),
        ("next_obs", next_obs, 2),
        ("reward", reward, 1),
        ("terminated", terminated, 1),
        ("truncated", truncated, 1),
    ):
        if arr.ndim != nd or len(arr) != n:
            raise ValueError(
                f"{source}: field {name!r} has shape {arr.shape}; expected {nd}-d with {n} rows "
                "(one per transition)"
            )
    if next_obs.shape != obs.shape:
        raise ValueError(f"{source}: next_obs shape {next_obs.shape} != obs shape {obs.shape}")
    if skip < 1:
        raise ValueError(f"skip must be >= 1, got {skip}")
    if not (0.0 <= gamma <= 1.0):
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    episode = np.zeros(n, np.int64) if episode is None else np.asarray(episode)
    if episode.shape != (n,):
        raise ValueError(f"{source}: field 'episode' has shape {episode.shape}; expected ({n},)")
    ends = episode_ends(episode, terminated, truncated)
    g, d, last = returns_to_go(
        reward, ends, terminated, gamma, official_terminal_bootstrap=official_terminal_bootstrap
    )
    keep = slice(None, None, skip)

    def t(a: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a[keep])).to(dtype)

    return MacawBuffer(
        obs=t(obs),
        action=t(_normalise_actions(action, np.asarray(action_low), np.asarray(action_high))),
        reward=t(reward),
        next_obs=t(next_obs),
        terminal_obs=t(next_obs[last]),
        terminal_discount=t(d),
        mc_return=t(g),
        terminated=t(terminated[last], torch.bool),
    )


def buffer_from_history(
    history: Any,
    *,
    gamma: float = 0.99,
    skip: int = 1,
    action_low: np.ndarray | float = -1.0,
    action_high: np.ndarray | float = 1.0,
    official_terminal_bootstrap: bool = False,
    source: str = "history",
) -> MacawBuffer:
    """A buffer from an ``icrl.histories.History`` (any object with its array fields)."""
    return build_macaw_buffer(
        history.obs,
        history.action,
        history.reward,
        history.next_obs,
        history.terminated,
        history.truncated,
        history.episode,
        gamma=gamma,
        skip=skip,
        action_low=action_low,
        action_high=action_high,
        official_terminal_bootstrap=official_terminal_bootstrap,
        source=source,
    )


def sample_batch(
    buf: MacawBuffer, n: int, rng: np.random.Generator, *, contiguous: bool = False
) -> MacawBuffer:
    """`n` rows: consecutive (official inner batch) or uniform without replacement.

    A buffer with at most `n` rows is returned whole (the official sampler would fail there; this
    happens at test time after the first online episodes).
    """
    size = len(buf)
    if size <= n:
        return buf
    if contiguous:
        start = int(rng.integers(0, size - n + 1))
        return buf.index(slice(start, start + n))
    idx = torch.as_tensor(rng.choice(size, size=n, replace=False))
    # one copy to the buffer's device, not one per field inside index()
    return buf.index(idx.to(buf.obs.device))
