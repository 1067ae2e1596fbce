"""Run plumbing shared by icrl's packages: atomic file writes, run-directory locks, the resume
rule (which config fields differ), device and seed handling, --config/--set parsing,
validation-error formatting.

icrl.histories is the lowest package that icrl.ad, icrl.baselines and icrl.apps all depend on, so
each of these protocols is written once here and the others import it (docs/architecture.md,
"Shared run plumbing"). Callers keep their own wording where their users see it: the functions
take the label that names the setting or file in a message.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import random
import secrets
import tomllib
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch
    from pydantic import ValidationError

__all__ = [
    "LOCK_NAME",
    "ConfigFileError",
    "DeviceError",
    "DirLock",
    "DirectoryInUseError",
    "FieldChange",
    "SetError",
    "apply_sets",
    "atomic_write",
    "check_device",
    "config_changes",
    "describe_changes",
    "describe_validation_error",
    "fsync_dir",
    "merge_nested",
    "os_error_line",
    "parse_set",
    "parse_sets",
    "read_config_file",
    "resolve_device",
    "seed_everything",
    "spawned_pool",
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
    `path` is left as it was; a Ctrl-C that made the writer fail otherwise is raised as the
    KeyboardInterrupt it was. With `overwrite=False` an existing `path` is refused
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
    except BaseException as err:
        with contextlib.suppress(OSError):  # a partial file helps no one (and fills the disk)
            tmp_path.unlink(missing_ok=True)
        if isinstance(err.__context__, KeyboardInterrupt) and not isinstance(
            err, KeyboardInterrupt
        ):
            # Ctrl-C inside the writer, which then failed on its way out (torch.save's zip
            # writer raises RuntimeError closing a half-written archive): the interrupt is what
            # happened, and the callers' Ctrl-C handling (exit 130, how to resume) expects it
            raise err.__context__ from None
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


# -- run-directory locks -------------------------------------------------------------------------

LOCK_NAME = ".lock"


class DirectoryInUseError(ValueError):
    """Another process holds the directory's lock (it is training or evaluating into it)."""


class DirLock:
    """`with DirLock(path, "training"):` holds `path/.lock` exclusively (creating `path`).

    The lock is `fcntl.flock` on `DIR/NAME`, never waited for: a second writer is refused at once.
    The kernel releases it when its holder exits or is killed (even with SIGKILL), so a crashed
    run never leaves a stale lock behind. While held, the file holds the holder's pid, for the
    refusal message (advisory only). Not re-entrant: a second DirLock on the same directory is
    refused even in the same process, as two writers there would be.

    `refuse(holder_pid)` builds the refusal, so that each caller keeps its own words (default:
    DirectoryInUseError naming the directory, the pid and the lock file). On release the file
    is kept and emptied (`remove=False`: deleting it would let two processes lock two different
    files of the same name), or removed while still held (`remove=True`, for a directory that
    its last holder deletes: histories' `OUT.parts`). Either way `acquire` checks that the file
    it locked is still the one under the name, and starts over if a finishing holder removed it.
    `created` says whether this acquire created the directory.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        purpose: str = "writing",
        *,
        name: str = LOCK_NAME,
        remove: bool = False,
        refuse: Callable[[str], BaseException] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.path = self.directory / name
        self.purpose = purpose
        self.remove = remove
        self.created = False
        self._refuse = refuse
        self._fd: int | None = None

    def _refusal(self, holder: str) -> BaseException:
        if self._refuse is not None:
            return self._refuse(holder)
        return DirectoryInUseError(
            f"{self.directory} is in use by another process (pid {holder} holds {self.path}); "
            "wait for it to finish, or use another directory"
        )

    def acquire(self) -> DirLock:
        """Take the lock or raise the refusal (DirectoryInUseError by default) naming the pid."""
        while True:
            self.created = not self.directory.exists()
            self.directory.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:
                continue  # the directory was removed by a finishing holder just now
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise self._refusal(holder) from None
            except BaseException:
                os.close(fd)
                raise
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # locked a file that its finishing holder had just removed
                os.close(fd)
                continue
            try:
                # The holder's pid, for the refusal message of the next process.
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            return self

    def release(self) -> None:
        """Release the lock (closing the descriptor drops it); idempotent.

        A kept file is emptied first, so that a run that finishes leaves it as it found it (a
        killed holder leaves its pid, which the next holder overwrites). A removed file goes
        while still held, so that no one can lock the old file in between and then lose it (a
        process that opened it earlier sees it gone and starts over).
        """
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if self.remove:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
            else:
                os.ftruncate(fd, 0)
        finally:
            os.close(fd)

    def __enter__(self) -> DirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


# -- the resume rule: which config fields differ ---------------------------------------------------


@dataclass(frozen=True)
class FieldChange:
    """One field in which a run's recorded config and a requested one differ."""

    field: str  # dotted: "optim.lr"; "" when the two configs themselves are not both tables
    old: Any  # the recorded value (`absent` where the field was missing)
    new: Any  # the requested value


