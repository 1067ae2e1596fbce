"""The HDF5 layout of a learning-history file: the one place that knows dataset and attribute names.

Layout (schema version 2)::

    /                                   attrs: format, schema_version, family, env_id,
                                               episode_order, generate_config (JSON), complete
    /<task name>/                       one group per task ("task_000", "task_001", ...)
        attrs: task (JSON), task_index, family, env_id, algorithm, hyperparameters (JSON),
               k, seed, task_seed, n_envs, steps, backend, library_versions (JSON),
               schema_version, episode_order, n_episodes, n_transitions_total,
               n_transitions_kept, n_unfinished_transitions, complete (written last)
        transitions/                    the kept (k-downsampled) episodes, one row per transition
            obs (T, obs_dim) f32, action (T, act_dim) f32, mean_action (T, act_dim) f32,
            reward (T,) f32, next_obs (T, obs_dim) f32, terminated (T,) bool,
            truncated (T,) bool, episode (T,) i64, step (T,) i32, warmup (T,) bool
        episodes/                       every finished episode of the run, in finishing order
            return (E,) f64, length (E,) i32, env_index (E,) i16, end_vstep (E,) i64,
            warmup_steps (E,) i32, kept (E,) bool, first_row (E,) i64

`action` is the action sent to the env; `mean_action` (since schema 2) is the action the source's
policy would have taken deterministically at `obs`, in the same (env) units: SAC/DroQ tanh(loc),
PPO the Gaussian mean clipped to [-1, 1], then scaled to the action box exactly as `action` was
(during random warm-up, the current untrained policy's). E||action - mean_action||^2 is the
source's exploration noise.

Schema history: 1, the first; 2 adds transitions/mean_action. Files of schema 1 still read
(`mean_action` is then absent and the reader gives None); files are written as schema 2.

Everything is a plain dataset or a scalar/string attribute, gzip-compressed with the shuffle filter,
so h5ls, h5dump or bare h5py read it without this package.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

FORMAT = "icrl-histories"
SCHEMA_VERSION = 2
SUPPORTED_SCHEMA_VERSIONS = (1, 2)

EPISODE_ORDER = (
    "Episodes are numbered 0, 1, 2, ... in the order in which they finish: by the global "
    "vector-env step (end_vstep, 0-based) of their last transition, ties broken by env index. "
    "Each episode's transitions are stored contiguously. Episode e is kept (its transitions "
    "stored) iff e % k == 0; return and length are stored for every episode. Episodes still "
    "running when the run ends are dropped."
)

TRANSITIONS = "transitions"
EPISODES = "episodes"

# name -> (dtype, whether the row has a feature dimension: "obs", "act" or None)
TRANSITION_FIELDS: dict[str, tuple[np.dtype, str | None]] = {
    "obs": (np.dtype(np.float32), "obs"),
    "action": (np.dtype(np.float32), "act"),
    "mean_action": (np.dtype(np.float32), "act"),
    "reward": (np.dtype(np.float32), None),
    "next_obs": (np.dtype(np.float32), "obs"),
    "terminated": (np.dtype(np.bool_), None),
    "truncated": (np.dtype(np.bool_), None),
    "episode": (np.dtype(np.int64), None),
    "step": (np.dtype(np.int32), None),
    "warmup": (np.dtype(np.bool_), None),
}
# Transition fields added after schema 1: name -> the first schema version that has it (older
# files lack the dataset; the reader gives None for it).
TRANSITION_FIELDS_SINCE: dict[str, int] = {"mean_action": 2}
EPISODE_FIELDS: dict[str, np.dtype] = {
    "return": np.dtype(np.float64),
    "length": np.dtype(np.int32),
    "env_index": np.dtype(np.int16),
    "end_vstep": np.dtype(np.int64),
    "warmup_steps": np.dtype(np.int32),
    "kept": np.dtype(np.bool_),
    "first_row": np.dtype(np.int64),
}
# Attributes whose value is JSON text (decoded by the reader).
JSON_ATTRS = (
    "task",
    "hyperparameters",
    "library_versions",
    "generate_config",
    "noise_distillation",
)
REQUIRED_TASK_ATTRS = (
    "task",
    "task_index",
    "family",
    "env_id",
    "algorithm",
    "hyperparameters",
    "k",
    "seed",
    "task_seed",
    "n_envs",
    "steps",
    "backend",
    "library_versions",
    "schema_version",
    "n_episodes",
    "complete",
)

CHUNK_ROWS = 4096
COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True}


class HistoryFileError(ValueError):
    """A history file (or one task in it) is missing, truncated, corrupt or of an unknown schema."""

    def __init__(self, path: str | Path, message: str, task: str | None = None) -> None:
        where = f"{path}" if task is None else f"{path} (task {task!r})"
        super().__init__(f"{where}: {message}")
        self.path = Path(path)
        self.task = task


@dataclass
class TaskRecord:
    """What one source-RL run produced, ready to be written as a task group."""

    transitions: dict[str, np.ndarray]
    episodes: dict[str, np.ndarray]
    attrs: dict[str, Any]


def task_name(index: int) -> str:
    """The group name of the task at `index` of the run's task list."""
    return f"task_{index:03d}"


