"""Lazy, cached probes for the optional CUDA kernels (mamba-ssm, causal-conv1d, flash-attn).

Nothing here is imported at package import time: a missing or broken kernel never breaks
``import icrl.seqmodels``. Asking for a kernel explicitly raises an ImportError naming the extra.
"""

from __future__ import annotations

import functools
import importlib
from types import SimpleNamespace

import torch

MAMBA_EXTRA_HINT = (
    "install the extra on a CUDA machine: `pip install 'icrl-seqmodels[mamba]'` (mamba-ssm ships "
    "only an sdist; build it with --no-build-isolation, see packages/seqmodels/README.md), or use "
    "backend='auto' / 'reference'"
)
FLASH_EXTRA_HINT = (
    "install the extra on a CUDA machine: `pip install 'icrl-seqmodels[flash]'` "
    "(flash-attn, built with --no-build-isolation), or use backend='auto' / 'sdpa'"
)


class KernelUnavailableError(ImportError):
    """An optional CUDA kernel was asked for explicitly but cannot be imported here."""


@functools.cache
def _probe_mamba() -> tuple[SimpleNamespace | None, str]:
    """Import mamba-ssm's Mamba-1 kernels; return (namespace or None, reason when None)."""
    if not torch.cuda.is_available():
        return None, "no CUDA device is available (mamba-ssm's kernels are CUDA/Triton only)"
    try:
        # mamba-ssm's own import of the compiled scan must see torch's libraries first.
        importlib.import_module("selective_scan_cuda")
        ssi = importlib.import_module("mamba_ssm.ops.selective_scan_interface")
        ssu = importlib.import_module("mamba_ssm.ops.triton.selective_state_update")
    except (ImportError, OSError) as exc:  # OSError: a compiled .so built for another torch
        return None, f"mamba-ssm is not importable ({type(exc).__name__}: {exc})"
    ns = SimpleNamespace(
        selective_scan_fn=ssi.selective_scan_fn,
        mamba_inner_fn=ssi.mamba_inner_fn,
        selective_state_update=ssu.selective_state_update,
        causal_conv1d_fn=None,
        causal_conv1d_update=None,
    )
    try:
        cc = importlib.import_module("causal_conv1d")
        ns.causal_conv1d_fn, ns.causal_conv1d_update = cc.causal_conv1d_fn, cc.causal_conv1d_update
    except (ImportError, OSError):
        pass  # optional: mamba-ssm's unfused path (torch conv1d + selective scan) is used instead
    return ns, ""


@functools.cache
def _probe_mamba2() -> tuple[SimpleNamespace | None, str]:
    """Import mamba-ssm's Triton-only Mamba-2 kernels (the compiled scan is not needed)."""
    if not torch.cuda.is_available():
        return None, "no CUDA device is available (mamba-ssm's kernels are CUDA/Triton only)"
    import sys
    import types

    try:
        importlib.import_module("selective_scan_cuda")
    except (ImportError, OSError):
        # mamba_ssm/__init__ imports the compiled Mamba-1 scan unconditionally; Mamba-2's
        # kernels are Triton and never call it, so an empty stand-in lets them import.
        sys.modules.setdefault("selective_scan_cuda", types.ModuleType("selective_scan_cuda"))
    try:
        ssd = importlib.import_module("mamba_ssm.ops.triton.ssd_combined")
        ssu = importlib.import_module("mamba_ssm.ops.triton.selective_state_update")
    except (ImportError, OSError) as exc:
        return None, f"mamba-ssm is not importable ({type(exc).__name__}: {exc})"
    return (
        SimpleNamespace(
            mamba_chunk_scan_combined=ssd.mamba_chunk_scan_combined,
            selective_state_update=ssu.selective_state_update,
        ),
        "",
    )


@functools.cache
def _probe_flash() -> tuple[SimpleNamespace | None, str]:
    """Import flash-attn's attention functions."""
    if not torch.cuda.is_available():
        return None, "no CUDA device is available (flash-attn is CUDA only)"
    try:
        fa = importlib.import_module("flash_attn")
    except (ImportError, OSError) as exc:
        return None, f"flash-attn is not importable ({type(exc).__name__}: {exc})"
    return (
        SimpleNamespace(
            flash_attn_func=fa.flash_attn_func, flash_attn_with_kvcache=fa.flash_attn_with_kvcache
        ),
        "",
    )


def mamba_kernels(mixer: str = "mamba1") -> SimpleNamespace | None:
    """mamba-ssm's kernels for `mixer` if importable on this machine, else None."""
    return (_probe_mamba2() if mixer == "mamba2" else _probe_mamba())[0]


def flash_kernels() -> SimpleNamespace | None:
    """flash-attn's functions if importable on this machine, else None."""
    return _probe_flash()[0]


def require_mamba_kernels(mixer: str = "mamba1") -> SimpleNamespace:
    """mamba-ssm's kernels, or a KernelUnavailableError that says why and names the extra."""
    ns, why = _probe_mamba2() if mixer == "mamba2" else _probe_mamba()
    if ns is None:
        raise KernelUnavailableError(
            f"backend='mamba-ssm' was requested but {why}; {MAMBA_EXTRA_HINT}"
        )
    return ns


def require_flash_kernels() -> SimpleNamespace:
    """flash-attn's functions, or a KernelUnavailableError that says why and names the extra."""
    ns, why = _probe_flash()
    if ns is None:
        raise KernelUnavailableError(
            f"backend='flash-attn' was requested but {why}; {FLASH_EXTRA_HINT}"
        )
    return ns
