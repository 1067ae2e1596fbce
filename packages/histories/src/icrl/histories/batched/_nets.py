"""Networks of many tasks stacked along a leading task dimension (the batched backend's layers).

Every layer is Tianshou's `EnsembleLinear` (weight (members, in, out), bias (members, 1, out),
x @ W + b), with one member per task for the actor and one per (task, critic) for the critics,
so one batched matmul evaluates the networks of all tasks. Each member is initialised like a
`torch.nn.Linear` (U(-1/sqrt(in), 1/sqrt(in)) for weight and bias) from its own task's generator,
so a task's initial weights do not depend on which other tasks share the batch.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tianshou.utils.net.common import EnsembleLinear
from torch import nn

SIGMA_MIN, SIGMA_MAX = -20.0, 2.0
"""Log-std clamp of Tianshou's ContinuousActorProbabilistic."""

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_TANH_EPS = float(np.finfo(np.float32).eps)


def adam_options(lr: float, device: str | torch.device) -> dict[str, float | bool]:
    """Adam's keyword arguments for the stacked networks: the fused kernel on CUDA."""
    return {"lr": lr, "fused": True} if torch.device(device).type == "cuda" else {"lr": lr}


def _init_members(layer: EnsembleLinear, generators: Sequence[torch.Generator]) -> None:
    """Re-initialise each group of members from its task's generator (nn.Linear's distribution)."""
    members, fan_in, _ = layer.weight.shape
    per = members // len(generators)
    k = 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        for t, gen in enumerate(generators):
            rows = slice(t * per, (t + 1) * per)
            for p in (layer.weight, layer.bias_weights):
                assert p is not None
                u = torch.rand(p[rows].shape, generator=gen, dtype=p.dtype)
                p[rows] = (u * 2 * k - k).to(p.device)


