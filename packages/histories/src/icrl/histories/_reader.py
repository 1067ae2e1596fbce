"""Reading learning-history files: tasks, metadata, full histories and cross-episodic windows."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np

from icrl.histories._schema import (
    EPISODES,
    REGENERATE,
    TRANSITION_FIELDS,
    TRANSITION_FIELDS_SINCE,
    TRANSITIONS,
    HistoryFileError,
    check_finite,
    check_root,
    check_task,
    check_values,
    decode_attrs,
)


@dataclass(frozen=True)
class History:
    """One task's kept (k-downsampled) transitions, in the order of the learning run.

    `action` is the action sent to the environment; `mean_action` the action the source's policy
    would have taken deterministically at `obs`, in the same units (E||action - mean_action||^2
    is its exploration noise). `mean_action` is None for files of schema version 1, which
    predate it. `episode` is the index of the transition's
    episode in the full, un-downsampled stream (so consecutive kept episodes differ by k);
    `step` is the step inside that episode; `warmup` flags the source algorithm's random
    warm-up steps. A window cut from a history is again a History.
    """

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    episode: np.ndarray
    step: np.ndarray
    warmup: np.ndarray
    mean_action: np.ndarray | None = None
    """(T, act_dim) float32; None when the file predates schema version 2."""
    task: Any = None
    family: str = ""
    name: str = ""
    start: int = 0
    """Row of the first transition in the task's full kept history."""
    meta: dict[str, Any] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return int(self.reward.shape[0])

    @property
    def episode_starts(self) -> np.ndarray:
        """Rows (in this History) where an episode begins."""
        return np.flatnonzero(self.step == 0)


def _task_value(family: str, task: Any) -> Any:
    """The typed task when icrl.metaenvs can decode it, else the plain dict."""
    try:
        from icrl.metaenvs import task_from_dict
    except ImportError:  # pragma: no cover - metaenvs is a declared dependency
        return task
    try:
        return task_from_dict(task)
    except (KeyError, TypeError, ValueError):
        return task


