"""Training contexts cut from learning histories, and a deterministic step -> batch sampler.

Every batch is a pure function of (seed, step): the sampler permutes an epoch's items with a
generator seeded by (seed, epoch), and a context's random start is drawn from (seed, epoch, item).
Resuming at step s therefore needs no data-loader state, and DDP ranks take disjoint slices of the
same global batch.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ._context import FULL, Context
from ._model import NormStats, compute_norm_stats
from ._targets import ActionTarget, denoised_targets
from ._tokens import HistoryLike, history_tokens

__all__ = ["ContextDataset", "DataInfo", "StepBatchSampler", "collate_contexts"]


@dataclass(frozen=True)
class DataInfo:
    """What the model and the evaluator need to know about the training data."""

    family: str
    obs_dim: int
    act_dim: int
    n_tasks: int
    context_len: int
    """Longest context (tokens) the model is trained on."""
    context_episodes: int
    """Episodes that one training context covers (the evaluator's default episode count)."""
    episode_length: int
    """Longest episode in the data (steps)."""


@dataclass(frozen=True)
class _Entry:
    path: Path | None
    name: str
    length: int
    episode_starts: np.ndarray  # token indices where a kept episode starts


def _check_env_dims(
    family: str, obs_dim: int, act_dim: int, paths: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Refuse histories whose transitions cannot come from `family`'s env (caught before training,
    not hours later at evaluation); returns the env's action box (low, high)."""
    from icrl.metaenvs import FAMILIES, make_env

    if family not in FAMILIES:
        raise ValueError(
            f"histories {paths} are of family {family!r}, which icrl.metaenvs does not know; "
            f"expected one of {list(FAMILIES)}"
        )
    env = make_env(family)
    try:
        want = (env.observation_space.shape[0], env.action_space.shape[0])
        box = (np.asarray(env.action_space.low), np.asarray(env.action_space.high))
    finally:
        env.close()
    if (obs_dim, act_dim) != want:
        raise ValueError(
            f"histories {paths} hold (obs_dim, act_dim)=({obs_dim}, {act_dim}), but {family}'s env "
            f"has {want}; regenerate them with icrl.histories for {family}"
        )
    return box


_FINITE_FIELDS = ("obs", "action", "reward", "next_obs", "mean_action")


def _check_finite(
    found: Sequence[tuple[Path | None, str]], histories: Sequence[HistoryLike]
) -> None:
    """Refuse a NaN or inf in any float column the model reads, naming file, task, field and row.

    Caught here, on read, it names the culprit; in training it would surface only as a
    non-finite loss at some later step, naming a batch. icrl.histories' reader checks the rows
    it returns too (HistoryFile.history); this check also covers in-memory histories.
    """
    for (path, name), h in zip(found, histories, strict=True):
        for field in _FINITE_FIELDS:
            values = getattr(h, field, None)
            if values is None:
                continue
            values = np.asarray(values)
            bad = ~np.isfinite(values)
            if bad.any():
                first = tuple(int(i) for i in np.argwhere(bad)[0])
                at = f"row {first[0]}" + (f", column {first[1]}" if len(first) > 1 else "")
                where = f"{path} (task {name!r})" if path is not None else f"history {name!r}"
                raise ValueError(
                    f"{where}: field {field!r} holds {int(bad.sum())} non-finite value(s), the "
                    f"first {values[first]} at {at}; regenerate the file with icrl.histories, "
                    "or leave this task out with data.tasks"
                )


def _open_history(path: Path, name: str) -> HistoryLike:
    from icrl.histories import HistoryFile

    return HistoryFile(path).history(name)


class ContextDataset(Dataset):
    """Contexts of one family's histories, cut as `context` says (full, n episodes or c steps).

    Items are keyed by (epoch, index) so that random starts are reproducible; the HDF5 files are
    opened lazily in each process, and each task's tokens are cached per process after first use.
    """

    def __init__(
        self,
        entries: list[_Entry],
        memory: dict[str, HistoryLike] | None,
        context: Context,
        seed: int,
        info: DataInfo,
        action_target: ActionTarget = "executed",
        action_box: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.entries = entries
        self.context, self.seed = context, seed
        self.info = info
        self.action_target: ActionTarget = action_target
        """What the targets are (TrainConfig.action_target)."""
        self._box = action_box
        self._memory = memory
        # per history: features, targets and (action_target "denoised") the targets' variance
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}
        self.norm: NormStats | None = None
        """Observation/reward normalisation from every transition of these histories."""
        counts = [self._items_of(e) for e in entries]
        self._bounds = np.cumsum([0, *counts])

    # ----------------------------------------------------------------------------- construction
    @classmethod
    def from_files(
        cls,
        paths: Sequence[Path],
        tasks: Sequence[str] | None = None,
        *,
        context: Context = FULL,
        seed: int = 0,
        action_target: ActionTarget = "executed",
    ) -> ContextDataset:
        """Index the histories in `paths` (optionally only `tasks`)."""
        from icrl.histories import HistoryFile

        found: list[tuple[Path, str]] = []
        for p in paths:
            p = Path(p)
            if not p.is_file():
                raise FileNotFoundError(f"histories file {p} does not exist (data.paths)")
            found += [(p, name) for name in HistoryFile(p).tasks]
        if tasks is not None:
            have = {n for _, n in found}
            missing = sorted(set(tasks) - have)
            if missing:
                raise ValueError(
                    f"data.tasks names {missing} that are in none of {list(map(str, paths))}; "
                    f"available: {sorted(have)[:10]}..."
                )
            found = [(p, n) for p, n in found if n in set(tasks)]
        if not found:
            raise ValueError(f"no tasks found in histories files {list(map(str, paths))}")
        histories = [_open_history(p, n) for p, n in found]
        return cls._build(found, histories, None, context, seed, action_target)

    @classmethod
    def from_histories(
        cls,
        histories: dict[str, HistoryLike],
        *,
        context: Context = FULL,
        seed: int = 0,
        action_target: ActionTarget = "executed",
    ) -> ContextDataset:
        """A dataset over in-memory histories (name -> History)."""
        found = [(None, name) for name in histories]
        return cls._build(
            found, list(histories.values()), dict(histories), context, seed, action_target
        )

    @classmethod
    def _build(
        cls, found, histories, memory, context: Context, seed: int, action_target: ActionTarget
    ) -> ContextDataset:
        families = {getattr(h, "family", "unknown") for h in histories}
        dims = {(h.obs.shape[1], h.action.shape[1]) for h in histories}
        if len(families) != 1 or len(dims) != 1:
            raise ValueError(
                f"histories mix families {sorted(families)} / (obs_dim, act_dim) {sorted(dims)}; "
                "train on one family at a time"
            )
        _check_finite(found, histories)
        entries = []
        ep_len = 0
        for (path, name), h in zip(found, histories, strict=True):
            step = np.asarray(h.step)
            if len(step) == 0:
                raise ValueError(f"history {name!r} ({path}) has no transitions")
            starts = np.flatnonzero(step == 0)
            if len(starts) == 0 or starts[0] != 0:
                starts = np.concatenate([[0], starts])
            ep_len = max(ep_len, int(step.max()) + 1)
            entries.append(_Entry(path, name, len(step), starts))
        obs_dim, act_dim = dims.pop()
        paths = sorted({str(e.path) for e in entries})
        ctx_len, ctx_eps = context.extent(entries, ep_len, str(paths))
        family = families.pop()
        box = _check_env_dims(family, obs_dim, act_dim, paths)
        info = DataInfo(
            family=family,
            obs_dim=obs_dim,
            act_dim=act_dim,
            n_tasks=len(entries),
            context_len=int(ctx_len),
            context_episodes=int(ctx_eps),
            episode_length=ep_len,
        )
        ds = cls(entries, memory, context, seed, info, action_target, box)
        ds.norm = compute_norm_stats(histories)
        # Fill this process's cache now (the histories are already loaded; workers refill): a
        # history that cannot give the targets is refused here, before any training step.
        for i, h in enumerate(histories):
            ds._cache[i] = ds._arrays(h, entries[i])
        return ds

    def _arrays(
        self, h: HistoryLike, e: _Entry
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Features, targets and their variance (None: executed actions) of history `h`."""
        feats, targets = history_tokens(h)
        if self.action_target == "executed":
            return feats, targets, None
        assert self._box is not None
        where = f"history {e.name!r}" + (f" of {e.path}" if e.path is not None else "")
        mean, var = denoised_targets(h, *self._box, where)
        return feats, mean, var

    # ----------------------------------------------------------------------------- items
    def _items_of(self, e: _Entry) -> int:
        return self.context.count(e)

    @property
    def items_per_epoch(self) -> int:
        """Contexts per epoch: as many as tile the data once."""
        return int(self._bounds[-1])

    def span(self, epoch: int, item: int) -> tuple[int, int, int]:
        """(entry index, start, stop) of the context keyed (epoch, item)."""
        i = int(np.searchsorted(self._bounds, item, side="right") - 1)
        rng = np.random.default_rng([self.seed, epoch, item, 1])
        start, stop = self.context.cut(self.entries[i], rng)
        return i, start, stop

    def tokens(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(features, targets, the targets' variance or None) of a whole history, cached per
        process; the variance is that of the executed action around its target when
        `action_target` is "denoised"."""
        if i not in self._cache:
            e = self.entries[i]
            h = self._memory[e.name] if self._memory is not None else _open_history(e.path, e.name)
            self._cache[i] = self._arrays(h, e)
        return self._cache[i]

    def held_on(self, device: torch.device | str) -> ContextDataset:
        """This dataset with every history's tokens copied to `device` once, so that its items
        are views there and `collate_contexts` pads them there: batches cut on the training
        device, in the training process, without DataLoader workers (`data.num_workers` 0)."""
        held = copy.copy(self)
        try:
            held._cache = {
                i: tuple(
                    None if a is None else torch.as_tensor(a).to(device) for a in self.tokens(i)
                )
                for i in range(len(self.entries))
            }
        except torch.OutOfMemoryError as err:
            raise torch.OutOfMemoryError(
                f"the histories ({self.info.n_tasks} tasks) do not fit in {device}'s memory "
                f"beside the model; set data.num_workers > 0 to cut batches on the CPU instead "
                f"({err})"
            ) from err
        return held

    def __len__(self) -> int:
        return self.items_per_epoch

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, item = key
        i, start, stop = self.span(epoch, item)
        feats, targets, var = self.tokens(i)
        out = {
            "features": torch.as_tensor(feats[start:stop]),
            "targets": torch.as_tensor(targets[start:stop]),
            "task": self.entries[i].name,
            "start": start,
        }
        if var is not None:
            out["target_var"] = torch.as_tensor(var[start:stop])
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self._memory is None:
            state["_cache"] = {}  # workers load their own copy lazily
        return state


def collate_contexts(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Pad contexts to the longest, on the items' device; `mask` marks real tokens. `target_var`
    (the targets' noise variance, action_target "denoised") is padded like the targets when the
    items carry it."""
    length = max(len(it["features"]) for it in items)
    b = len(items)
    f = items[0]["features"].shape[1]
    a = items[0]["targets"].shape[1]
    dev = items[0]["features"].device
    feats = torch.zeros(b, length, f, device=dev)
    targets = torch.zeros(b, length, a, device=dev)
    var = torch.zeros(b, length, a, device=dev) if "target_var" in items[0] else None
    mask = torch.zeros(b, length, dtype=torch.bool, device=dev)
    for j, it in enumerate(items):
        n = len(it["features"])
        feats[j, :n], targets[j, :n], mask[j, :n] = it["features"], it["targets"], True
        if var is not None:
            var[j, :n] = it["target_var"]
    out = {
        "features": feats,
        "targets": targets,
        "mask": mask,
        "task": [it["task"] for it in items],
        "start": [it["start"] for it in items],
    }
    if var is not None:
        out["target_var"] = var
    return out


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields, for steps [start_step, stop_step), this rank's slice of the global batch keys."""

    def __init__(
        self,
        n_items: int,
        batch_size: int,
        seed: int,
        start_step: int,
        stop_step: int,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        if batch_size % world:
            raise ValueError(
                f"batch_size={batch_size} is not divisible by the {world} DDP ranks; "
                "choose a multiple of the world size"
            )
        self.n_items, self.batch_size, self.seed = n_items, batch_size, seed
        self.start_step, self.stop_step, self.rank, self.world = start_step, stop_step, rank, world

    @property
    def batches_per_epoch(self) -> int:
        """Optimiser steps per epoch."""
        return math.ceil(self.n_items / self.batch_size)

    def global_keys(self, step: int) -> list[tuple[int, int]]:
        """All ranks' (epoch, item) keys of `step`'s batch."""
        epoch, b = divmod(step, self.batches_per_epoch)
        perm = np.random.default_rng([self.seed, epoch, 0]).permutation(self.n_items)
        idx = [(b * self.batch_size + j) % self.n_items for j in range(self.batch_size)]
        return [(epoch, int(perm[j])) for j in idx]

    def keys(self, step: int) -> list[tuple[int, int]]:
        """This rank's keys of `step`'s batch."""
        per = self.batch_size // self.world
        return self.global_keys(step)[self.rank * per : (self.rank + 1) * per]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start_step, self.stop_step):
            yield self.keys(step)

    def __len__(self) -> int:
        return max(0, self.stop_step - self.start_step)
