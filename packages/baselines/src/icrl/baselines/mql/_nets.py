"""MQL networks: a GRU context encoder, the TD3 actor and the twin critic.

Shapes follow the official code (``models/networks.py`` with ``only_concat_context=3``): the
context is the final hidden state of a one-layer GRU run over the last H tuples
``(a_k, r_k, s_k)``; the actor and the critic each own a GRU (the critic's is shared by Q1, Q2).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def context_dim(obs_dim: int, act_dim: int) -> int:
    """Width of one history entry: action, reward, observation."""
    return act_dim + 1 + obs_dim


class ContextGRU(nn.Module):
    """One-layer GRU over a (B, H, |A|+1+|S|) history; returns the last hidden state (B, h)."""

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.gru = nn.GRU(in_dim, hidden, num_layers=1, batch_first=True)

    def forward(self, hist: torch.Tensor) -> torch.Tensor:
        _, h_n = self.gru(hist)
        return h_n[-1]


def _mlp(in_dim: int, hidden: Sequence[int], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.ReLU()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class Actor(nn.Module):
    """Deterministic policy ``tanh(MLP([s, z]))`` with actions in [-1, 1]."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], gru_hidden: int) -> None:
        super().__init__()
        self.context = ContextGRU(context_dim(obs_dim, act_dim), gru_hidden)
        self.net = _mlp(obs_dim + gru_hidden, hidden, act_dim)

    def forward(self, obs: torch.Tensor, hist: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(torch.cat([obs, self.context(hist)], dim=-1)))


class TwinCritic(nn.Module):
    """Two Q heads ``MLP([s, a, z])`` sharing one context GRU."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], gru_hidden: int) -> None:
        super().__init__()
        self.context = ContextGRU(context_dim(obs_dim, act_dim), gru_hidden)
        self.q1 = _mlp(obs_dim + act_dim + gru_hidden, hidden, 1)
        self.q2 = _mlp(obs_dim + act_dim + gru_hidden, hidden, 1)

    def forward(
        self, obs: torch.Tensor, act: torch.Tensor, hist: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([obs, act, self.context(hist)], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)

    def q1_only(self, obs: torch.Tensor, act: torch.Tensor, hist: torch.Tensor) -> torch.Tensor:
        """Q1 alone, for the actor loss."""
        x = torch.cat([obs, act, self.context(hist)], dim=-1)
        return self.q1(x).squeeze(-1)
