"""Checkpoints: atomic writes, discovery in a run directory, and loading a model for evaluation."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from icrl.histories.runtime import atomic_write, config_changes

from ._config import ADConfig, TrainConfig
from ._model import ADModel, NormStats

__all__ = [
    "CHECKPOINT_FORMAT",
    "DATA_RECORD",
    "MOVABLE_FIELDS",
    "CheckpointError",
    "check_belongs",
    "config_diff",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_model",
    "load_weights",
    "record_data",
    "run_diff",
    "same_data",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "icrl.ad/checkpoint-1"
_NAME = re.compile(r"^step_(\d{9})\.pt$")


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or does not fit what it is used with."""


def checkpoint_path(run_dir: Path, step: int) -> Path:
    """Where the checkpoint of `step` lives in a run directory."""
    return Path(run_dir) / "checkpoints" / f"step_{step:09d}.pt"


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write a checkpoint atomically (a crash never leaves a truncated file under its name)."""

    def write(p: Path) -> None:
        # Through a Python file object: a full disk is then an OSError, which the CLI reports in
        # one line (torch's own writer, given a path, raises RuntimeError "iostream error").
        with open(p, "wb") as f:
            torch.save({"format": CHECKPOINT_FORMAT, **payload}, f)

    atomic_write(path, write)


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


def _unreadable(path: Path, err: Exception) -> CheckpointError:
    """A plain account of why torch cannot read `path`: truncated, or not a checkpoint at all.

    torch writes a zip archive whose directory sits at the end of the file, so a file cut short
    (by a copy or a full disk) has no end record; torch's own error then varies ("[Errno 22]
    Invalid argument", "failed finding central directory", "Ran out of input").
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(2)
    whole = zipfile.is_zipfile(path)
    if not size:
        what = "it is empty (0 bytes)"
    elif head == b"PK" and not whole:
        what = f"it is truncated ({size} bytes, the end of its zip archive is missing)"
    elif not whole:
        what = f"it is not a torch checkpoint ({size} bytes, no zip archive; torch says: {err})"
    else:
        what = f"it is corrupt ({size} bytes; torch says: {err})"
    if path.parent.name == "checkpoints":
        advice = f"restore it, or use an older checkpoint of its run ({path.parent})"
    else:
        advice = "restore it, or use another checkpoint"
    return CheckpointError(f"checkpoint {path} cannot be read: {what}; {advice}")


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint file, or the newest checkpoint of a run directory.

    A run directory's checkpoint must have been written by the run of its config.json.
    """
    path = Path(path)
    run_dir = None
    if path.is_dir():
        newest = latest_checkpoint(path)
        if newest is None:
            raise CheckpointError(f"run directory {path} holds no checkpoints/step_*.pt")
        path, run_dir = newest, path
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # torch raises several unrelated types for a bad file
        raise _unreadable(path, err) from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not an icrl.ad checkpoint (expected format {CHECKPOINT_FORMAT!r})"
        )
    ckpt["path"] = str(path)
    if run_dir is not None:
        check_belongs(ckpt, run_dir)
    return ckpt


def config_diff(a: Any, b: Any) -> set[str]:
    """Dotted names of the fields where two nested config dicts differ (a field one side lacks
    counts as None: runtime.config_changes)."""
    return {c.field for c in config_changes(a, b)}


MOVABLE_FIELDS = frozenset({"progress", "tensorboard", "data.num_workers", "data.paths"})
"""Fields that may differ between a run's config.json, its checkpoints and a resuming config: how
the run is displayed and where its input files lie, not what it computes. A run directory copied
to another machine (another absolute path for its histories) resumes; that the moved histories
are the same data is checked on resume by their normalisation statistics (see `train`)."""


def run_diff(a: Any, b: Any) -> set[str]:
    """`config_diff` without MOVABLE_FIELDS: the fields in which two runs really differ."""
    return {c.field for c in config_changes(a, b, may_change=MOVABLE_FIELDS)}


DATA_RECORD = "data.json"
"""A run directory's record of its training data: the normalisation statistics it was trained
with, the fingerprint that lets its histories move (MOVABLE_FIELDS) but not change."""


def record_data(run_dir: Path, norm: dict[str, Any]) -> None:
    """Write `run_dir/data.json` with the run's normalisation statistics (atomically)."""
    text = json.dumps({"norm": norm}, indent=1, sort_keys=True)
    atomic_write(Path(run_dir) / DATA_RECORD, text)


