"""Mamba backbone: mamba-ssm's parameterisation, its kernels on CUDA, a PyTorch reference elsewhere.

Parameter names and shapes follow mamba-ssm 2.3.2 exactly (`Mamba`: in_proj, conv1d, x_proj,
dt_proj, A_log, D, out_proj; `Mamba2`: in_proj, conv1d, dt_bias, A_log, D, norm.weight,
out_proj), and the block layout follows its `MixerModel` (layers.{i}.norm, layers.{i}.mixer,
norm_f), so a state dict loads into either path, or into mamba-ssm's own modules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._base import SequenceModel
from ._config import MambaConfig
from ._kernels import mamba_kernels, require_mamba_kernels
from ._scan import _acc, selective_scan, ssd_scan


@dataclass
class MambaState:
    """Per-layer recurrent state of a Mamba backbone (updated in place by `step`).

    conv: (n_layers, B, conv_channels, d_conv), the last d_conv inputs of each causal conv;
    ssm: (n_layers, B, d_inner, d_state) for Mamba-1, (n_layers, B, heads, headdim, d_state)
    for Mamba-2.
    """

    conv: Tensor
    ssm: Tensor

    def zero_(self) -> MambaState:
        """Forget every sequence's context (in place)."""
        self.conv.zero_()
        self.ssm.zero_()
        return self


