"""The per-episode results format of in-context evaluation, shared by icrl.ad and icrl.baselines.

One CSV row per evaluated episode, columns exactly ``method, seed, task, episode, return``
(``seed``: training seed; ``task``: index of the test task; ``episode``: in-context episode on
that task, from 0; ``return`` written with ``repr`` so that it reads back to the same float).
Curves are the mean return over (seed, task) pairs per episode with a 95% confidence interval by
the normal approximation, mean ± z·SEM with z = 1.95996, drawn as a line and a band around it.

icrl.histories is the lowest package that icrl.ad, icrl.baselines and icrl.apps all depend on, so
the format is written once here (docs/architecture.md, "Shared run plumbing"). It needs numpy
only: the plotting helper draws on axes that its caller made, so that icrl.histories does not
depend on matplotlib (its callers do).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from icrl.histories.runtime import atomic_write

__all__ = [
    "CSV_COLUMNS",
    "Z95",
    "EpisodeResult",
    "mean_ci95",
    "plot_mean_ci",
    "read_results_csv",
    "results_csv_text",
    "write_png",
]

CSV_COLUMNS = ("method", "seed", "task", "episode", "return")
Z95 = 1.959963984540054  # normal 97.5% quantile: the CI is mean ± z·sem over tasks × seeds


@dataclass(frozen=True)
class EpisodeResult:
    """One row of the results CSV: the return of one evaluated episode."""

    method: str
    seed: int
    task: int
    episode: int
    ret: float


def results_csv_text(rows: Iterable[EpisodeResult]) -> str:
    """The CSV text of `rows`, header first (``method,seed,task,episode,return``)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow([r.method, r.seed, r.task, r.episode, repr(float(r.ret))])
    return buf.getvalue()


def read_results_csv(path: str | os.PathLike[str]) -> list[EpisodeResult]:
    """The rows of a results CSV (written by icrl.ad or icrl.baselines), in file order.

    Raises ValueError naming the file when its columns are not exactly CSV_COLUMNS.
    """
    path = Path(path)
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
            raise ValueError(
                f"{path}: expected CSV columns {','.join(CSV_COLUMNS)}, found {reader.fieldnames}"
            )
        return [
            EpisodeResult(
                method=row["method"],
                seed=int(row["seed"]),
                task=int(row["task"]),
                episode=int(row["episode"]),
                ret=float(row["return"]),
            )
            for row in reader
        ]


def mean_ci95(values: Any) -> tuple[float, float]:
    """Mean and 95% CI half-width (z·SEM, sample std) of the finite values among `values`.

    One value has a half-width of 0; none has a NaN mean. Non-finite values (an episode that a
    rollout did not reach) are left out rather than poisoning the mean.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if not len(v):
        return float("nan"), 0.0
    half = Z95 * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0
    return float(v.mean()), float(half)


def plot_mean_ci(
    ax: Any,
    x: Any,
    mean: Any,
    ci: Any,
    *,
    band: Mapping[str, Any] | None = None,
    **line: Any,
) -> Any:
    """Draw one curve on matplotlib axes `ax`: `mean` as a line (`line`: `ax.plot`'s keywords)
    and mean ± `ci` as a band in the line's colour (`band`: `fill_between`'s keywords; alpha
    0.25 unless given). Returns the line."""
    mean, ci = np.asarray(mean), np.asarray(ci)
    (drawn,) = ax.plot(x, mean, **line)
    style = {"alpha": 0.25, "color": drawn.get_color(), **(band or {})}
    ax.fill_between(x, mean - ci, mean + ci, **style)
    return drawn


def write_png(fig: Any, path: str | os.PathLike[str], *, overwrite: bool = True) -> Path:
    """Render matplotlib figure `fig` as a PNG and write it to `path` atomically; returns `path`.

    Rendered into memory first, so that a failed render or a killed run never leaves half a PNG
    (runtime.atomic_write; `overwrite=False` refuses an existing file). The caller closes `fig`.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write(path, buf.getvalue(), overwrite=overwrite)
