"""The paper's "Decision Transformer" baseline: a pre-norm causal transformer with a KV cache."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ._base import SequenceModel
from ._config import TransformerConfig
from ._kernels import flash_kernels, require_flash_kernels


@dataclass
class TransformerState:
    """KV cache of a transformer backbone (updated in place by `step`).

    k, v: (n_layers, B, capacity, n_heads, head_dim); pos: 0-d int64 tensor, the number of
    tokens consumed (the same for every sequence: all sequences advance in lock-step);
    length: the same count as a Python int. With graph_safe=True `step` never reads `length`
    and attends over the whole capacity with a mask, so it can be captured in a CUDA graph.
    """

    k: Tensor
    v: Tensor
    pos: Tensor
    length: int = 0
    graph_safe: bool = False

    @property
    def capacity(self) -> int:
        """Most tokens this cache can hold."""
        return self.k.shape[2]

    def zero_(self) -> TransformerState:
        """Forget every sequence's context (in place)."""
        self.k.zero_()
        self.v.zero_()
        self.pos.zero_()
        self.length = 0
        return self


# Eager decoding attends over a key length that grows by one every step. cuDNN attention (which
# PyTorch prefers on H100) builds an execution plan per new shape: measured 52-65 ms per 9-layer
# step there. Graph-safe states use one fixed, masked shape and are not affected.
_DECODE_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


class _Attention(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.n_heads, self.head_dim = config.n_heads, config.head_dim
        self.dropout = config.dropout
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.out = nn.Linear(config.d_model, config.d_model)

    def _qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = self.qkv(x).unflatten(-1, (3, self.n_heads, self.head_dim)).unbind(-3)
        return q, k, v  # (..., H, hd)

    def forward(self, x: Tensor, flash: Any) -> Tensor:
        q, k, v = self._qkv(x)  # (B, L, H, hd)
        p = self.dropout if self.training else 0.0
        if flash is not None and q.dtype in (torch.float16, torch.bfloat16):
            y = flash.flash_attn_func(q, k, v, dropout_p=p, causal=True)
        else:
            y = F.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), dropout_p=p, is_causal=True
            ).transpose(1, 2)
        return self.out(y.flatten(-2))

    def step(
        self, x: Tensor, k_cache: Tensor, v_cache: Tensor, state: TransformerState, flash: Any
    ):
        q, k, v = self._qkv(x)  # (B, H, hd)
        cache_dtype = k_cache.dtype
        q, k, v = q.to(cache_dtype), k.to(cache_dtype), v.to(cache_dtype)
        if flash is not None and cache_dtype in (torch.float16, torch.bfloat16):
            # writes k, v at cache_seqlens in place; causal mask aligned to the cache end
            seqlens = state.pos.to(torch.int32).expand(x.shape[0]).contiguous()
            y = flash.flash_attn_with_kvcache(
                q.unsqueeze(1),
                k_cache,
                v_cache,
                k.unsqueeze(1),
                v.unsqueeze(1),
                cache_seqlens=seqlens,
                causal=True,
            )[:, 0]
            return self.out(y.flatten(-2).to(x.dtype))
        if state.graph_safe:
            k_cache.index_copy_(1, state.pos.view(1), k.unsqueeze(1))
            v_cache.index_copy_(1, state.pos.view(1), v.unsqueeze(1))
            keys, values = k_cache, v_cache
            mask = (torch.arange(k_cache.shape[1], device=x.device) <= state.pos).view(1, 1, 1, -1)
        else:
            t = state.length
            k_cache[:, t] = k
            v_cache[:, t] = v
            keys, values, mask = k_cache[:, : t + 1], v_cache[:, : t + 1], None
        # a single query attends to every cached key: no causal mask (SDPA's is_causal is
        # top-left aligned and would let it see only key 0)
        y = F.scaled_dot_product_attention(
            q.unsqueeze(2), keys.transpose(1, 2), values.transpose(1, 2), attn_mask=mask
        )[:, :, 0]
        return self.out(y.flatten(-2).to(x.dtype))


