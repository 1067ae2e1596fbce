"""The one interface both backbones implement."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor, nn


class SequenceModel(nn.Module, ABC):
    """A causal sequence backbone: (B, L, D) -> (B, L, D), plus token-by-token stepping.

    `forward` is the training path. `init_state(batch)` returns a fresh inference state and
    `step(x_t, state)` consumes one token per sequence, returning its output and the state;
    stepping over a sequence from `init_state` reproduces `forward` on it. States are updated in
    place (the returned state is the same object), so they can live in static CUDA-graph buffers.
    """

    d_model: int

    @abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        """Causal outputs (B, L, D) for inputs (B, L, D)."""

    @abstractmethod
    def init_state(
        self,
        batch: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **kwargs: Any,
    ) -> Any:
        """A fresh (empty-context) inference state for `batch` sequences."""

    @abstractmethod
    def step(self, x_t: Tensor, state: Any) -> tuple[Tensor, Any]:
        """Advance every sequence by one token: x_t (B, D) -> (y_t (B, D), state)."""

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def position_parameters(self) -> int:
        """Parameters in a learned position table, which grows with the context rather than the
        model (parameter counts meant to compare models leave it out); none by default."""
        return 0

    def _param_device(self) -> torch.device:
        return next(self.parameters()).device

    def _check_input(self, x: Tensor, ndim: int, what: str) -> None:
        if x.dim() != ndim or x.shape[-1] != self.d_model:
            shape = "(B, L, D)" if ndim == 3 else "(B, D)"
            raise ValueError(
                f"{type(self).__name__}.{what}: expected a {shape} tensor with "
                f"D = d_model = {self.d_model}, got shape {tuple(x.shape)}"
            )

    def _check_step_input(self, x_t: Tensor, state_batch: int) -> None:
        """x_t must be (B, D) with B the batch the state was made for."""
        self._check_input(x_t, 2, "step")
        if state_batch != x_t.shape[0]:
            raise ValueError(
                f"{type(self).__name__}.step: state is for batch {state_batch}, x_t has batch "
                f"{x_t.shape[0]}; make the state with init_state({x_t.shape[0]})"
            )
