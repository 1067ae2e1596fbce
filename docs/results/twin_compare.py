"""Set a model beside its blinded twin (rewards zeroed in the context), episode by episode and
task by task: the control that tells in-context RL from a schedule read from position.

    python docs/results/twin_compare.py MODEL_CSV MODEL_METHOD TWIN_CSV TWIN_METHOD OUT_PNG \
        [--zero Z] [--target T] [--last 10]

Prints, per test task, the first episode and the mean of the last `--last` episodes of both, and
draws OUT_PNG: (left) the mean over tasks per episode with the zero-action and `--target` lines,
(right) each task's last-episodes mean for both models. A task's value is its mean over the
CSV's seeds. A CSV may be an evaluation's `returns.csv` or `apps/reproduce.py`'s per-family table
(`returns_<Family>.csv`, with a `context` column): from that, the rows of `--context` are read.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from icrl.ad import read_results

WIDTHS = (11, 12, 10, 11)  # the printed columns


def table(curves: np.ndarray, last: int) -> tuple[np.ndarray, np.ndarray]:
    """(first episode, mean of the last `last` episodes) per task (rows: tasks)."""
    return curves[:, 0], curves[:, -last:].mean(1)


def read_curves(path: Path, context: str) -> dict[str, np.ndarray]:
    """method -> (tasks × seeds × episodes) of an evaluation's CSV, or of the rows of `context`
    in reproduce.py's table (cut to the evaluation's columns and read by the same reader)."""
    with path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows or "context" not in rows[0]:
        return read_results(path)
    keep = [r for r in rows if r["context"] == context]
    if not keep:
        have = sorted({r["context"] for r in rows})
        raise SystemExit(f"{path}: no rows of context {context!r}; it has {have}")
    with tempfile.TemporaryDirectory() as tmp:
        cut = Path(tmp) / "returns.csv"
        with cut.open("w", newline="") as f:
            columns = ("method", "seed", "task", "episode", "return")
            writer = csv.DictWriter(f, columns, extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            writer.writerows(keep)
        return read_results(cut)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model_csv", type=Path)
    p.add_argument("model_method")
    p.add_argument("twin_csv", type=Path)
    p.add_argument("twin_method")
    p.add_argument("out_png", type=Path)
    p.add_argument("--zero", type=float, help="the zero-action return (a dotted line)")
    p.add_argument("--target", type=float, help="a target return (a dashed line)")
    p.add_argument("--last", type=int, default=10, help="episodes averaged at the end")
    p.add_argument("--context", default="full history",
                   help="the rows read from a reproduce.py table (its context column)")  # fmt: skip
    a = p.parse_args()
    curves = {}
    for label, path, method in (("with rewards", a.model_csv, a.model_method),
                                ("rewards zeroed (twin)", a.twin_csv, a.twin_method)):  # fmt: skip
        runs = read_curves(path, a.context)
        if method not in runs:
            raise SystemExit(f"{path}: no method {method!r}; it has {sorted(runs)}")
        curves[label] = runs[method].mean(1)  # tasks x seeds x episodes -> per task
    shapes = {c.shape for c in curves.values()}
    if len(shapes) != 1:
        raise SystemExit(f"the two CSVs hold different rollouts x episodes: {shapes}")
    (m_first, m_last), (t_first, t_last) = (table(c, a.last) for c in curves.values())
    print(f"task  model first  model last{a.last}  twin first  twin last{a.last}")
    for i, row in enumerate(zip(m_first, m_last, t_first, t_last, strict=True)):
        print(f"{i:4d}  " + "  ".join(f"{v:{w}.1f}" for v, w in zip(row, WIDTHS, strict=True)))
    print(f"mean  {m_first.mean():11.1f}  {m_last.mean():12.1f}  {t_first.mean():10.1f}  "
          f"{t_last.mean():11.1f}")  # fmt: skip
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for label, c in curves.items():
        left.plot(c.mean(0), label=label)
    if a.zero is not None:
        left.axhline(a.zero, ls=":", c="gray", label="zero action")
    if a.target is not None:
        left.axhline(a.target, ls="--", c="k", lw=0.8, label="target")
    left.set(xlabel="in-context episode", ylabel="return, mean over test tasks")
    left.legend(fontsize=8, loc="center right")
    x = np.arange(len(m_last))
    right.bar(x - 0.2, m_last, 0.4, label="with rewards")
    right.bar(x + 0.2, t_last, 0.4, label="rewards zeroed (twin)")
    right.scatter(x - 0.2, m_first, c="k", marker="_", s=120, label="first episode")
    right.scatter(x + 0.2, t_first, c="k", marker="_", s=120)
    right.set(xlabel="test task", ylabel=f"mean of the last {a.last} episodes", xticks=x)
    right.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(a.out_png, dpi=110)
    print(f"wrote {a.out_png}")


if __name__ == "__main__":
    main()
