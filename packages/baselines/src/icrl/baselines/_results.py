"""In-context evaluation output shared by the baselines, in the same format as AD's evaluator.

One CSV row per evaluated episode with columns ``method, seed, task, episode, return`` (``seed``:
training seed; ``task``: index of the test task; ``episode``: episode on that task, from 0), written
as ``returns.csv``, and ``curves.png`` plotting, per method, the mean return over (seed, task)
pairs against the episode with a 95% confidence band (normal approximation: mean ± z·SEM,
z = 1.95996); the same file names, columns and statistics as ``icrl.ad``'s evaluator. The format
itself (columns, CSV text and reading, the CI, the curve drawing) is icrl.histories.results'.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from icrl.histories.results import (
    CSV_COLUMNS,
    Z95,
    EpisodeResult,
    mean_ci95,
    plot_mean_ci,
    read_results_csv,
    results_csv_text,
    write_png,
)
from icrl.histories.runtime import atomic_write

__all__ = [
    "COLUMNS",
    "Z95",
    "EpisodeResult",
    "plot_results",
    "read_results_csv",
    "results_to_csv_text",
    "summarize",
    "write_results",
    "write_results_csv",
]

COLUMNS = CSV_COLUMNS  # the baselines' name for the shared columns
results_to_csv_text = results_csv_text  # the baselines' name for the shared CSV text


def write_results_csv(
    rows: Iterable[EpisodeResult], path: Path, *, overwrite: bool = False
) -> None:
    """Write the results CSV atomically; an existing file is kept unless `overwrite`."""
    atomic_write(Path(path), results_csv_text(rows), overwrite=overwrite)


def summarize(rows: Sequence[EpisodeResult]) -> dict[str, dict[str, np.ndarray]]:
    """Per method: episode indices, mean return, 95% CI half-width and count over (seed, task)."""
    by_method: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by_method[r.method][r.episode].append(r.ret)
    out: dict[str, dict[str, np.ndarray]] = {}
    for method, per_ep in by_method.items():
        eps = np.array(sorted(per_ep))
        stats = np.array([mean_ci95(per_ep[e]) for e in eps]).reshape(-1, 2)
        n = np.array([len(per_ep[e]) for e in eps])
        out[method] = {"episode": eps, "mean": stats[:, 0], "ci95": stats[:, 1], "n": n}
    return out


def plot_results(
    rows: Sequence[EpisodeResult], path: Path, *, title: str = "", overwrite: bool = False
) -> None:
    """Plot mean return ± 95% CI against episode, one line per method, to a PNG."""
    from matplotlib.figure import Figure

    if not rows:
        raise ValueError(f"no results to plot into {path}")
    # a Figure of its own, not pyplot's global registry: icrl.apps runs this beside other plots
    fig = Figure(figsize=(6, 4), dpi=120)
    ax = fig.subplots()
    for method, s in sorted(summarize(rows).items()):
        plot_mean_ci(ax, s["episode"], s["mean"], s["ci95"], band={"lw": 0}, label=method,
                     marker="o", markersize=3)  # fmt: skip
    ax.set_xlabel("in-context episode (episodes on the test task)")
    ax.set_ylabel("return (mean ± 95% CI)")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    write_png(fig, Path(path), overwrite=overwrite)


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