class TransformerBlock(nn.Module):
    """Pre-norm block: h <- h + attn(ln1(h)); h <- h + mlp(ln2(h))."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.d_model, eps=config.norm_eps)
        self.attn = _Attention(config)
        self.ln2 = nn.LayerNorm(config.d_model, eps=config.norm_eps)
        self.mlp = nn.Sequential(
            nn.Linear(config.d_model, config.d_ff),
            nn.GELU(),
            nn.Linear(config.d_ff, config.d_model),
        )
        self.drop = nn.Dropout(config.dropout)


class TransformerBackbone(SequenceModel):
    """Causal transformer with learned absolute positions; SDPA or flash-attn attention."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.d_model = config.d_model
        if config.backend == "flash-attn":
            require_flash_kernels()
        self.pos_emb = nn.Embedding(config.max_len, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(TransformerBlock(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model, eps=config.norm_eps)
        self.apply(self._init_weights)
        with torch.no_grad():  # GPT-2: residual projections scaled by 1/sqrt(2 * depth)
            for layer in self.layers:
                layer.attn.out.weight.mul_((2 * config.n_layers) ** -0.5)
                layer.mlp[2].weight.mul_((2 * config.n_layers) ** -0.5)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def _flash(self, x: Tensor) -> Any:
        if self.config.backend == "sdpa" or not x.is_cuda:
            if self.config.backend == "flash-attn":
                raise ValueError(
                    "backend='flash-attn' runs on CUDA tensors only; move the model and inputs to "
                    "a CUDA device, or build it with backend='auto' or 'sdpa'"
                )
            return None
        return require_flash_kernels() if self.config.backend == "flash-attn" else flash_kernels()

    def position_parameters(self) -> int:
        """Parameters in the position table (they grow with max_len, not with the model)."""
        return self.pos_emb.weight.numel()

    def forward(self, x: Tensor) -> Tensor:
        """Causal outputs (B, L, D) for inputs (B, L, D); L <= max_len."""
        self._check_input(x, 3, "forward")
        length = x.shape[1]
        if length > self.config.max_len:
            raise ValueError(
                f"TransformerBackbone.forward: sequence length {length} exceeds max_len="
                f"{self.config.max_len}; build the model with a larger TransformerConfig.max_len"
            )
        flash = self._flash(x)
        h = self.drop(x + self.pos_emb.weight[:length])
        for layer in self.layers:
            h = h + layer.drop(layer.attn(layer.ln1(h), flash))
            h = h + layer.drop(layer.mlp(layer.ln2(h)))
        return self.ln_f(h)

    def init_state(
        self,
        batch: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        capacity: int | None = None,
        graph_safe: bool = False,
        **kwargs: Any,
    ) -> TransformerState:
        """Empty KV cache for `batch` sequences of up to `capacity` (default max_len) tokens.

        dtype defaults to the parameters' dtype; pass torch.bfloat16 when stepping under bf16
        autocast. graph_safe=True makes `step` capturable in a CUDA graph (it then attends over
        the whole capacity, masked, instead of the filled prefix).
        """
        capacity = self.config.max_len if capacity is None else capacity
        if not 1 <= capacity <= self.config.max_len:
            raise ValueError(
                f"TransformerBackbone.init_state: capacity={capacity} must be in "
                f"[1, max_len={self.config.max_len}]"
            )
        device = self._param_device() if device is None else device
        dtype = self.pos_emb.weight.dtype if dtype is None else dtype
        shape = (len(self.layers), batch, capacity, self.config.n_heads, self.config.head_dim)
        return TransformerState(
            k=torch.zeros(shape, device=device, dtype=dtype),
            v=torch.zeros(shape, device=device, dtype=dtype),
            pos=torch.zeros((), device=device, dtype=torch.int64),
            graph_safe=graph_safe,
        )

    def step(self, x_t: Tensor, state: TransformerState) -> tuple[Tensor, TransformerState]:
        """One token per sequence, x_t (B, D) -> (y_t (B, D), KV cache updated in place)."""
        self._check_step_input(x_t, state.k.shape[1])
        if not state.graph_safe and state.length >= state.capacity:
            raise ValueError(
                f"TransformerBackbone.step: the KV cache is full ({state.capacity} tokens); "
                f"make the state with a larger capacity (at most max_len={self.config.max_len})"
            )
        flash = self._flash(x_t)
        # graph-safe states index the table on the device, so a captured graph stays valid
        pos = self.pos_emb(state.pos) if state.graph_safe else self.pos_emb.weight[state.length]
        h = x_t + pos
        growing = x_t.is_cuda and not state.graph_safe
        with sdpa_kernel(_DECODE_BACKENDS) if growing else contextlib.nullcontext():
            for i, layer in enumerate(self.layers):
                h = h + layer.attn.step(layer.ln1(h), state.k[i], state.v[i], state, flash)
                h = h + layer.mlp(layer.ln2(h))
        state.pos.add_(1)
        state.length += 1
        return self.ln_f(h), state
