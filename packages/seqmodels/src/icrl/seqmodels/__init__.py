"""Sequence backbones for in-context RL: Mamba and a causal transformer, one interface.

Every backbone maps token features (B, L, D) to causal outputs (B, L, D) with `forward`, and
steps token by token with `init_state(batch)` / `step(x_t, state)` (Mamba: O(1) recurrent
state; transformer: KV cache). Stepping over a sequence reproduces `forward`.

    from icrl.seqmodels import PAPER_CONFIGS, build_backbone
    model = build_backbone(PAPER_CONFIGS["mamba-12m"])      # or MambaConfig(d_model=..., ...)
    y = model(x)                                           # (B, L, D) training path
    state = model.init_state(batch=30)
    y_t, state = model.step(x_t, state)                    # (B, D) per environment step

Mamba uses mamba-ssm's CUDA kernels for CUDA tensors when the `mamba` extra is importable and a
pure-PyTorch reference (identical parameter names) everywhere else; the transformer uses
flash-attn when the `flash` extra is importable and PyTorch SDPA otherwise. `CudaGraphStep`
replays `step` as one CUDA graph for fast batched rollouts.
"""

from ._base import SequenceModel
from ._config import (
    PAPER_CONFIGS,
    PAPER_PARAM_COUNTS,
    MambaConfig,
    TransformerConfig,
)
from ._graph import CudaGraphStep
from ._kernels import KernelUnavailableError, flash_kernels, mamba_kernels
from ._mamba import MambaBackbone, MambaState
from ._scan import linear_scan, selective_scan, ssd_scan
from ._transformer import TransformerBackbone, TransformerState

__all__ = [
    "PAPER_CONFIGS",
    "PAPER_PARAM_COUNTS",
    "CudaGraphStep",
    "KernelUnavailableError",
    "MambaBackbone",
    "MambaConfig",
    "MambaState",
    "SequenceModel",
    "TransformerBackbone",
    "TransformerConfig",
    "TransformerState",
    "build_backbone",
    "flash_kernels",
    "linear_scan",
    "mamba_kernels",
    "selective_scan",
    "ssd_scan",
]


def build_backbone(config: MambaConfig | TransformerConfig) -> SequenceModel:
    """The backbone a config describes (on CPU, float32; move it with `.to(...)`).

    Raises KernelUnavailableError (an ImportError naming the extra to install) when the config
    asks for mamba-ssm or flash-attn explicitly and they cannot be imported here.
    """
    if isinstance(config, MambaConfig):
        return MambaBackbone(config)
    if isinstance(config, TransformerConfig):
        return TransformerBackbone(config)
    raise TypeError(
        f"build_backbone: expected a MambaConfig or TransformerConfig, got {type(config).__name__}"
    )
