"""In-context evaluation output shared by the baselines, in the same format as AD's evaluator.

One CSV row per evaluated episode with columns ``method, seed, task, episode, return`` (``seed``:
training seed; ``task``: index of the test task; ``episode``: episode on that task, from 0), written
as ``returns.csv``, and ``curves.png`` plotting, per method, the mean return over (seed, task)
pairs against the episode with a 95% confidence band (normal approximation: mean ± z·SEM,
z = 1.95996); the same file names, columns and statistics as ``icrl.ad``'s evaluator.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from icrl.histories.runtime import atomic_write

COLUMNS = ("method", "seed", "task", "episode", "return")
Z95 = 1.959963984540054  # normal 97.5% quantile, as icrl.ad


@dataclass(frozen=True)
class EpisodeResult:
    """One row of the results CSV: the return of one evaluated episode."""

    method: str
    seed: int
    task: int
    episode: int
    ret: float


def results_to_csv_text(rows: Iterable[EpisodeResult]) -> str:
    """The CSV text of `rows` (header ``method,seed,task,episode,return``)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in rows:
        writer.writerow([r.method, r.seed, r.task, r.episode, repr(float(r.ret))])
    return buf.getvalue()


def write_results_csv(
    rows: Iterable[EpisodeResult], path: Path, *, overwrite: bool = False
) -> None:
    """Write the results CSV atomically; an existing file is kept unless `overwrite`."""
    atomic_write(Path(path), results_to_csv_text(rows), overwrite=overwrite)


def read_results_csv(path: Path) -> list[EpisodeResult]:
    """Read a results CSV written by this module (or by AD's evaluator)."""
    path = Path(path)
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ValueError(
                f"{path}: expected CSV columns {','.join(COLUMNS)}, found {reader.fieldnames}"
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


def summarize(rows: Sequence[EpisodeResult]) -> dict[str, dict[str, np.ndarray]]:
    """Per method: episode indices, mean return, 95% CI half-width and count over (seed, task)."""
    by_method: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by_method[r.method][r.episode].append(r.ret)
    out: dict[str, dict[str, np.ndarray]] = {}
    for method, per_ep in by_method.items():
        eps = np.array(sorted(per_ep))
        vals = [np.asarray(per_ep[e], dtype=np.float64) for e in eps]
        mean = np.array([v.mean() for v in vals])
        n = np.array([v.size for v in vals])
        sem = np.array([v.std(ddof=1) / math.sqrt(v.size) if v.size > 1 else 0.0 for v in vals])
        out[method] = {"episode": eps, "mean": mean, "ci95": Z95 * sem, "n": n}
    return out


def plot_results(
    rows: Sequence[EpisodeResult], path: Path, *, title: str = "", overwrite: bool = False
) -> None:
    """Plot mean return ± 95% CI against episode, one line per method, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError(f"no results to plot into {path}")
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for method, s in sorted(summarize(rows).items()):
        (line,) = ax.plot(s["episode"], s["mean"], label=method, marker="o", markersize=3)
        ax.fill_between(
            s["episode"],
            s["mean"] - s["ci95"],
            s["mean"] + s["ci95"],
            alpha=0.25,
            lw=0,
            color=line.get_color(),
        )
    ax.set_xlabel("in-context episode (episodes on the test task)")
    ax.set_ylabel("return (mean ± 95% CI)")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        atomic_write(Path(path), lambda p: fig.savefig(p, format="png"), overwrite=overwrite)
    finally:
        plt.close(fig)


def write_results(
    rows: Sequence[EpisodeResult], out_dir: Path, *, title: str = "", overwrite: bool = False
) -> tuple[Path, Path]:
    """Write ``returns.csv`` and ``curves.png`` into `out_dir`; returns both paths."""
    out_dir = Path(out_dir)
    csv_path, png_path = out_dir / "returns.csv", out_dir / "curves.png"
    for p in (csv_path, png_path):
        if p.exists() and not overwrite:
            raise FileExistsError(f"{p} already exists; pass another output folder or remove it")
    write_results_csv(rows, csv_path, overwrite=overwrite)
    plot_results(rows, png_path, title=title, overwrite=overwrite)
    return csv_path, png_path
