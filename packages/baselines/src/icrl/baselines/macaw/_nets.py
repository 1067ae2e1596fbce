"""MACAW's networks: weight-transform layers and the MLPs built from them.

Follows ``eric-mitchell/macaw`` ``src/nn.py`` (classes ``WLinear`` and ``MLP``): every linear layer
is a *weight-transform* layer whose weight and bias are produced from a learned latent vector ``z``
by a linear map, so one inner gradient step changes a layer's weight by up to rank ``latent_dim``
instead of rank one.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class WLinear(nn.Module):
    """Weight-transform linear layer: ``θ = fc(z)``; ``W = θ[:d_in·d_out].view(d_in, d_out)``,
    ``b = θ[d_in·d_out:]``; ``y = x @ W + b``.

    ``z ~ N(0, 1/d_out²)`` and ``fc`` uses PyTorch's default ``nn.Linear`` init, as the official
    code. Parameters: ``latent + (latent + 1)·(d_in·d_out + d_out)``.
    """

    def __init__(self, in_features: int, out_features: int, latent_dim: int = 100) -> None:
        super().__init__()
        if min(in_features, out_features, latent_dim) < 1:
            raise ValueError(
                f"WLinear sizes must be >= 1, got in={in_features}, out={out_features}, "
                f"latent={latent_dim}"
            )
        self.in_features, self.out_features = in_features, out_features
        self.z = nn.Parameter(torch.empty(latent_dim).normal_(0.0, 1.0 / out_features))
        self.fc = nn.Linear(latent_dim, in_features * out_features + out_features)

    def weight_and_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The effective ``(W (d_in, d_out), b (d_out,))`` of this layer."""
        theta = self.fc(self.z)
        n_w = self.in_features * self.out_features
        return theta[:n_w].view(self.in_features, self.out_features), theta[n_w:]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.weight_and_bias()
        return x @ w + b


def _linear(d_in: int, d_out: int, weight_transform: bool, latent_dim: int) -> nn.Module:
    return WLinear(d_in, d_out, latent_dim) if weight_transform else nn.Linear(d_in, d_out)


class MacawMLP(nn.Module):
    """``widths = [in] + hidden + [out]`` with ReLU between layers, optional tanh on the output,
    and an optional advantage head.

    The advantage head (official ``extra_head_layers=[32, 1]``) reads the *pre-activation* output
    ``h`` of the last hidden layer and the action: ``Â(s, a) = L2(ReLU(L1(ReLU([h, a]))))`` with
    ``L1: (hidden + out) → head_hidden`` and ``L2: head_hidden → 1``.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: Sequence[int] = (100, 100, 100),
        *,
        tanh_output: bool = False,
        advantage_head: Sequence[int] | None = None,
        weight_transform: bool = True,
        latent_dim: int = 100,
    ) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("MacawMLP needs at least one hidden layer (hidden=() given)")
        widths = [in_dim, *hidden, out_dim]
        self.layers = nn.ModuleList(
            _linear(a, b, weight_transform, latent_dim) for a, b in itertools.pairwise(widths)
        )
        self.tanh_output = tanh_output
        self.head: nn.ModuleList | None = None
        if advantage_head is not None:
            head_widths = [widths[-2] + out_dim, *advantage_head, 1]
            self.head = nn.ModuleList(
                _linear(a, b, weight_transform, latent_dim)
                for a, b in itertools.pairwise(head_widths)
            )

    def _out(self, y: torch.Tensor) -> torch.Tensor:
        return torch.tanh(y) if self.tanh_output else y

    def forward(
        self, x: torch.Tensor, actions: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Output ``(B, out)``; with `actions` and a head, also the advantage ``(B, 1)``."""
        h = self.layers[0](x)
        for layer in self.layers[1:-1]:
            h = layer(F.relu(h))
        y = self._out(self.layers[-1](F.relu(h)))
        if actions is None or self.head is None:
            return y
        a = torch.cat((h, actions), dim=-1)
        for layer in self.head:
            a = layer(F.relu(a))
        return y, a
