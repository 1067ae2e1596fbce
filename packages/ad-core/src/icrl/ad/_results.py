"""Per-episode in-context returns as CSV/NPZ, and the mean ± 95% CI learning-curve plot.

The CSV format is shared with icrl.baselines: columns exactly `method,seed,task,episode,return`,
one row per (method, training seed, test task index, in-context episode index from 0). The format
itself (columns, CSV text and reading, the 95% CI, the curve drawing) is icrl.histories.results';
this module holds AD's arrays of returns (tasks × seeds × episodes), summary.json's statistics
and AD's figure.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from icrl.histories import results as shared  # the per-episode format, shared with baselines
from icrl.histories.runtime import atomic_write

__all__ = [
    "CSV_COLUMNS",
    "RESULT_FILES",
    "check_out_dir",
    "mean_ci",
    "method_summary",
    "plot_curves",
    "read_results",
    "reference_summary",
    "write_results",
]


CSV_COLUMNS = shared.CSV_COLUMNS  # icrl.ad's public name of the shared columns

# What `evaluate` writes into its output directory.
RESULT_FILES = ("returns.csv", "returns.npz", "summary.json", "curves.png")


def check_out_dir(out_dir: Path, names: Sequence[str] = RESULT_FILES) -> None:
    """Refuse an output directory that cannot take the results, before any work is done.

    It must not be a file (nor lie under one), must not already hold any of `names`, and its
    nearest existing folder must be writable (probed with a temporary file, which also catches a
    read-only mount that a permission check would not). Raises FileExistsError for results that
    are already there, ValueError otherwise, naming the path.
    """
    out_dir = Path(out_dir)
    existing = [str(out_dir / n) for n in names if (out_dir / n).exists()]
    if existing:
        raise FileExistsError(
            f"{out_dir} already holds results {existing}; refusing to overwrite them; choose a "
            "new output directory or remove them"
        )
    base = out_dir
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        what = "is a file" if base == out_dir else f"lies under {base}, which is a file"
        raise ValueError(f"output directory {out_dir} {what}; choose a directory path")
    try:
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as err:
        raise ValueError(
            f"output directory {out_dir} cannot be written ({err.strerror or err} in {base}); "
            "choose another directory"
        ) from None


def _refuse_existing(*paths: Path) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing:
        raise FileExistsError(
            f"refusing to overwrite {existing}; choose a new output directory or remove them"
        )


def write_results(
    out_dir: Path,
    method: str,
    seeds: Sequence[int],
    tasks: Sequence[Mapping[str, Any]],
    returns: np.ndarray,
) -> dict[str, Path]:
    """Write returns (tasks × seeds × episodes) as returns.csv and returns.npz in `out_dir`."""
    returns = np.asarray(returns, dtype=np.float64)
    if returns.shape[:2] != (len(tasks), len(seeds)) or returns.ndim != 3:
        raise ValueError(
            f"returns has shape {returns.shape}; expected (tasks={len(tasks)}, "
            f"seeds={len(seeds)}, episodes)"
        )
    out_dir = Path(out_dir)
    csv_path, npz_path = out_dir / "returns.csv", out_dir / "returns.npz"
    _refuse_existing(csv_path, npz_path)
    rows = (
        shared.EpisodeResult(method, seed, t, e, float(returns[t, s, e]))
        for t in range(returns.shape[0])
        for s, seed in enumerate(seeds)
        for e in range(returns.shape[2])
    )
    atomic_write(csv_path, shared.results_csv_text(rows))

    def _npz(p: Path) -> None:
        with open(p, "wb") as f:  # a file object: np.savez would append ".npz" to a name
            np.savez(
                f,
                returns=returns,
                seeds=np.asarray(seeds, dtype=np.int64),
                method=np.asarray(method),
                tasks_json=np.asarray(json.dumps(list(tasks))),
            )

    atomic_write(npz_path, _npz)
    return {"csv": csv_path, "npz": npz_path}


def read_results(path: Path) -> dict[str, np.ndarray]:
    """Read a returns CSV (ours or a baseline's) into method -> (tasks × seeds × episodes)."""
    rows = shared.read_results_csv(path)
    out: dict[str, np.ndarray] = {}
    for method in dict.fromkeys(r.method for r in rows):
        mine = [r for r in rows if r.method == method]
        tasks = sorted({r.task for r in mine})
        seeds = sorted({r.seed for r in mine})
        eps = sorted({r.episode for r in mine})
        arr = np.full((len(tasks), len(seeds), len(eps)), np.nan)
        ti, si = {t: i for i, t in enumerate(tasks)}, {s: i for i, s in enumerate(seeds)}
        for r in mine:
            arr[ti[r.task], si[r.seed], r.episode] = r.ret
        out[method] = arr
    return out


def mean_ci(returns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-episode mean and 95% CI half-width over all tasks × seeds (normal approximation)."""
    flat = np.asarray(returns, dtype=np.float64).reshape(-1, returns.shape[-1])
    stats = np.array([shared.mean_ci95(flat[:, e]) for e in range(flat.shape[1])]).reshape(-1, 2)
    return stats[:, 0], stats[:, 1]


def method_summary(returns: np.ndarray, last: int = 10) -> dict[str, float]:
    """`first_mean`/`first_ci95` (the first in-context episode) and `last10_mean`/`last10_ci95`
    (each rollout's mean over its last `last` episodes), mean ± 95% CI over tasks × seeds; and
    `gain_mean`/`gain_ci95`, the same for each rollout's own last-10 mean minus its first episode.

    The gain is paired because every method meets the same test tasks: where tasks differ widely
    in return (HalfCheetahVel's target speeds), the first and last-10 intervals are mostly the
    spread between tasks and overlap even when every rollout climbs; the paired interval is not
    widened by it. Non-finite values (an episode a rollout did not reach) are left out of each
    figure on its own, so where some are, the gain counts only the rollouts with both a finite
    first episode and a finite last-10 mean, and may differ from last10_mean - first_mean."""
    r = np.asarray(returns, dtype=np.float64)
    first, last_mean_per_rollout = r[..., 0], r[..., -last:].mean(axis=-1)
    first_mean, first_ci = shared.mean_ci95(first)
    last_mean, last_ci = shared.mean_ci95(last_mean_per_rollout)
    gain_mean, gain_ci = shared.mean_ci95(last_mean_per_rollout - first)
    return {
        "first_mean": first_mean,
        "first_ci95": first_ci,
        "last10_mean": last_mean,
        "last10_ci95": last_ci,
        "gain_mean": gain_mean,
        "gain_ci95": gain_ci,
        "episodes": int(r.shape[-1]),
        "rollouts": int(np.prod(r.shape[:-1])),
    }


def reference_summary(
    source_curve: np.ndarray | None, references: Mapping[str, float], last: int = 10
) -> dict[str, float | None]:
    """`source_first`/`source_final`: the mean of the source curve's first / last `last` kept
    episodes (its whole history); `random` and `zero`: the reference policies' mean returns."""
    out: dict[str, float | None] = {"source_first": None, "source_final": None}
    if source_curve is not None:
        c = np.asarray(source_curve, dtype=np.float64)
        c = c[np.isfinite(c)]
        if len(c):
            out["source_first"] = float(c[:last].mean())
            out["source_final"] = float(c[-last:].mean())
    out["random"] = references.get("random")
    out["zero"] = references.get("zero")
    return out


def plot_curves(
    curves: Mapping[str, np.ndarray],
    out_png: Path,
    *,
    source: Mapping[str, np.ndarray] | None = None,
    references: Mapping[str, float] | None = None,
    title: str = "",
) -> Path:
    """Plot mean ± 95% CI of each method's returns vs in-context episode, with the source curve(s)
    (one value per episode) and horizontal reference lines (zero / random policy)."""
    from matplotlib.figure import Figure

    out_png = Path(out_png)
    _refuse_existing(out_png)
    from matplotlib.patches import Patch

    # a Figure of its own, not pyplot's global figure registry: icrl.apps plots the baselines'
    # curves in other threads meanwhile
    fig = Figure(figsize=(9.5, 4.2), dpi=120)
    ax = fig.subplots()
    for name, arr in curves.items():
        mean, ci = mean_ci(arr)
        shared.plot_mean_ci(ax, np.arange(len(mean)), mean, ci, label=name, lw=2)
    for name, curve in (source or {}).items():
        c = np.asarray(curve, dtype=np.float64)
        ax.plot(np.arange(len(c)), c, "--", color="k", lw=1.5, label=name)
    styles = {"zero": ":", "random": "-."}
    for name, value in (references or {}).items():
        # "zero"/"random" name a policy; any other reference (a source return) is labelled as given
        label = f"{name}-action policy" if name in styles else name
        ax.axhline(value, ls=styles.get(name, "--"), color="grey", lw=1.2, label=label)
    ax.set_xlabel("in-context episode")
    ax.set_ylabel("return")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Patch(color="grey", alpha=0.3))
    labels.append("shaded: 95% CI over tasks × seeds")
    # outside the axes, so that it never hides a curve
    ax.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              frameon=False)  # fmt: skip
    fig.tight_layout()
    return shared.write_png(fig, out_png)
