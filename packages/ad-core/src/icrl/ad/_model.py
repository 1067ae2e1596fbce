"""The AD model: normalise a token, embed each component, run the backbone, predict the action."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from icrl.seqmodels import CudaGraphStep, MambaConfig, TransformerConfig, build_backbone

from ._config import ADConfig
from ._tokens import HistoryLike, TokenLayout

__all__ = ["ADModel", "NormStats", "backbone_config", "compute_norm_stats"]

_STD_FLOOR = 1e-3  # constant features (e.g. a fixed joint) would otherwise blow up
# A Gaussian head's log-std lives in [LOG_STD_MIN, LOG_STD_MAX] (actions are in [-1, 1]): a soft
# bound keeps the likelihood finite on near-deterministic targets without killing gradients.
LOG_STD_MIN, LOG_STD_MAX = -5.0, 1.0


@dataclass(frozen=True)
class NormStats:
    """Observation and reward normalisation from the training data (stored in checkpoints)."""

    obs_mean: tuple[float, ...]
    obs_std: tuple[float, ...]
    reward_mean: float
    reward_std: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NormStats:
        """Inverse of to_dict."""
        return cls(
            obs_mean=tuple(d["obs_mean"]),
            obs_std=tuple(d["obs_std"]),
            reward_mean=float(d["reward_mean"]),
            reward_std=float(d["reward_std"]),
        )


def compute_norm_stats(histories: Iterable[HistoryLike]) -> NormStats:
    """Mean and std of observations (obs and next_obs) and rewards over every transition."""
    n = 0
    obs_sum = obs_sq = None
    r_sum = r_sq = 0.0
    for h in histories:
        both = np.concatenate([h.obs, h.next_obs]).astype(np.float64)
        obs_sum = both.sum(0) if obs_sum is None else obs_sum + both.sum(0)
        obs_sq = (both**2).sum(0) if obs_sq is None else obs_sq + (both**2).sum(0)
        r = np.asarray(h.reward, dtype=np.float64)
        r_sum += r.sum()
        r_sq += (r**2).sum()
        n += len(r)
    if n == 0 or obs_sum is None or obs_sq is None:
        raise ValueError("cannot compute normalisation statistics from no transitions")
    obs_mean = obs_sum / (2 * n)
    obs_std = np.sqrt(np.maximum(obs_sq / (2 * n) - obs_mean**2, 0.0))
    r_mean = r_sum / n
    r_std = float(np.sqrt(max(r_sq / n - r_mean**2, 0.0)))
    return NormStats(
        obs_mean=tuple(float(x) for x in obs_mean),
        obs_std=tuple(float(x) for x in np.maximum(obs_std, _STD_FLOOR)),
        reward_mean=float(r_mean),
        reward_std=max(r_std, _STD_FLOOR),
    )


def backbone_config(cfg: ADConfig, max_len: int | None) -> MambaConfig | TransformerConfig:
    """The icrl.seqmodels config this AD model builds: `cfg.backbone` itself, a transformer's
    with `max_len` (ADConfig.max_len, or the length training sized from its data; the
    checkpoint records it)."""
    if isinstance(cfg.backbone, MambaConfig):
        return cfg.backbone
    if max_len is None:
        raise ValueError("a transformer backbone needs max_len (model.max_len or the data's)")
    return replace(cfg.backbone, max_len=max_len)


class ADModel(nn.Module):
    """Maps tokens (B, L, F) to predicted actions (B, L, act_dim); `step` does one token at a time.

    Normalisation statistics are buffers, so they travel in the state dict. Each token component
    (previous obs, action, reward, next obs, current obs, flags) has its own linear embedding of
    width `embed_dim`; the concatenation is projected to d_model.
    """

    def __init__(
        self, cfg: ADConfig, obs_dim: int, act_dim: int, norm: NormStats, max_len: int | None
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.layout = TokenLayout(obs_dim, act_dim)
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self._slices = self.layout.slices
        self.embed = nn.ModuleDict(
            {name: nn.Linear(s.stop - s.start, cfg.embed_dim) for name, s in self._slices.items()}
        )
        d_model = cfg.backbone.d_model
        self.proj = nn.Linear(len(self._slices) * cfg.embed_dim, d_model)
        self.backbone = build_backbone(backbone_config(cfg, max_len))
        self.norm_out = nn.LayerNorm(d_model)
        self.gaussian = cfg.action_head == "gaussian"
        self.head = nn.Linear(d_model, act_dim * (2 if self.gaussian else 1))
        self._set_norm(norm)

    def _set_norm(self, norm: NormStats) -> None:
        if len(norm.obs_mean) != self.obs_dim:
            raise ValueError(
                f"normalisation stats have obs dim {len(norm.obs_mean)}, model has {self.obs_dim}"
            )
        mean = torch.zeros(self.layout.width)
        std = torch.ones(self.layout.width)
        om = torch.tensor(norm.obs_mean, dtype=torch.float32)
        os_ = torch.tensor(norm.obs_std, dtype=torch.float32)
        for name in ("prev_obs", "prev_next_obs", "obs"):
            mean[self._slices[name]], std[self._slices[name]] = om, os_
        mean[self._slices["prev_reward"]] = norm.reward_mean
        std[self._slices["prev_reward"]] = norm.reward_std
        # Noise goes on the transition and observation, never on the two flags.
        noise_mask = torch.ones(self.layout.width)
        noise_mask[self._slices["flags"]] = 0.0
        self.register_buffer("feat_mean", mean)
        self.register_buffer("feat_std", std)
        self.register_buffer("noise_mask", noise_mask)

    def norm_stats(self) -> NormStats:
        """The normalisation statistics held in the buffers."""
        s = self._slices
        return NormStats(
            obs_mean=tuple(self.feat_mean[s["obs"]].tolist()),
            obs_std=tuple(self.feat_std[s["obs"]].tolist()),
            reward_mean=float(self.feat_mean[s["prev_reward"]]),
            reward_std=float(self.feat_std[s["prev_reward"]]),
        )

    def embed_tokens(self, feats: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """(…, F) raw features -> (…, d_model) backbone inputs; `noise` (…, F) is added after
        normalisation (training only)."""
        x = (feats - self.feat_mean) / self.feat_std
        if noise is not None:
            x = x + noise * self.noise_mask
        parts = [self.embed[name](x[..., s]) for name, s in self._slices.items()]
        return self.proj(torch.cat(parts, dim=-1))

    def split(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The head's output (…, act_dim or 2·act_dim) as (action mean, log-std or None)."""
        if not self.gaussian:
            return out, None
        mean, raw = out.split(self.act_dim, dim=-1)
        log_std = LOG_STD_MIN + (LOG_STD_MAX - LOG_STD_MIN) * torch.sigmoid(raw.float())
        return mean, log_std

    def forward(self, feats: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """The head's output for tokens (B, L, F): predicted actions (B, L, act_dim), or with a
        Gaussian head their mean and raw log-std (B, L, 2·act_dim); `split` separates them."""
        y = self.backbone(self.embed_tokens(feats, noise))
        return self.head(self.norm_out(y))

    def init_state(self, batch: int, device: torch.device | None = None) -> Any:
        """Fresh recurrent state (Mamba state / KV cache) for `batch` rollouts."""
        return self.backbone.init_state(batch, device=device)

    def step(self, feats_t: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """One token per rollout (B, F) -> the head's output (as `forward`) and the new state."""
        y, state = self.backbone.step(self.embed_tokens(feats_t), state)
        return self.head(self.norm_out(y)), state

    def graph_stepper(
        self, batch: int, max_tokens: int | None = None, autocast_dtype: torch.dtype | None = None
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """`step` for `batch` fresh rollouts with the backbone's step replayed as one CUDA graph.

        A single-token backbone step is bound by kernel launches (tens per layer), so the graph
        removes most of its cost; the embedding and head stay eager. The returned function keeps
        its own state: (B, F) tokens -> (B, act_dim) actions. `max_tokens` bounds the tokens per
        rollout (the transformer's KV cache, default max_len); `autocast_dtype` must match the
        autocast the caller runs under (the graph replays what was captured).
        """
        capacity = None
        if isinstance(self.backbone.config, TransformerConfig):
            capacity = max_tokens or self.backbone.config.max_len
        # The static input takes the embedding's dtype under autocast (bf16), as in eager `step`
        # and in training: an fp32 buffer would give Mamba an fp32 residual stream instead.
        graph = CudaGraphStep(
            self.backbone,
            batch,
            input_dtype=autocast_dtype,
            autocast_dtype=autocast_dtype,
            capacity=capacity,
        )

        def step(feats_t: torch.Tensor) -> torch.Tensor:
            return self.head(self.norm_out(graph(self.embed_tokens(feats_t))))

        return step