def _attr_value(value: Any) -> Any:
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, sort_keys=True)
    if value is None:
        return "null"
    return value


def decode_attrs(attrs: h5py.AttributeManager) -> dict[str, Any]:
    """Attributes as plain Python values, JSON attributes decoded."""
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, np.generic):
            value = value.item()
        if key in JSON_ATTRS and isinstance(value, str):
            value = json.loads(value)
        out[key] = value
    return out


def _chunks(shape: tuple[int, ...]) -> tuple[int, ...] | None:
    if shape[0] == 0:
        return None
    return (min(shape[0], CHUNK_ROWS), *shape[1:])


def write_task(group: h5py.Group, record: TaskRecord) -> None:
    """Fill an empty task group; the `complete` attribute is set last."""
    trans = group.create_group(TRANSITIONS)
    for name, (dtype, _) in TRANSITION_FIELDS.items():
        data = np.asarray(record.transitions[name], dtype=dtype)
        trans.create_dataset(name, data=data, chunks=_chunks(data.shape), **_compress(data))
    eps = group.create_group(EPISODES)
    for name, dtype in EPISODE_FIELDS.items():
        data = np.asarray(record.episodes[name], dtype=dtype)
        eps.create_dataset(name, data=data, chunks=_chunks(data.shape), **_compress(data))
    for key, value in record.attrs.items():
        if key != "complete":
            group.attrs[key] = _attr_value(value)
    group.attrs["schema_version"] = SCHEMA_VERSION
    group.attrs["episode_order"] = EPISODE_ORDER
    group.file.flush()
    group.attrs["complete"] = True


def _compress(data: np.ndarray) -> dict[str, Any]:
    return COMPRESSION if data.shape[0] > 0 else {}


def write_root_attrs(f: h5py.File, *, family: str, env_id: str, config_json: str) -> None:
    """Attributes of the file itself (everything but `complete`)."""
    f.attrs["format"] = FORMAT
    f.attrs["schema_version"] = SCHEMA_VERSION
    f.attrs["family"] = family
    f.attrs["env_id"] = env_id
    f.attrs["episode_order"] = EPISODE_ORDER
    f.attrs["generate_config"] = config_json


def check_root(f: h5py.File, path: str | Path) -> None:
    """Raise HistoryFileError unless `f` is a history file of a supported schema version."""
    fmt = f.attrs.get("format")
    if isinstance(fmt, bytes):
        fmt = fmt.decode()
    if fmt != FORMAT:
        raise HistoryFileError(path, f"not an {FORMAT} file (root attribute 'format' is {fmt!r})")
    version = f.attrs.get("schema_version")
    if isinstance(version, np.generic):
        version = version.item()
    if version is None or int(version) not in SUPPORTED_SCHEMA_VERSIONS:
        raise HistoryFileError(
            path,
            f"unknown schema version {version}; this icrl-histories reads "
            f"{SUPPORTED_SCHEMA_VERSIONS}. Upgrade icrl-histories or regenerate the file.",
        )