def config_changes(
    old: Any, new: Any, *, may_change: Iterable[str] = (), absent: Any = None
) -> list[FieldChange]:
    """The fields in which two JSON config dumps differ, sorted by dotted name.

    Tables are compared field by field, recursively; any other value as a whole. A field listed
    in `may_change` (dotted), or lying under one, is left out: each caller lists what may differ
    when a run is resumed (more steps, another device, where its input files lie) without
    changing what it computes. A field missing on one side counts as `absent` (None by default:
    a field added later with a None default then matches the dumps written before it existed).
    """
    free = tuple(may_change)
    out: list[FieldChange] = []

    def walk(a: Any, b: Any, prefix: str) -> None:
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for key in sorted(set(a) | set(b), key=str):
                walk(a.get(key, absent), b.get(key, absent), f"{prefix}{key}.")
            return
        field = prefix[:-1]
        if a != b and not any(field == f or field.startswith(f + ".") for f in free):
            out.append(FieldChange(field, a, b))

    walk(old, new, "")
    return out


def describe_changes(
    changes: Iterable[FieldChange],
    template: str = "{field}: existing {old!r}, requested {new!r}",
    sep: str = "; ",
) -> str:
    """The listing of `changes` for a message, each through `template` (`field`, `old`, `new`)."""
    return sep.join(template.format(field=c.field, old=c.old, new=c.new) for c in changes)


