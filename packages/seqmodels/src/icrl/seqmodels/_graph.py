"""Replay a backbone's `step` as one CUDA graph (static input, output and state buffers)."""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from ._base import SequenceModel


class CudaGraphStep:
    """`model.step` for a fixed batch, captured once and replayed per token.

    Small backbones' single-token steps are bound by kernel-launch overhead (tens of kernels per
    layer); replaying them as one CUDA graph removes it. The state lives in static buffers owned
    by this object (`self.state`); `reset()` empties it. Each call returns the same static output
    tensor, overwritten by the next call: copy it if you keep it.
    """

    def __init__(
        self,
        model: SequenceModel,
        batch: int,
        *,
        input_dtype: torch.dtype | None = None,
        state_dtype: torch.dtype | None = None,
        autocast_dtype: torch.dtype | None = None,
        capacity: int | None = None,
        warmup: int = 3,
    ) -> None:
        device = next(model.parameters()).device
        if device.type != "cuda":
            raise ValueError(
                f"CudaGraphStep needs the model on a CUDA device, it is on {device}; "
                "call model.step directly on CPU"
            )
        self.model = model
        kwargs = {"graph_safe": True}
        if capacity is not None:
            kwargs["capacity"] = capacity
        self.state = model.init_state(batch, device=device, dtype=state_dtype, **kwargs)
        dtype = input_dtype or next(model.parameters()).dtype
        self.x = torch.zeros(batch, model.d_model, device=device, dtype=dtype)
        self._autocast_dtype = autocast_dtype
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.no_grad(), self._autocast():
            for _ in range(warmup):  # Triton kernels compile here, outside the capture
                model.step(self.x, self.state)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.no_grad(), self._autocast():
            self.y, _ = model.step(self.x, self.state)
        self.reset()

    def _autocast(self):
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self._autocast_dtype, cache_enabled=False)

    def reset(self) -> None:
        """Empty every sequence's context."""
        self.state.zero_()

    def __call__(self, x_t: Tensor) -> Tensor:
        """Advance every sequence by one token: x_t (B, D) -> y_t (B, D) (a static buffer)."""
        self.x.copy_(x_t)
        self.graph.replay()
        return self.y
