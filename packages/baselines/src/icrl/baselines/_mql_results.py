"""In-context evaluation results in AD's format: a CSV and a PNG of mean ± 95% CI vs episode.

CSV columns ``method,seed,task,episode,return`` (one row per episode of one test task under one
training seed). The plot shows, per method, the mean return at each episode over all
(seed, task) pairs and a 95% Student-t confidence interval of that mean.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

FIELDS = ("method", "seed", "task", "episode", "return")

# two-sided 95% Student-t quantiles t_{0.975, df}, df = 1..30; 1.96 beyond
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def _csv_text(rows: Iterable[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        missing = [f for f in FIELDS if f not in row]
        if missing:
            raise ValueError(f"result row {dict(row)} lacks fields {missing}; expected {FIELDS}")
        writer.writerow({f: row[f] for f in FIELDS})
    return buf.getvalue()


def write_results_csv(rows: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Write `rows` atomically; an existing file with other content is never overwritten."""
    path = Path(path)
    text = _csv_text(rows)
    if path.exists():
        if path.read_text() == text:
            return path
        raise FileExistsError(f"{path} exists with other results; remove it or pick another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
    tmp.replace(path)
    return path


def read_results_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a results CSV, typed (seed, task, episode: int; return: float)."""
    path = Path(path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != FIELDS:
            raise ValueError(f"{path}: columns {reader.fieldnames}, expected {list(FIELDS)}")
        return [
            {
                "method": r["method"],
                "seed": int(r["seed"]),
                "task": int(r["task"]),
                "episode": int(r["episode"]),
                "return": float(r["return"]),
            }
            for r in reader
        ]


def mean_ci95(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of its two-sided 95% Student-t confidence interval (0 for n = 1)."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_ci95: no values")
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    t = _T975[n - 2] if n - 1 <= len(_T975) else 1.96
    return mean, t * sd / math.sqrt(n)


def curves(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[tuple[int, float, float]]]:
    """Per method: (episode, mean, CI half-width) over all (seed, task) pairs, by episode."""
    groups: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        groups[str(r["method"])][int(r["episode"])].append(float(r["return"]))
    return {
        m: [(e, *mean_ci95(v)) for e, v in sorted(by_ep.items())] for m, by_ep in groups.items()
    }


def plot_results(rows: Iterable[Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """PNG of mean return ± 95% CI vs episode, one line per method (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; remove it or pick another path")
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, pts in curves(rows).items():
        ep = [p[0] for p in pts]
        mean = [p[1] for p in pts]
        half = [p[2] for p in pts]
        ax.plot(ep, mean, marker="o", label=method)
        ax.fill_between(
            ep,
            [m - h for m, h in zip(mean, half, strict=True)],
            [m + h for m, h in zip(mean, half, strict=True)],
            alpha=0.25,
        )
    ax.set_xlabel("episode on the test task")
    ax.set_ylabel("return (mean ± 95% CI)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path