def check_task(group: h5py.Group, path: str | Path, name: str) -> None:
    """Raise HistoryFileError unless `group` is a complete, consistent task of a known schema."""
    attrs = group.attrs
    missing = [a for a in REQUIRED_TASK_ATTRS if a not in attrs]
    if missing:
        raise HistoryFileError(path, f"missing attributes {missing}", task=name)
    if not bool(attrs["complete"]):
        raise HistoryFileError(path, "task is not complete (its write never finished)", task=name)
    version = int(attrs["schema_version"])
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise HistoryFileError(
            path,
            f"unknown schema version {version}; supported: {SUPPORTED_SCHEMA_VERSIONS}",
            task=name,
        )
    # fields of a later schema are checked like the others when present
    present = [f for f in TRANSITION_FIELDS if f"{TRANSITIONS}/{f}" in group]
    trans_fields = sorted(
        {*transition_fields(version), *present}, key=list(TRANSITION_FIELDS).index
    )
    lengths: dict[str, int] = {}
    for sub, fields in ((TRANSITIONS, trans_fields), (EPISODES, list(EPISODE_FIELDS))):
        for field in fields:
            key = f"{sub}/{field}"
            if key not in group or not isinstance(group[key], h5py.Dataset):
                raise HistoryFileError(path, f"missing dataset {key!r}", task=name)
            lengths[key] = group[key].shape[0]
    for sub, fields in ((TRANSITIONS, trans_fields), (EPISODES, list(EPISODE_FIELDS))):
        sizes = {lengths[f"{sub}/{f}"] for f in fields}
        if len(sizes) != 1:
            raise HistoryFileError(
                path, f"datasets under {sub!r} have different lengths {sorted(sizes)}", task=name
            )
    _check_transition_shapes(group, path, name, trans_fields)
    if lengths[f"{EPISODES}/return"] != int(attrs["n_episodes"]):
        raise HistoryFileError(
            path,
            f"episodes/return has {lengths[f'{EPISODES}/return']} rows but n_episodes is "
            f"{int(attrs['n_episodes'])}",
            task=name,
        )
    _check_episode_table(group, path, name)
    _check_episode_columns(group, path, name)


# The float datasets whose every value must be finite (checked by `check_values` and, for the rows
# it returns, by the reader): a NaN or inf here is a damaged file or a diverged source run, and
# would otherwise surface only as a non-finite training loss far from its cause.
FINITE_FIELDS = (
    *(f"{TRANSITIONS}/{f}" for f, (dtype, _) in TRANSITION_FIELDS.items() if dtype.kind == "f"),
    f"{EPISODES}/return",
)
REGENERATE = "the file is damaged; regenerate it with `python -m icrl.histories generate`"


def check_finite(path: str | Path, name: str, field: str, data: np.ndarray, row0: int = 0) -> None:
    """Raise HistoryFileError naming the first non-finite value of `data` (rows from `row0`)."""
    bad = ~np.isfinite(data)
    if not bad.any():
        return
    where = np.argwhere(bad)[0]
    rows = int(bad.reshape(len(bad), -1).any(axis=1).sum())
    value = data[tuple(where)]
    at = f"row {row0 + int(where[0])}" + (f", column {int(where[1])}" if data.ndim > 1 else "")
    raise HistoryFileError(
        path,
        f"dataset '{field}' holds a non-finite value ({value} at {at}; {rows} such row"
        f"{'s' if rows != 1 else ''} read); {REGENERATE}",
        task=name,
    )


def check_values(group: h5py.Group, path: str | Path, name: str) -> None:
    """Raise HistoryFileError unless every float dataset of the task is finite (reads them all)."""
    for field in FINITE_FIELDS:
        if field in group:  # an older schema's task may lack a later field
            check_finite(path, name, field, group[field][()])


def _check_episode_table(group: h5py.Group, path: str | Path, name: str) -> None:
    """dtype and shape (E,) of every episodes/ dataset."""
    for field, dtype in EPISODE_FIELDS.items():
        ds = group[f"{EPISODES}/{field}"]
        if ds.dtype != dtype or ds.ndim != 1:
            raise HistoryFileError(
                path,
                f"dataset '{EPISODES}/{field}' is {ds.dtype} {ds.shape}; the schema wants "
                f"{dtype} (E,); {REGENERATE}",
                task=name,
            )