# -- seeds and devices ---------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's global and torch's generators (for library code that draws from
    them, such as Tianshou's replay buffers)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def spawned_pool(processes: int) -> ProcessPoolExecutor:
    """A pool of `processes` spawned processes that share this one's torch threads, at least one
    each: spawned, not forked, since a forked child would inherit a CUDA context it cannot use;
    the threads split, since each process's torch would otherwise take every core (and with one
    thread here, the tests' and a CPU app's, a seed's CPU floats stay the serial run's)."""
    import multiprocessing as mp

    import torch

    threads = max(1, torch.get_num_threads() // processes)
    return ProcessPoolExecutor(
        processes,
        mp_context=mp.get_context("spawn"),
        initializer=torch.set_num_threads,
        initargs=(threads,),
    )


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


# -- --config FILE and --set KEY=VALUE -----------------------------------------------------------


class ConfigFileError(ValueError):
    """A --config file is missing, unreadable, malformed, or not a table of settings."""


_FORMATS: dict[str, Literal["json", "toml"]] = {".json": "json", ".toml": "toml"}


def read_config_file(
    path: str | os.PathLike[str],
    *,
    label: str = "--config",
    fmt: Literal["json", "toml"] | None = None,
    holds: str = "settings",
) -> dict[str, Any]:
    """The settings in a config file: JSON or TOML by its suffix (`fmt=None`), or always `fmt`.

    Every failure is a one-line ConfigFileError that names the file as ``{label} {path}``: a
    suffix other than .json/.toml, no such file, a directory, unreadable, a syntax error, or (JSON)
    a top level that is not an object of `holds`.
    """
    path = Path(path)
    kind = ".toml or .json" if fmt is None else fmt.upper()  # what the messages ask for
    fmt = fmt or _FORMATS.get(path.suffix)
    if fmt is None:
        raise ConfigFileError(f"{label} {path}: expected a .toml or .json file")
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigFileError(
            f"{label} {path}: no such file; give the path of a {kind} file"
        ) from None
    except IsADirectoryError:
        raise ConfigFileError(f"{label} {path} is a directory; give a {kind} file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"{label} {path} cannot be read ({exc})") from exc
    try:
        data = tomllib.loads(text) if fmt == "toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigFileError(f"{label} {path} is not valid {fmt.upper()} ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigFileError(
            f"{label} {path} holds a JSON {type(data).__name__}; it needs an object of {holds}"
        )
    return data


class SetError(ValueError):
    """A --set item is not KEY=VALUE, or its KEY does not fit the settings it is applied to."""


def parse_set(item: str, *, label: str = "--set", form: str = "KEY=VALUE") -> tuple[str, Any]:
    """`"KEY=VALUE"` -> (KEY, VALUE parsed as JSON, or the text itself when it is not JSON, so
    that bare strings such as ``device=cuda`` need no quotes). SetError names the item."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise SetError(f"{label} expects {form} (VALUE in JSON), got {item!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def parse_sets(items: Iterable[str], *, label: str = "--set", form: str = "KEY=VALUE") -> dict:
    """Several flat --set items as a dict (a later KEY wins)."""
    return dict(parse_set(item, label=label, form=form) for item in items)


def apply_sets(
    base: Mapping[str, Any],
    items: Iterable[str],
    *,
    label: str = "--set",
    form: str = "section.field=VALUE",
) -> dict[str, Any]:
    """A copy of the nested settings `base` (JSON-normalised: paths become strings) with each
    ``a.b.c=VALUE`` item set at that path, creating missing sections."""
    out = json.loads(json.dumps(base, default=str))
    for item in items:
        key, value = parse_set(item, label=label, form=form)
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SetError(f"{label} {item!r}: {part!r} is not a section")
        node[leaf] = value
    return out


def merge_nested(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `top` merged in, section by section: where both hold a section (a mapping in
    `top`, a dict in `base`) the two are merged the same way; any other value of `top` replaces
    `base`'s. Values are kept as given (no copies, no JSON round trip)."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge_nested(out[key], value)
        else:
            out[key] = value
    return out


# -- validation errors ---------------------------------------------------------------------------


def describe_validation_error(
    err: ValidationError,
    *,
    head: str = "",
    see: str = "",
    layout: Literal["auto", "line", "lines"] = "auto",
    name: Callable[[tuple[Any, ...]], str] | None = None,
    top: str | None = None,
) -> str:
    """pydantic's errors for a user: each as ``where: message (got value)``, the value cut to 80
    characters.

    `name` turns an error's location into the name the user set it by (default ``a.b.c``; the
    histories CLI names flags, apps ``--a.b``). A location that names nothing (a check across
    fields) is shown as `top`, or, with no `top`, as the bare message, which names its fields
    itself. `layout` "line" joins the errors with "; " after `head` and ends with "; {see}";
    "lines" puts each on its own indented line under `head`, then `see`; "auto" is "line" for one
    error, else "lines".
    """
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        where = name(loc) if name is not None else ".".join(str(part) for part in loc)
        where = where or top
        if not where:
            lines.append(e["msg"].removeprefix("Value error, "))
            continue
        got = repr(e.get("input"))
        got = got if len(got) <= 80 else got[:77] + "..."
        lines.append(f"{where}: {e['msg']} (got {got})")
    if layout == "line" or (layout == "auto" and len(lines) == 1):
        text = " ".join(filter(None, [head, "; ".join(lines)]))
        return f"{text}; {see}" if see else text
    return head + "".join(f"\n  {line}" for line in lines) + (f"\n{see}" if see else "")


# -- one line for an OS error at a CLI's error boundary -----------------------------------------

WRITE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
)
"""Errors of a write that the user fixes by freeing space or choosing another directory."""


def os_error_line(err: OSError, where: object, kept: str) -> str:
    """One line for an OSError that reached a CLI's error boundary (icrl.ad, icrl.baselines).

    A failed write names the file (or `where`, for errors that name none, e.g. torch.save's) and
    says to free space, with `kept` saying what survived ("finished checkpoints are kept; rerun
    to resume"); any other error names the file. An OSError raised by our own code with its own
    message (no errno) is passed through.
    """
    if err.errno is None:
        return str(err)
    place = err.filename or where
    what = err.strerror or err
    if err.errno in WRITE_ERRNOS:
        return f"{what} while writing {place}; free space or choose another directory ({kept})"
    return f"{what}: {place}"