def same_data(run_dir: Path, norm: dict[str, Any] | None) -> bool:
    """Whether `norm` is the statistics recorded in `run_dir/data.json` (False without one)."""
    path = Path(run_dir) / DATA_RECORD
    if norm is None or not path.is_file():
        return False
    try:
        recorded = json.loads(path.read_text())["norm"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return False
    # Through JSON both ways: tuples and lists, and floats, compare as stored.
    return json.loads(json.dumps(norm, sort_keys=True)) == recorded


def current_config_form(saved: Any) -> Any:
    """A saved training config dict as this version writes it, so that a run written by an
    older icrl.ad (a model section with both backbones' fields, a field added since with its
    default) compares by what it computes; as it is when it no longer validates (the comparison
    then names the fields)."""
    try:
        return TrainConfig.model_validate(saved).model_dump(mode="json")
    except ValueError:
        return saved


def check_belongs(ckpt: dict[str, Any], run_dir: Path) -> None:
    """Refuse a checkpoint that another run wrote (e.g. a transformer's copied into a Mamba run):
    resuming or evaluating it under this run's name would silently mix two runs."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        return
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON ({err}); restore it") from err
    # Both in this version's form: a resumed old run's config.json is rewritten in it, while
    # its older checkpoints keep the form they were written in.
    saved, written = current_config_form(saved), current_config_form(ckpt.get("config"))
    diff = sorted(run_diff(saved, written))
    # A run moved with its histories keeps its data; another run on other histories does not.
    moved = "data.paths" in config_diff(saved, written)
    if not diff and moved and not same_data(run_dir, ckpt.get("norm")):
        diff = ["data.paths (other histories: their normalisation statistics differ)"]
    if diff:
        raise CheckpointError(
            f"checkpoint {ckpt['path']} was written by another run than {path} (fields {diff} "
            f"differ, e.g. model.backbone {_at(written, 'model.backbone')!r} vs "
            f"{_at(saved, 'model.backbone')!r}); move it out of {run_dir}, or evaluate the "
            "file itself"
        )


def _at(d: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


def load_model(path: Path, device: str | torch.device = "cpu") -> tuple[ADModel, dict[str, Any]]:
    """Rebuild the trained ADModel from a checkpoint (file or run directory), in eval mode.

    Returns the model and the checkpoint's metadata (config, data info, step, path).
    """
    ckpt = load_checkpoint(path)
    try:
        cfg = ADConfig.model_validate(ckpt["config"]["model"])
        info = ckpt["data"]
        norm = NormStats.from_dict(ckpt["norm"])
        model = ADModel(cfg, info["obs_dim"], info["act_dim"], norm, ckpt["max_len"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(
            f"checkpoint {ckpt['path']} lacks or has an invalid entry ({type(err).__name__}: "
            f"{err}); it was written by another version or edited; retrain it"
        ) from err
    load_weights(model, ckpt)
    model.to(device).eval()
    meta = {k: ckpt[k] for k in ("config", "data", "norm", "step", "max_len", "path")}
    return model, meta


def load_weights(model: torch.nn.Module, ckpt: dict[str, Any]) -> None:
    """`model.load_state_dict(ckpt["model"])`, refusing weights that do not fit the model that
    the checkpoint's own config builds (an edited config, or weights of another model)."""
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError) as err:
        first = str(err).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        detail = detail if len(detail) <= 300 else detail[:297] + "..."
        model_cfg = ckpt.get("config", {}).get("model", {})
        raise CheckpointError(
            f"checkpoint {ckpt.get('path')}: its weights do not fit the model its config "
            f"describes (backbone={model_cfg.get('backbone')!r}, d_model="
            f"{model_cfg.get('d_model')}, n_layers={model_cfg.get('n_layers')}): {detail}; the "
            "file was edited or mixes two runs; retrain, or use another checkpoint"
        ) from err
