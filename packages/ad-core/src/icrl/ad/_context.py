"""The training context: which part of a learning history one training sample is, as a value.

A context is parsed once where a user gives it (DataConfig's `context`/`n_episodes`/`window`
fields, or a spec such as "episodes:4" on a command line) into one of three frozen types. The
dataset then asks the value (how many contexts tile a history, where a sampled one lies, how long
the longest is) instead of branching on a mode string.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Context", "EpisodesContext", "FullContext", "WindowContext", "parse_context"]


class Indexed(Protocol):
    """What a context needs to know of one history (ContextDataset's index entry)."""

    @property
    def length(self) -> int:
        """Kept transitions (tokens) of the history."""
        ...

    @property
    def episode_starts(self) -> np.ndarray:
        """Token indices where a kept episode starts (the first is 0)."""
        ...


class _Context(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid", frozen=True)

    kind: str
    """The mode's name ("full", "episodes", "window"), as DataConfig's `context` field spells it."""

    def flat(self) -> dict[str, object]:
        """DataConfig's dict form of this context: `context` (the kind), `n_episodes`, `window`."""
        return {"context": self.kind, "n_episodes": None, "window": None} | self.model_dump(
            exclude={"kind"}
        )

    def count(self, entry: Indexed) -> int:
        """Contexts per epoch of one history: as many as tile it once."""
        raise NotImplementedError

    def cut(self, entry: Indexed, rng: np.random.Generator) -> tuple[int, int]:
        """(start, stop) token indices of one sampled context of `entry`."""
        raise NotImplementedError

    def extent(
        self, entries: Sequence[Indexed], episode_length: int, where: str
    ) -> tuple[int, int]:
        """(tokens, episodes) of the longest context over `entries`, refusing a context that the
        data cannot fill (`where` names the files in the message)."""
        raise NotImplementedError


class FullContext(_Context):
    """A task's whole downsampled history (the paper's setting)."""

    kind: Literal["full"] = "full"
    """The mode's name ("full"), as DataConfig's `context` field spells it."""

    def __str__(self) -> str:
        return "full"

    def count(self, entry: Indexed) -> int:
        return 1

    def cut(self, entry: Indexed, rng: np.random.Generator) -> tuple[int, int]:
        return 0, entry.length

    def extent(
        self, entries: Sequence[Indexed], episode_length: int, where: str
    ) -> tuple[int, int]:
        return max(e.length for e in entries), max(len(e.episode_starts) for e in entries)


class EpisodesContext(_Context):
    """`n_episodes` consecutive kept episodes from a random start."""

    kind: Literal["episodes"] = "episodes"
    """The mode's name ("episodes"), as DataConfig's `context` field spells it."""
    n_episodes: int = Field(gt=0)
    """Kept episodes per context."""

    def __str__(self) -> str:
        return f"episodes:{self.n_episodes}"

    def count(self, entry: Indexed) -> int:
        return math.ceil(len(entry.episode_starts) / self.n_episodes)

    def cut(self, entry: Indexed, rng: np.random.Generator) -> tuple[int, int]:
        n_eps = len(entry.episode_starts)
        first = int(rng.integers(0, max(1, n_eps - self.n_episodes + 1)))
        start = int(entry.episode_starts[first])
        return start, start + span_length(entry, first, self.n_episodes)

    def extent(
        self, entries: Sequence[Indexed], episode_length: int, where: str
    ) -> tuple[int, int]:
        n = self.n_episodes
        most_eps = max(len(e.episode_starts) for e in entries)
        if n > most_eps:
            raise ValueError(
                f"data.n_episodes={n} is more episodes than the histories hold (at "
                f"most {most_eps} kept episodes per task, in {where}); set data.n_episodes <= "
                f"{most_eps} or use data.context='full'"
            )
        tokens = max(
            span_length(e, i, n)
            for e in entries
            for i in range(max(1, len(e.episode_starts) - n + 1))
        )
        return tokens, n


class WindowContext(_Context):
    """Random windows of `window` consecutive transitions."""

    kind: Literal["window"] = "window"
    """The mode's name ("window"), as DataConfig's `context` field spells it."""
    window: int = Field(gt=1)
    """Transitions per context."""

    def __str__(self) -> str:
        return f"window:{self.window}"

    def count(self, entry: Indexed) -> int:
        return math.ceil(entry.length / self.window)

    def cut(self, entry: Indexed, rng: np.random.Generator) -> tuple[int, int]:
        start = int(rng.integers(0, max(1, entry.length - self.window + 1)))
        return start, min(entry.length, start + self.window)

    def extent(
        self, entries: Sequence[Indexed], episode_length: int, where: str
    ) -> tuple[int, int]:
        longest = max(e.length for e in entries)
        if self.window > longest:
            raise ValueError(
                f"data.window={self.window} is longer than the longest history ({longest} steps, "
                f"in {where}); set data.window <= {longest} or use data.context='full'"
            )
        return self.window, max(1, math.ceil(self.window / episode_length))


Context = Annotated[FullContext | EpisodesContext | WindowContext, Field(discriminator="kind")]
"""A training context: FullContext, EpisodesContext(n_episodes=N) or WindowContext(window=C)."""

FULL = FullContext()
"""The default context (a frozen value, shared)."""


def span_length(entry: Indexed, first: int, n: int) -> int:
    """Tokens of the `n` kept episodes of `entry` from its episode `first` (fewer at the end)."""
    stop_ep = first + n
    starts = entry.episode_starts
    stop = entry.length if stop_ep >= len(starts) else int(starts[stop_ep])
    return stop - int(starts[first])


def parse_context(spec: str) -> FullContext | EpisodesContext | WindowContext:
    """ "full" | "episodes:N" | "window:C" -> the context it names (a command line's spelling;
    `str(context)` gives it back). ValueError names the spec."""
    kind, _, n = spec.partition(":")
    if kind == "full" and not n:
        return FullContext()
    if kind == "episodes" and n.isdigit() and int(n) > 0:
        return EpisodesContext(n_episodes=int(n))
    if kind == "window" and n.isdigit() and int(n) > 1:
        return WindowContext(window=int(n))
    raise ValueError(
        f"context {spec!r} is not understood; use 'full', 'episodes:N' or 'window:C' (N > 0, C > 1)"
    )
