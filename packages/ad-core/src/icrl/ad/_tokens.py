"""Token layout: one token per step, holding the previous transition and the current observation.

The output at step t predicts a_t = f(h_{t-1}, o_t) (paper Eq. 6). The paper's token is the
transition c = (s, a, r, s'); at an episode boundary the observation the model must act on (a reset
state) is not the s' of the previous transition, so token t carries both:

    [ s_{t-1} | a_{t-1} | r_{t-1} | s'_{t-1} | o_t | episode_start_t | no_previous_t ]

`episode_start_t` is 1 when o_t is the first observation of an episode; `no_previous_t` is 1 when
no transition precedes step t (the first step of a learning history or of an evaluation rollout;
the previous-transition slots are then zero). A training window that starts inside a history keeps
the real previous transition, as the recorded data has it.

The same arrays are produced offline from a recorded history (`history_tokens`) and online, one
step at a time, by the evaluator (`TokenBuilder`); a test proves they agree exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

__all__ = ["HistoryLike", "RewardAblation", "TokenBuilder", "TokenLayout", "history_tokens"]

RewardAblation = Literal["none", "zero"]
"""What the model sees of rewards in its context: "none" the rewards, "zero" a reward of 0 at
every step (a *blinded* model: it cannot tell a good episode from a bad one)."""


class HistoryLike(Protocol):
    """The arrays of an icrl.histories.History that tokens are built from."""

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    step: np.ndarray


@dataclass(frozen=True)
class TokenLayout:
    """Where each component sits in a token's feature vector."""

    obs_dim: int
    act_dim: int

    @property
    def slices(self) -> dict[str, slice]:
        """Component name -> slice of the feature vector, in order."""
        o, a = self.obs_dim, self.act_dim
        widths = {
            "prev_obs": o,
            "prev_action": a,
            "prev_reward": 1,
            "prev_next_obs": o,
            "obs": o,
            "flags": 2,
        }
        out, start = {}, 0
        for name, w in widths.items():
            out[name] = slice(start, start + w)
            start += w
        return out

    @property
    def width(self) -> int:
        """Length of one token's feature vector."""
        return 3 * self.obs_dim + self.act_dim + 3


def history_tokens(
    h: HistoryLike, start: int = 0, stop: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Tokens and action targets for steps [start, stop) of a recorded history.

    Returns (features (L, F) float32, targets (L, act_dim) float32). Token i predicts
    action[start + i]; its previous transition is transition start + i - 1 of the history.
    """
    n = len(h.reward)
    stop = n if stop is None else stop
    if not 0 <= start < stop <= n:
        raise ValueError(f"token range [{start}, {stop}) is outside a history of {n} steps")
    obs_dim, act_dim = h.obs.shape[1], h.action.shape[1]
    layout = TokenLayout(obs_dim, act_dim)
    sl = layout.slices
    length = stop - start
    feats = np.zeros((length, layout.width), dtype=np.float32)
    lo = max(start - 1, 0)  # previous transitions available for this range
    first = 1 if start == 0 else 0  # token 0 has no previous transition iff start == 0
    prev = slice(lo, stop - 1)
    feats[first:, sl["prev_obs"]] = h.obs[prev]
    feats[first:, sl["prev_action"]] = h.action[prev]
    feats[first:, sl["prev_reward"]] = np.asarray(h.reward[prev], dtype=np.float32)[:, None]
    feats[first:, sl["prev_next_obs"]] = h.next_obs[prev]
    feats[:, sl["obs"]] = h.obs[start:stop]
    flags = feats[:, sl["flags"]]
    flags[:, 0] = np.asarray(h.step[start:stop]) == 0
    if first:
        flags[0, 1] = 1.0
    targets = np.ascontiguousarray(h.action[start:stop], dtype=np.float32)
    return feats, targets


class TokenBuilder:
    """Builds the same tokens online for a batch of environments, one step at a time.

    Per step: `token(obs, episode_start)` gives the (B, F) input for acting on `obs`; after the env
    step, `record(action, reward, next_obs)` stores the transition that the next token will carry.
    """

    def __init__(
        self, batch: int, obs_dim: int, act_dim: int, reward_ablation: RewardAblation = "none"
    ) -> None:
        self.layout = TokenLayout(obs_dim, act_dim)
        self.blind = reward_ablation == "zero"
        self._prev = np.zeros((batch, self.layout.width), dtype=np.float32)
        self._has_prev = np.zeros(batch, dtype=bool)
        self._pending_obs: np.ndarray | None = None

    def token(self, obs: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        """The token for acting on `obs` (B, obs_dim); `episode_start` (B,) marks reset states."""
        sl = self.layout.slices
        feats = self._prev.copy()
        feats[~self._has_prev] = 0.0
        feats[:, sl["obs"]] = obs
        feats[:, sl["flags"].start] = np.asarray(episode_start, dtype=np.float32)
        feats[:, sl["flags"].start + 1] = (~self._has_prev).astype(np.float32)
        self._pending_obs = np.asarray(obs, dtype=np.float32).copy()
        return feats

    def record(self, action: np.ndarray, reward: np.ndarray, next_obs: np.ndarray) -> None:
        """Store the transition (obs of the last token, action, reward, next_obs) of every env."""
        if self._pending_obs is None:
            raise RuntimeError("TokenBuilder.record called before token()")
        sl = self.layout.slices
        self._prev[:, sl["prev_obs"]] = self._pending_obs
        self._prev[:, sl["prev_action"]] = action
        reward = np.asarray(reward, dtype=np.float32)
        self._prev[:, sl["prev_reward"]] = 0.0 if self.blind else reward[:, None]
        self._prev[:, sl["prev_next_obs"]] = next_obs
        self._has_prev[:] = True
        self._pending_obs = None