class StackedMLP(nn.Module):
    """`members` independent MLPs (ReLU; optional dropout then LayerNorm after each hidden linear).

    Input (members, B, in) -> output (members, B, out). With `layer_norm`, the LayerNorm's affine
    parameters are shared by the `share` consecutive members of one task, as in the reference
    DroQ critic (one `nn.LayerNorm` applied to Tianshou's ensemble output).
    """

    def __init__(
        self,
        members: int,
        sizes: Sequence[int],
        generators: Sequence[torch.Generator],
        dropout: float = 0.0,
        layer_norm: bool = False,
        share: int = 1,
        final_relu: bool = False,
    ) -> None:
        super().__init__()
        self.final_relu = final_relu
        self.layers = nn.ModuleList(
            EnsembleLinear(members, i, o) for i, o in itertools.pairwise(sizes)
        )
        for layer in self.layers:
            _init_members(layer, generators)
        self.dropout, self.share = dropout, share
        self.norms = nn.ParameterList()
        if layer_norm:
            for h in sizes[1:-1]:
                # (task, 1, 1, h): broadcast over the task's `share` members and the batch
                self.norms.append(nn.Parameter(torch.ones(members // share, 1, 1, h)))
                self.norms.append(nn.Parameter(torch.zeros(members // share, 1, 1, h)))

    def params(self) -> list[torch.Tensor]:
        """All parameters in a fixed order (the functional forward's argument)."""
        return list(self.parameters())

    def forward(
        self, x: torch.Tensor, params: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Evaluate with the module's parameters, or with `params` (e.g. detached or a target)."""
        return stacked_mlp(
            x,
            list(self.parameters()) if params is None else list(params),
            n_layers=len(self.layers),
            layer_norm=len(self.norms) > 0,
            dropout=self.dropout if self.training else 0.0,
            share=self.share,
            final_relu=self.final_relu,
        )


def stacked_mlp(
    x: torch.Tensor,
    params: Sequence[torch.Tensor],
    n_layers: int,
    layer_norm: bool,
    dropout: float,
    share: int,
    final_relu: bool = False,
) -> torch.Tensor:
    """Functional StackedMLP: params = [W0, b0, W1, b1, ..., (ln_w0, ln_b0, ...)]."""
    lins, norms = params[: 2 * n_layers], params[2 * n_layers :]
    for i in range(n_layers):
        x = torch.baddbmm(lins[2 * i + 1], x, lins[2 * i])
        if i == n_layers - 1:
            return F.relu(x) if final_relu else x
        if dropout > 0:
            x = F.dropout(x, dropout, training=True)
        if layer_norm:
            m, b, h = x.shape
            y = F.layer_norm(x, (h,)).view(m // share, share, b, h)
            x = (y * norms[2 * i] + norms[2 * i + 1]).view(m, b, h)
        x = F.relu(x)
    return x


class StackedActor(nn.Module):
    """Tianshou's `ContinuousActorProbabilistic(unbounded=True, conditioned_sigma=True)` per task,
    followed by SACPolicy's tanh squashing: trunk MLP, a linear head giving mu and log-sigma."""

    def __init__(
        self,
        n_tasks: int,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int],
        generators: Sequence[torch.Generator],
    ) -> None:
        super().__init__()
        self.act_dim = act_dim
        self.trunk = StackedMLP(n_tasks, [obs_dim, *hidden], generators, final_relu=True)
        self.mu = EnsembleLinear(n_tasks, hidden[-1], act_dim)
        self.sigma = EnsembleLinear(n_tasks, hidden[-1], act_dim)
        _init_members(self.mu, generators)
        _init_members(self.sigma, generators)

    def forward(
        self, obs: torch.Tensor, noise: torch.Tensor | None = None, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """obs (T, B, obs_dim) -> (tanh-squashed action (T, B, A), log-prob (T, B)).

        `noise` (T, B, A) replaces the standard-normal draw of the reparameterised sample.
        """
        mu, log_sigma = self._heads(obs)
        return self._squashed(mu, log_sigma, noise, deterministic)

    def sample_and_mean(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the action `forward(obs)` samples, the deterministic action tanh(mu)), one pass."""
        mu, log_sigma = self._heads(obs)
        return self._squashed(mu, log_sigma, None, False)[0], torch.tanh(mu)

    def _heads(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(obs)
        return self.mu(h), torch.clamp(self.sigma(h), SIGMA_MIN, SIGMA_MAX)

    def _squashed(
        self,
        mu: torch.Tensor,
        log_sigma: torch.Tensor,
        noise: torch.Tensor | None,
        deterministic: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if deterministic:
            u = mu
            eps = torch.zeros_like(mu)
        else:
            eps = torch.randn_like(mu) if noise is None else noise
            u = mu + eps * log_sigma.exp()
        # Normal(mu, sigma).log_prob(u) with (u - mu) / sigma = eps, summed over action dims
        log_prob = (-0.5 * eps.pow(2) - log_sigma - _LOG_SQRT_2PI).sum(-1)
        act = torch.tanh(u)
        log_prob = log_prob - torch.log(1 - act.pow(2) + _TANH_EPS).sum(-1)
        return act, log_prob


class StackedCritics(nn.Module):
    """`n_critics` Q(s, a) networks per task, members ordered (task, critic): Q (T, C, B)."""

    def __init__(
        self,
        n_tasks: int,
        n_critics: int,
        in_dim: int,
        hidden: Sequence[int],
        generators: Sequence[torch.Generator],
        dropout: float = 0.0,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        self.n_tasks, self.n_critics = n_tasks, n_critics
        self.net = StackedMLP(
            n_tasks * n_critics,
            [in_dim, *hidden, 1],
            generators,
            dropout=dropout,
            layer_norm=layer_norm,
            share=n_critics,
        )

    def forward(
        self,
        obs: torch.Tensor,
        act: torch.Tensor,
        params: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """obs (T, B, O), act (T, B, A) -> Q (T, C, B)."""
        t, b = obs.shape[:2]
        x = torch.cat([obs, act], -1)
        x = x.unsqueeze(1).expand(t, self.n_critics, b, x.shape[-1]).reshape(-1, b, x.shape[-1])
        q = self.net(x, params)
        return q.view(t, self.n_critics, b)