def _init_dt_bias(size: int, dt_min: float = 1e-3, dt_max: float = 0.1, floor: float = 1e-4):
    """mamba-ssm's Δ bias: softplus(bias) log-uniform in [dt_min, dt_max]."""
    dt = torch.exp(torch.rand(size) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
    dt = dt.clamp(min=floor)
    return dt + torch.log(-torch.expm1(-dt))  # inverse softplus


class _KernelDispatch(nn.Module):
    """Chooses, per call, mamba-ssm's kernels (CUDA tensors) or the PyTorch reference."""

    def __init__(self, backend: str, mixer: str) -> None:
        super().__init__()
        self.backend = backend
        self.mixer = mixer
        if backend == "mamba-ssm":
            require_mamba_kernels(mixer)  # fail at build time, naming the extra

    def _kernels(self, x: Tensor):
        if self.backend == "reference" or not x.is_cuda:
            if self.backend == "mamba-ssm":
                raise ValueError(
                    "backend='mamba-ssm' runs on CUDA tensors only; move the model and inputs to "
                    "a CUDA device, or build it with backend='auto' or 'reference'"
                )
            return None
        if self.backend == "mamba-ssm":
            return require_mamba_kernels(self.mixer)
        return mamba_kernels(self.mixer)


class MambaMixer(_KernelDispatch):
    """The Mamba-1 (S6) mixer with mamba-ssm's `Mamba` parameters."""

    def __init__(self, config: MambaConfig) -> None:
        super().__init__(config.backend, "mamba1")
        d, di, n = config.d_model, config.d_inner, config.d_state
        self.d_inner, self.d_state, self.d_conv = di, n, config.d_conv
        self.dt_rank = config.resolved_dt_rank
        self.in_proj = nn.Linear(d, 2 * di, bias=False)
        self.conv1d = nn.Conv1d(di, di, config.d_conv, groups=di, padding=config.d_conv - 1)
        self.x_proj = nn.Linear(di, self.dt_rank + 2 * n, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, di, bias=True)
        std = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        with torch.no_grad():
            self.dt_proj.bias.copy_(_init_dt_bias(di))
        self.dt_proj.bias._no_reinit = True  # type: ignore[attr-defined]
        # S4D-real initialisation: A = -(1..N) for every channel, kept in fp32 as A_log.
        self.A_log = nn.Parameter(
            torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(di, 1)
        )
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D = nn.Parameter(torch.ones(di))
        self.D._no_weight_decay = True  # type: ignore[attr-defined]
        self.out_proj = nn.Linear(di, d, bias=False)

    def state_shapes(self, batch: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Shapes of one layer's (conv, ssm) state."""
        return (batch, self.d_inner, self.d_conv), (batch, self.d_inner, self.d_state)

    def forward(self, u: Tensor) -> Tensor:
        k = self._kernels(u)
        return self._forward_reference(u) if k is None else self._forward_kernels(u, k)

    def _forward_reference(self, u: Tensor) -> Tensor:
        length = u.shape[1]
        x, z = self.in_proj(u).chunk(2, dim=-1)
        x = F.silu(self.conv1d(x.transpose(1, 2))[..., :length]).transpose(1, 2)
        dt, B, C = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(_acc(self.dt_proj(dt)))
        y, _ = selective_scan(x, dt, -torch.exp(_acc(self.A_log)), B, C, self.D)
        y = y.to(z.dtype) * F.silu(z)
        return self.out_proj(y)

    def _forward_kernels(self, u: Tensor, k: Any) -> Tensor:
        # mamba-ssm's Mamba.forward (v2.3.2), without inference_params.
        length = u.shape[1]
        xz = (
            (self.in_proj.weight @ u.reshape(-1, u.shape[-1]).t())
            .reshape(2 * self.d_inner, u.shape[0], length)
            .transpose(0, 1)
        )  # (B, 2*d_inner, L), the layout the kernels expect
        A = -torch.exp(self.A_log.float())
        if k.causal_conv1d_fn is not None:
            return k.mamba_inner_fn(
                xz,
                self.conv1d.weight,
                self.conv1d.bias,
                self.x_proj.weight,
                self.dt_proj.weight,
                self.out_proj.weight,
                self.out_proj.bias,
                A,
                None,
                None,
                self.D.float(),
                delta_bias=self.dt_proj.bias.float(),
                delta_softplus=True,
            )
        x, z = xz.chunk(2, dim=1)
        x = F.silu(self.conv1d(x)[..., :length])
        x_dbl = self.x_proj(x.transpose(1, 2).reshape(-1, self.d_inner))  # (B*L, r+2N)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = (self.dt_proj.weight @ dt.t()).reshape(self.d_inner, -1, length).transpose(0, 1)
        B = B.reshape(-1, length, self.d_state).transpose(1, 2).contiguous()
        C = C.reshape(-1, length, self.d_state).transpose(1, 2).contiguous()
        y = k.selective_scan_fn(
            x,
            dt,
            A,
            B,
            C,
            self.D.float(),
            z=z,
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
        )
        return self.out_proj(y.transpose(1, 2))

    def step(self, u: Tensor, conv_state: Tensor, ssm_state: Tensor) -> Tensor:
        """One token u (B, d_model); updates the states in place; returns (B, d_model)."""
        k = self._kernels(u)
        dtype = u.dtype
        x, z = self.in_proj(u).chunk(2, dim=-1)
        weight = self.conv1d.weight[:, 0, :]  # (d_inner, d_conv)
        if k is not None and k.causal_conv1d_update is not None:
            x = k.causal_conv1d_update(x, conv_state, weight, self.conv1d.bias, "silu")
        else:
            conv_state.copy_(torch.roll(conv_state, shifts=-1, dims=-1))
            conv_state[:, :, -1] = x
            x = torch.sum(conv_state * weight, dim=-1) + self.conv1d.bias
            x = F.silu(x).to(dtype)
        dt, B, C = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, self.dt_proj.weight)  # Δ bias is added inside the update
        A = -torch.exp(_acc(self.A_log))
        if k is not None:
            y = k.selective_state_update(
                ssm_state, x, dt, A, B, C, self.D, z=z, dt_bias=self.dt_proj.bias, dt_softplus=True
            )
        else:
            dt = F.softplus(_acc(dt) + _acc(self.dt_proj.bias))
            decay = torch.exp(dt.unsqueeze(-1) * _acc(A))  # (B, d_inner, N)
            drive = (dt * _acc(x)).unsqueeze(-1) * _acc(B).unsqueeze(1)
            ssm_state.copy_(ssm_state * decay + drive)
            y = torch.einsum("bdn,bn->bd", _acc(ssm_state), _acc(C)) + _acc(self.D) * x
            y = y.to(dtype) * F.silu(z)
        return self.out_proj(y)


class _GatedRMSNorm(nn.Module):
    """mamba-ssm's RMSNormGated with norm_before_gate=False, one group: rms(y * silu(z)) * w."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, y: Tensor, z: Tensor) -> Tensor:
        h = _acc(y) * F.silu(_acc(z))
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return (h * _acc(self.weight)).to(y.dtype)


class Mamba2Mixer(_KernelDispatch):
    """The Mamba-2 (SSD) mixer with mamba-ssm's `Mamba2` parameters (ngroups 1, gated RMSNorm)."""

    def __init__(self, config: MambaConfig) -> None:
        super().__init__(config.backend, "mamba2")
        d, di, n = config.d_model, config.d_inner, config.d_state
        self.d_inner, self.d_state, self.d_conv = di, n, config.d_conv
        self.headdim, self.nheads = config.headdim, di // config.headdim
        self.chunk_size = config.chunk_size
        self.conv_dim = di + 2 * n
        self.in_proj = nn.Linear(d, 2 * di + 2 * n + self.nheads, bias=False)
        self.conv1d = nn.Conv1d(
            self.conv_dim,
            self.conv_dim,
            config.d_conv,
            groups=self.conv_dim,
            padding=config.d_conv - 1,
        )
        self.dt_bias = nn.Parameter(_init_dt_bias(self.nheads))
        self.dt_bias._no_weight_decay = True  # type: ignore[attr-defined]
        self.A_log = nn.Parameter(torch.log(torch.empty(self.nheads).uniform_(1, 16)))
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D = nn.Parameter(torch.ones(self.nheads))
        self.D._no_weight_decay = True  # type: ignore[attr-defined]
        self.norm = _GatedRMSNorm(di)
        self.out_proj = nn.Linear(di, d, bias=False)

    def state_shapes(self, batch: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Shapes of one layer's (conv, ssm) state."""
        return (batch, self.conv_dim, self.d_conv), (batch, self.nheads, self.headdim, self.d_state)

    def _split(self, zxbcdt: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return torch.split(zxbcdt, [self.d_inner, self.conv_dim, self.nheads], dim=-1)

    def forward(self, u: Tensor) -> Tensor:
        batch, length, _ = u.shape
        k = self._kernels(u)
        z, xBC, dt = self._split(self.in_proj(u))
        xBC = F.silu(self.conv1d(xBC.transpose(1, 2))[..., :length].transpose(1, 2))
        x, B, C = torch.split(xBC, [self.d_inner, self.d_state, self.d_state], dim=-1)
        x = x.reshape(batch, length, self.nheads, self.headdim)
        A = -torch.exp(_acc(self.A_log))
        B, C = B.unsqueeze(2), C.unsqueeze(2)  # one group
        if k is not None:
            y = k.mamba_chunk_scan_combined(
                x, dt, A, B, C, self.chunk_size, D=self.D, dt_bias=self.dt_bias, dt_softplus=True
            )
        else:
            dt = F.softplus(_acc(dt) + _acc(self.dt_bias))
            y, _ = ssd_scan(x, dt, A, B, C, self.chunk_size)
            y = y + _acc(self.D)[:, None] * _acc(x)
        y = self.norm(y.reshape(batch, length, self.d_inner).to(z.dtype), z)
        return self.out_proj(y)

    def step(self, u: Tensor, conv_state: Tensor, ssm_state: Tensor) -> Tensor:
        """One token u (B, d_model); updates the states in place; returns (B, d_model)."""
        k = self._kernels(u)
        dtype = u.dtype
        z, xBC, dt = self._split(self.in_proj(u))
        conv_state.copy_(torch.roll(conv_state, shifts=-1, dims=-1))
        conv_state[:, :, -1] = xBC
        xBC = torch.sum(conv_state * self.conv1d.weight[:, 0, :], dim=-1) + self.conv1d.bias
        xBC = F.silu(xBC).to(dtype)
        x, B, C = torch.split(xBC, [self.d_inner, self.d_state, self.d_state], dim=-1)
        x = x.reshape(-1, self.nheads, self.headdim)
        A = -torch.exp(_acc(self.A_log))
        if k is not None:
            p, n = self.headdim, self.d_state
            y = k.selective_state_update(
                ssm_state,
                x,
                dt.unsqueeze(-1).expand(-1, -1, p),
                A[:, None, None].expand(-1, p, n),
                B.unsqueeze(1),
                C.unsqueeze(1),
                self.D[:, None].expand(-1, p),
                dt_bias=self.dt_bias[:, None].expand(-1, p),
                dt_softplus=True,
            )
        else:
            dt = F.softplus(_acc(dt) + _acc(self.dt_bias))  # (B, H)
            decay = torch.exp(dt * _acc(A))[..., None, None]
            drive = torch.einsum("bh,bn,bhp->bhpn", dt, _acc(B), _acc(x))
            ssm_state.copy_(ssm_state * decay + drive)
            y = torch.einsum("bhpn,bn->bhp", _acc(ssm_state), _acc(C))
            y = y + _acc(self.D)[:, None] * _acc(x)
        y = self.norm(y.reshape(-1, self.d_inner).to(dtype), z)
        return self.out_proj(y)


class MambaBlock(nn.Module):
    """mamba-ssm's Block without an MLP: h <- h + mixer(norm(h))."""

    def __init__(self, config: MambaConfig) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        mixer_cls = Mamba2Mixer if config.mixer == "mamba2" else MambaMixer
        self.mixer = mixer_cls(config)


def _rms(norm: nn.RMSNorm, h: Tensor) -> Tensor:
    # As mamba-ssm's Block: the norm runs in its weight's dtype. Under bf16 autocast the residual
    # stream can be bf16 (RMSNorm is not an autocast op) and a bf16 input with fp32 weights
    # leaves torch's fused kernel for a slower composite (with a warning).
    return norm(h.to(norm.weight.dtype))


class MambaBackbone(SequenceModel):
    """A stack of Mamba blocks with a final RMSNorm; see MambaConfig for the backends."""

    def __init__(self, config: MambaConfig) -> None:
        super().__init__()
        self.config = config
        self.d_model = config.d_model
        self.layers = nn.ModuleList(MambaBlock(config) for _ in range(config.n_layers))
        self.norm_f = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        with torch.no_grad():
            # GPT-2 / mamba-ssm: scale each residual branch's output projection by 1/sqrt(depth)
            for layer in self.layers:
                layer.mixer.out_proj.weight.div_(math.sqrt(config.n_layers))

    def forward(self, x: Tensor) -> Tensor:
        """Causal outputs (B, L, D) for inputs (B, L, D)."""
        self._check_input(x, 3, "forward")
        h = x
        for layer in self.layers:
            h = h + layer.mixer(_rms(layer.norm, h))
        return _rms(self.norm_f, h)

    def init_state(
        self,
        batch: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **kwargs: Any,
    ) -> MambaState:
        """Zero state for `batch` sequences; float32 by default (long rollouts)."""
        device = self._param_device() if device is None else device
        dtype = torch.float32 if dtype is None else dtype
        conv_shape, ssm_shape = self.layers[0].mixer.state_shapes(batch)
        n = len(self.layers)
        return MambaState(
            conv=torch.zeros(n, *conv_shape, device=device, dtype=dtype),
            ssm=torch.zeros(n, *ssm_shape, device=device, dtype=dtype),
        )

    def step(self, x_t: Tensor, state: MambaState) -> tuple[Tensor, MambaState]:
        """One token per sequence, x_t (B, D) -> (y_t (B, D), state updated in place)."""
        self._check_step_input(x_t, state.ssm.shape[1])
        h = x_t
        for i, layer in enumerate(self.layers):
            h = h + layer.mixer.step(_rms(layer.norm, h), state.conv[i], state.ssm[i])
        return _rms(self.norm_f, h), state
