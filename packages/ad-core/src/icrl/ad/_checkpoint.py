"""Checkpoints: atomic writes, discovery in a run directory, and loading a model for evaluation."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from ._config import ADConfig
from ._model import ADModel, NormStats

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "icrl.ad/checkpoint-1"
_NAME = re.compile(r"^step_(\d{9})\.pt$")


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or does not fit what it is used with."""


def atomic_write_bytes(path: Path, write) -> None:
    """Call write(file) on a temporary file next to `path`, fsync it, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def checkpoint_path(run_dir: Path, step: int) -> Path:
    """Where the checkpoint of `step` lives in a run directory."""
    return Path(run_dir) / "checkpoints" / f"step_{step:09d}.pt"


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write a checkpoint atomically (a crash never leaves a truncated file under its name)."""
    atomic_write_bytes(path, lambda f: torch.save({"format": CHECKPOINT_FORMAT, **payload}, f))


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint in a run directory, oldest first."""
    d = Path(run_dir) / "checkpoints"
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint of a run directory, or None."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint file, or the newest checkpoint of a run directory."""
    path = Path(path)
    if path.is_dir():
        newest = latest_checkpoint(path)
        if newest is None:
            raise CheckpointError(f"run directory {path} holds no checkpoints/step_*.pt")
        path = newest
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # torch raises several unrelated types for a bad file
        raise CheckpointError(f"checkpoint {path} cannot be read: {err}") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not an icrl.ad checkpoint (expected format {CHECKPOINT_FORMAT!r})"
        )
    ckpt["path"] = str(path)
    return ckpt


def load_model(path: Path, device: str | torch.device = "cpu") -> tuple[ADModel, dict[str, Any]]:
    """Rebuild the trained ADModel from a checkpoint (file or run directory), in eval mode.

    Returns the model and the checkpoint's metadata (config, data info, step, path).
    """
    ckpt = load_checkpoint(path)
    cfg = ADConfig.model_validate(ckpt["config"]["model"])
    info = ckpt["data"]
    model = ADModel(
        cfg, info["obs_dim"], info["act_dim"], NormStats.from_dict(ckpt["norm"]), ckpt["max_len"]
    )
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    meta = {k: ckpt[k] for k in ("config", "data", "norm", "step", "max_len", "path")}
    return model, meta