class HistoryFile:
    """Reader of a learning-history file (see the package README for the layout).

    The HDF5 handle is opened on first use and re-opened in a new process (the pid is
    checked), and it is never pickled, so one HistoryFile can be handed to torch DataLoader
    workers. Every error names the file and, where there is one, the task.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file: h5py.File | None = None
        self._pid: int | None = None
        self._checked: set[str] = set()

    # -- handle management -------------------------------------------------------------------
    def _h5(self) -> h5py.File:
        if self._file is not None and self._pid == os.getpid():
            return self._file
        self._file, self._checked = None, set()
        if not self.path.exists():
            raise HistoryFileError(self.path, "no such file; generate it with `icrl.histories`")
        try:
            f = h5py.File(self.path, "r")
        except OSError as exc:
            raise HistoryFileError(self.path, f"cannot be opened as HDF5 ({exc})") from exc
        try:
            check_root(f, self.path)
        except Exception:
            f.close()
            raise
        self._file, self._pid = f, os.getpid()
        return f

    def close(self) -> None:
        """Close the HDF5 handle (it reopens on next use)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __enter__(self) -> HistoryFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"HistoryFile({str(self.path)!r})"

    def _group(self, name: str) -> h5py.Group:
        f = self._h5()
        if name not in f or not isinstance(f[name], h5py.Group):
            raise HistoryFileError(self.path, f"no such task; the file has {self.tasks}", task=name)
        group = f[name]
        if name not in self._checked:
            try:
                check_task(group, self.path, name)
            except HistoryFileError:
                raise
            except (OSError, KeyError, TypeError, ValueError) as exc:
                raise HistoryFileError(self.path, f"unreadable ({exc})", task=name) from exc
            self._checked.add(name)
        return group

    def _decoded(self, attrs: h5py.AttributeManager, name: str | None) -> dict[str, Any]:
        """`decode_attrs`, with a malformed (non-JSON) attribute reported against the file."""
        try:
            return decode_attrs(attrs)
        except (ValueError, TypeError, OSError) as exc:
            raise HistoryFileError(
                self.path, f"malformed attributes ({exc}); {REGENERATE}", task=name
            ) from exc

    def validate(self, name: str) -> None:
        """Check a task against the schema, every value included (reads all its data): dtypes,
        shapes, the episode/step columns against the episodes table, and finite floats. The
        other readers check the structure when they first open a task and the values of the
        rows they return; this is the whole-task check that `info` runs."""
        group = self._group(name)
        self._decoded(group.attrs, name)  # JSON attributes (task, hyper-parameters) parse
        try:
            check_values(group, self.path, name)
        except (OSError, KeyError) as exc:
            raise HistoryFileError(self.path, f"unreadable ({exc})", task=name) from exc

    # -- metadata ----------------------------------------------------------------------------
    @property
    def tasks(self) -> list[str]:
        """Names of the task groups, in task order."""
        f = self._h5()
        return sorted(k for k, v in f.items() if isinstance(v, h5py.Group))

    @property
    def attrs(self) -> dict[str, Any]:
        """The file's root attributes (family, env_id, schema_version, generate_config, ...)."""
        return self._decoded(self._h5().attrs, None)

    def meta(self, name: str) -> dict[str, Any]:
        """A task's attributes: task, algorithm, hyper-parameters, k, seeds, versions, counts."""
        return self._decoded(self._group(name).attrs, name)

    def task(self, name: str) -> Any:
        """The task value (a metaenvs Task when it can be decoded, else its dict)."""
        meta = self.meta(name)
        return _task_value(meta["family"], meta["task"])

    def has_mean_action(self, name: str) -> bool:
        """Whether a task records the policy's deterministic action (files of schema >= 2)."""
        return f"{TRANSITIONS}/mean_action" in self._group(name)

    def exploration_noise(self, name: str) -> float | None:
        """Mean of ||action - mean_action||^2 over the task's kept non-warm-up transitions: the
        source's exploration-noise floor (None for schema-1 files or when no such row is kept)."""
        if not self.has_mean_action(name):
            return None
        group = self._group(name)
        try:
            learning = ~group[f"{TRANSITIONS}/warmup"][()]
            act = group[f"{TRANSITIONS}/action"][()][learning]
            mean = group[f"{TRANSITIONS}/mean_action"][()][learning]
        except (OSError, KeyError) as exc:
            raise HistoryFileError(self.path, f"unreadable transitions ({exc})", task=name) from exc
        if not len(act):
            return None
        diff = act.astype(np.float64) - mean.astype(np.float64)
        return float((diff**2).sum(axis=1).mean())

    def n_transitions(self, name: str) -> int:
        """Number of kept transitions of a task."""
        return int(self._group(name)[f"{TRANSITIONS}/reward"].shape[0])

    def episode_returns(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Return and length of every finished episode of the run (kept or not), in order."""
        group = self._group(name)
        try:
            returns = group[f"{EPISODES}/return"][()]
            lengths = group[f"{EPISODES}/length"][()]
        except (OSError, KeyError) as exc:
            raise HistoryFileError(self.path, f"unreadable episodes ({exc})", task=name) from exc
        return returns, lengths

    def episodes(self, name: str) -> dict[str, np.ndarray]:
        """The whole per-episode table (return, length, env_index, end_vstep, kept, ...)."""
        group = self._group(name)
        try:
            return {k: v[()] for k, v in group[EPISODES].items()}
        except OSError as exc:
            raise HistoryFileError(self.path, f"unreadable episodes ({exc})", task=name) from exc

    def episode_starts(self, name: str) -> np.ndarray:
        """Rows of the kept history where an episode begins."""
        kept = self.episodes(name)
        rows = kept["first_row"][kept["kept"]]
        return rows.astype(np.int64)

    # -- transitions -------------------------------------------------------------------------
    def window(self, name: str, start: int, length: int) -> History:
        """Rows [start, start + length) of a task's kept history, read from disk alone."""
        n = self.n_transitions(name)
        if start < 0 or length < 0 or start + length > n:
            raise ValueError(
                f"{self.path} (task {name!r}): window [{start}, {start + length}) is outside "
                f"the {n} kept transitions"
            )
        return self._read(name, slice(start, start + length), start)

    def history(self, name: str) -> History:
        """A task's full kept (k-downsampled) history."""
        return self._read(name, slice(None), 0)

    def sample_window(
        self,
        name: str,
        length: int,
        rng: np.random.Generator,
        align: Literal["random", "episode"] = "random",
    ) -> History:
        """A window of `length` transitions, starting anywhere or at an episode start."""
        n = self.n_transitions(name)
        if length > n:
            raise ValueError(
                f"{self.path} (task {name!r}): window of {length} transitions asked for, "
                f"the task keeps only {n}"
            )
        if align == "random":
            start = int(rng.integers(0, n - length + 1))
        elif align == "episode":
            starts = self.episode_starts(name)
            starts = starts[starts + length <= n]
            if starts.size == 0:
                raise ValueError(
                    f"{self.path} (task {name!r}): no episode start leaves room for {length} "
                    f"transitions ({n} kept)"
                )
            start = int(rng.choice(starts))
        else:
            raise ValueError(f"align must be 'random' or 'episode', got {align!r}")
        return self._read(name, slice(start, start + length), start)

    def _read(self, name: str, rows: slice, start: int) -> History:
        group = self._group(name)
        meta = self._decoded(group.attrs, name)
        arrays: dict[str, np.ndarray] = {}
        try:
            for key, (dtype, _) in TRANSITION_FIELDS.items():
                path = f"{TRANSITIONS}/{key}"
                if key in TRANSITION_FIELDS_SINCE and path not in group:
                    continue  # an older schema's file (check_task allowed it): the field is None
                arrays[key] = np.asarray(group[path][rows], dtype=dtype)
        except (OSError, KeyError) as exc:
            raise HistoryFileError(self.path, f"unreadable transitions ({exc})", task=name) from exc
        for key, data in arrays.items():
            if data.dtype.kind == "f":  # the rows in hand; a NaN would only show as a NaN loss
                check_finite(self.path, name, f"{TRANSITIONS}/{key}", data, start)
        return History(
            **arrays,
            task=_task_value(meta["family"], meta["task"]),
            family=meta["family"],
            name=name,
            start=start,
            meta=meta,
        )
