"""Run plumbing shared by icrl's packages: atomic file writes, device and seed handling,
--config/--set parsing, validation-error formatting.

icrl.histories is the lowest package that icrl.ad, icrl.baselines and icrl.apps all depend on, so
each of these protocols is written once here and the others import it (docs/architecture.md,
"Shared run plumbing"). Callers keep their own wording where their users see it: the functions
take the label that names the setting or file in a message.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = [
    "DeviceError",
    "atomic_write",
    "check_device",
    "fsync_dir",
    "resolve_device",
    "seed_everything",
]


# -- atomic writes -------------------------------------------------------------------------------


def atomic_write(
    path: str | os.PathLike[str],
    data: bytes | str | Callable[[Path], object],
    *,
    overwrite: bool = True,
    tmp: str | os.PathLike[str] | None = None,
) -> Path:
    """Write `path` so that no reader, and no crash, ever sees half a file; returns `path`.

    `data` is the file's bytes, its text (UTF-8), or a function that writes the file whose path it
    is given (`lambda p: torch.save(obj, p)`). The file is written under a temporary name in the
    same directory (`tmp`, else a fresh `.NAME.<random>.tmp`), fsynced, renamed onto `path`, and
    the directory is fsynced. On any failure, Ctrl-C included, the temporary file is removed and
    `path` is left as it was. With `overwrite=False` an existing `path` is refused
    (FileExistsError): nothing on disk is replaced silently. Creates the parent directory.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(
            f"{path} already exists; remove it or choose another output path "
            "(results are never overwritten silently)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _reserve(path) if tmp is None else Path(tmp)
    try:
        if callable(data):
            data(tmp_path)
        else:
            with open(tmp_path, "wb") as fh:
                fh.write(data.encode() if isinstance(data, str) else data)
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):  # a partial file helps no one (and fills the disk)
            tmp_path.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def _reserve(path: Path) -> Path:
    """Create an empty, unused temporary file next to `path` (mode as for any new file)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory, so that a rename in it survives a power cut (a no-op on file systems
    that cannot sync a directory)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


# -- seeds and devices ---------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's global and torch's generators (for library code that draws from
    them, such as Tianshou's replay buffers)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class DeviceError(ValueError):
    """The configured torch device does not exist or is not available on this machine."""


def check_device(name: str, *, label: str | None = None, cpu: str = "device='cpu'") -> torch.device:
    """`torch.device(name)`, refused with DeviceError when it is not a torch device or this machine
    does not have it (rather than failing later inside torch).

    Messages name the setting as `label` (default ``device='cuda:3'``) and the CPU choice as
    `cpu`, the way the caller's users write them (the histories CLI: ``device 'cuda' (--device)``
    and ``--device cpu``).
    """
    import torch

    label = f"device={name!r}" if label is None else label
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise DeviceError(f"{label} is not a torch device ({exc}); use {cpu} or cuda[:N]") from exc
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(
                f"{label} needs CUDA, but no CUDA device is available on this machine; use "
                f"{cpu}, or run on a machine with a GPU"
            )
        if dev.index is not None and dev.index >= count:
            raise DeviceError(
                f"{label}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}"
            )
        return dev
    if dev.type == "mps" and torch.backends.mps.is_available():
        return dev
    raise DeviceError(f"{label} is not available here; use {cpu} or cuda[:N]")


def resolve_device(
    spec: str, *, local_rank: int | None = None, label: str | None = None, cpu: str = "device='cpu'"
) -> torch.device:
    """The torch device that `spec` names, checked to exist here (check_device).

    "auto" is CUDA when available, else CPU. With `local_rank` (a distributed run), "auto" and
    "cuda" mean that rank's GPU, ``cuda:<local_rank>``.
    """
    import torch

    label = f"device={spec!r}" if label is None else label
    name = spec
    if spec == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and local_rank is not None:
        name = f"cuda:{local_rank}"
    return check_device(name, label=label, cpu=cpu)
