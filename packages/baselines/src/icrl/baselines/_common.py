"""Small helpers shared by the baselines: atomic writes, seeding, device choice."""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch


def atomic_write(path: Path, write: Callable[[Path], None], *, overwrite: bool = False) -> None:
    """Write `path` through `write(tmp_path)` then rename, so a reader never sees half a file.

    Refuses to replace an existing file unless `overwrite` is set: nothing on disk is replaced
    silently.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} already exists; remove it or choose another output path "
            "(results are never overwritten silently)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: Path, text: str, *, overwrite: bool = False) -> None:
    """Write a text file atomically (see `atomic_write`)."""
    atomic_write(path, lambda p: p.write_text(text), overwrite=overwrite)


def atomic_torch_save(obj: Any, path: Path, *, overwrite: bool = False) -> None:
    """`torch.save` to a temporary name in the same folder, then rename onto `path`."""
    atomic_write(path, lambda p: torch.save(obj, p), overwrite=overwrite)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's global and torch's generators (for library code that uses them)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device: str) -> torch.device:
    """`"auto"` picks CUDA when available; anything else is passed to `torch.device`."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} asked for CUDA but no CUDA device is visible; use 'cpu'"
        )
    return dev