def _first_mismatch(got: np.ndarray, want: np.ndarray) -> int | None:
    diff = np.flatnonzero(got != want)
    return int(diff[0]) if diff.size else None


def _check_episode_columns(group: h5py.Group, path: str | Path, name: str) -> None:
    """The episodes table and the transitions' `episode`/`step` columns tell one story.

    Episode e is kept iff e % k == 0; kept episodes are stored whole and contiguously, in order,
    starting at `first_row`; every row's `episode` is its episode's index and `step` counts
    0, 1, ... within it. Reads only the integer columns (small next to the float data).
    """

    def refuse(message: str) -> HistoryFileError:
        return HistoryFileError(path, f"{message}; {REGENERATE}", task=name)

    k = int(group.attrs["k"])
    kept = group[f"{EPISODES}/kept"][()]
    length = group[f"{EPISODES}/length"][()].astype(np.int64)
    first_row = group[f"{EPISODES}/first_row"][()]
    row = _first_mismatch(kept, np.arange(len(kept)) % k == 0)
    if row is not None:
        raise refuse(
            f"episodes/kept[{row}] is {bool(kept[row])}, but k={k} keeps episode e iff e % {k} == 0"
        )
    row = _first_mismatch(length >= 1, np.ones(len(length), bool))
    if row is not None:
        raise refuse(f"episodes/length[{row}] is {length[row]}; every episode has a step")
    lengths = length[kept]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    row = _first_mismatch(first_row[kept], starts)
    if row is not None:
        e = int(np.flatnonzero(kept)[row])
        raise refuse(
            f"episodes/first_row[{e}] is {first_row[e]}, but the kept episodes before "
            f"it hold {starts[row]} rows"
        )
    episode = group[f"{TRANSITIONS}/episode"][()]
    step = group[f"{TRANSITIONS}/step"][()]
    if len(episode) != int(lengths.sum()):
        raise refuse(
            f"transitions hold {len(episode)} rows, but the kept episodes' lengths "
            f"(episodes/length) sum to {int(lengths.sum())}"
        )
    want_episode = np.repeat(np.flatnonzero(kept), lengths)
    row = _first_mismatch(episode, want_episode)
    if row is not None:
        raise refuse(
            f"transitions/episode[{row}] is {episode[row]}, but the episodes table puts "
            f"episode {want_episode[row]} there"
        )
    want_step = np.arange(len(step)) - np.repeat(starts, lengths)
    row = _first_mismatch(step, want_step)
    if row is not None:
        raise refuse(
            f"transitions/step[{row}] is {step[row]}, expected {want_step[row]} (steps "
            f"count 0, 1, ... within each episode)"
        )


def transition_fields(version: int) -> list[str]:
    """The transition datasets that a task of schema `version` must have."""
    return [f for f in TRANSITION_FIELDS if TRANSITION_FIELDS_SINCE.get(f, 1) <= version]


def _check_transition_shapes(
    group: h5py.Group, path: str | Path, name: str, fields: list[str]
) -> None:
    """dtype and row shape of every transition dataset: (T,) or (T, obs_dim) / (T, act_dim)."""
    widths: dict[str, int | None] = {}
    for key, field, attr in (("obs", "obs", "obs_dim"), ("act", "action", "act_dim")):
        if attr in group.attrs:  # written by every generator (not by hand-made records)
            widths[key] = int(group.attrs[attr])
        else:
            shape = group[f"{TRANSITIONS}/{field}"].shape
            widths[key] = shape[1] if len(shape) == 2 else None
    for field in fields:
        dtype, dim = TRANSITION_FIELDS[field]
        ds = group[f"{TRANSITIONS}/{field}"]
        want = "(T,)" if dim is None else f"(T, {widths[dim]})"
        ok = ds.dtype == dtype and (
            ds.ndim == 1 if dim is None else ds.ndim == 2 and ds.shape[1] == widths[dim]
        )
        if not ok:
            raise HistoryFileError(
                path,
                f"dataset '{TRANSITIONS}/{field}' is {ds.dtype} {ds.shape}; the schema wants "
                f"{dtype} {want}",
                task=name,
            )
