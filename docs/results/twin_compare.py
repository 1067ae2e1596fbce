"""Set a model beside its blinded twin (rewards zeroed in the context), episode by episode and
task by task: the control that tells in-context RL from a schedule read from position.

    python docs/results/twin_compare.py MODEL_CSV MODEL_METHOD TWIN_CSV TWIN_METHOD OUT_PNG \
        [--zero Z] [--target T] [--last 10]

Prints, per test task, the first episode and the mean of the last `--last` episodes of both;
then, for both, the paired gain (each rollout's last-episodes mean minus its own first episode)
and the late gain (the same minus its mean over episodes `--late-from` to `--late-to` - 1,
0-based: the climb after the first episodes' jump, which a twin makes too where it is read from
position), the model's last-episodes mean minus the twin's per task, and the pre-registered
endpoint (docs/results/README.md): the model's paired gain, and it minus the twin's, per task;
each mean ± the 95 % CI half-width of icrl's summaries (z·SEM over rollouts, or over tasks).
It draws OUT_PNG: (left) the mean over tasks per episode with the zero-action and `--target` lines,
(right) each task's last-episodes mean for both models. A task's value is its mean over the
CSV's seeds. A CSV may be an evaluation's `returns.csv` or `apps/reproduce.py`'s per-family table
(`returns_<Family>.csv`, with a `context` column): from that, the rows of `--context` are read.
Only the training seeds both CSVs hold are compared (a note names them when the two differ).
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from icrl.ad import method_summary, read_results
from icrl.histories.results import mean_ci95

WIDTHS = (11, 12, 10, 11)  # the printed columns


def table(curves: np.ndarray, last: int) -> tuple[np.ndarray, np.ndarray]:
    """(first episode, mean of the last `last` episodes) per task (rows: tasks)."""
    return curves[:, 0], curves[:, -last:].mean(1)


def print_gains(rollouts: dict[str, np.ndarray], last: int, late_from: int, late_to: int) -> None:
    """Each model's paired and late gain over its rollouts (tasks x seeds x episodes)."""
    for label, r in rollouts.items():
        if not 0 <= late_from < late_to <= r.shape[-1] - last:
            raise SystemExit(f"--late-from {late_from} / --late-to {late_to}: expected a window "
                             f"before the last {last} of {r.shape[-1]} episodes")  # fmt: skip
        s = method_summary(r, last)  # the paired gain of the app's summaries
        late = mean_ci95(late_gains(r, last, late_from, late_to))
        print(f"{label}: paired gain {s['gain_mean']:+.1f} ± {s['gain_ci95']:.1f}, late gain (from "
              f"episodes {late_from}-{late_to - 1}) {late[0]:+.1f} ± {late[1]:.1f} "
              f"({r.shape[0]} tasks x {r.shape[1]} seeds)")  # fmt: skip


def late_gains(r: np.ndarray, last: int, late_from: int, late_to: int) -> np.ndarray:
    """Each rollout's mean of its last `last` episodes minus its mean over episodes
    `late_from`..`late_to` - 1 (`r`: tasks x seeds x episodes; the result: tasks x seeds)."""
    return r[..., -last:].mean(-1) - r[..., late_from:late_to].mean(-1)


ENDPOINT_LAST = 10  # the pre-registered rule's end window, whatever --last says


def endpoint(model: np.ndarray, twin: np.ndarray) -> Endpoint:
    """The pre-registered reading (docs/results/README.md) of a model's and its twin's rollouts
    (tasks x seeds x episodes), per test task (each a mean over seeds), 95 % t-intervals over
    tasks (few tasks: a z-interval over 10 covers ~92 %): the model's paired gain (its last 10
    episodes' mean minus its first episode), and that gain minus the twin's. In-context RL read
    from the rewards is shown only where both intervals lie wholly above 0: the model improves,
    and by more than a model that reads only positions."""
    m = paired_gains(model, ENDPOINT_LAST).mean(1)
    t = paired_gains(twin, ENDPOINT_LAST).mean(1)
    gain, over_twin = mean_t95(m), mean_t95(m - t)
    shown = all(mean - half > 0 for mean, half in (gain, over_twin))
    return Endpoint(gain, over_twin, shown)


def mean_t95(values: np.ndarray) -> tuple[float, float]:
    """Mean and 95 % CI half-width with Student's t (n - 1 degrees of freedom; n >= 2)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        raise SystemExit(f"a t-interval needs at least 2 test tasks, got {len(v)}")
    return float(v.mean()), t975(len(v) - 1) * float(v.std(ddof=1)) / np.sqrt(len(v))


def t975(df: int) -> float:
    """Student's t 0.975 quantile, its density integrated numerically (no SciPy here): to 1e-4
    of the tables (df 1: 12.706, df 9: 2.2622, df 29: 2.0452)."""
    from math import gamma, pi, sqrt

    x = np.linspace(0.0, 60.0, 600_001)
    pdf = gamma((df + 1) / 2) / (sqrt(df * pi) * gamma(df / 2)) * (1 + x**2 / df) ** (-(df + 1) / 2)
    cdf = 0.5 + np.concatenate([[0.0], np.cumsum((pdf[1:] + pdf[:-1]) / 2 * np.diff(x))])
    return float(np.interp(0.975, cdf, x))


@dataclass(frozen=True)
class Endpoint:
    """The pre-registered endpoint: (mean, 95 % CI half-width) of the model's paired gain and of
    it minus the twin's, per test task, and whether in-context RL from the rewards is shown."""

    gain: tuple[float, float]
    over_twin: tuple[float, float]
    shown: bool

    def __str__(self) -> str:
        (g, gh), (d, dh) = self.gain, self.over_twin
        return (f"model paired gain per task {g:+.1f} ± {gh:.1f}, model - twin per task {d:+.1f} "
                f"± {dh:.1f}: in-context RL from the rewards "
                f"{'shown' if self.shown else 'not shown'}")  # fmt: skip


def paired_gains(r: np.ndarray, last: int) -> np.ndarray:
    """Each rollout's mean of its last `last` episodes minus its first episode (`r`: tasks x
    seeds x episodes; the result: tasks x seeds): the gain of icrl's summaries."""
    return r[..., -last:].mean(-1) - r[..., 0]


def read_pair(
    model_csv: Path, model_method: str, twin_csv: Path, twin_method: str, context: str
) -> tuple[np.ndarray, np.ndarray, str]:
    """(model, twin, note): the two methods' rollouts (tasks x seeds x episodes) on the training
    seeds both CSVs hold; the note names the seeds when the two CSVs differ (else it is "")."""
    pairs = ((model_csv, model_method), (twin_csv, twin_method))
    found = [read_seeds(path, context, method) for path, method in pairs]
    common = found[0] & found[1]
    if not common:
        raise SystemExit(f"the two CSVs share no training seed: {sorted(found[0])} and "
                         f"{sorted(found[1])}")  # fmt: skip
    note = ""
    if found[0] != found[1]:
        note = (f"seeds {sorted(common)} only: the model has {sorted(found[0])}, the twin "
                f"{sorted(found[1])}")  # fmt: skip
    rollouts = []
    for path, method in pairs:
        runs = read_curves(path, context, common)
        if method not in runs:
            raise SystemExit(f"{path}: no method {method!r}; it has {sorted(runs)}")
        rollouts.append(runs[method])
    if rollouts[0].shape != rollouts[1].shape:
        shapes = [r.shape for r in rollouts]
        raise SystemExit(f"the two CSVs hold different tasks x seeds x episodes: {shapes}")
    return rollouts[0], rollouts[1], note


def read_curves(path: Path, context: str, seeds: set[int] | None = None) -> dict[str, np.ndarray]:
    """method -> (tasks × seeds × episodes) of an evaluation's CSV, or of the rows of `context`
    in reproduce.py's table, optionally only the rows of `seeds` (cut to the evaluation's
    columns and read by the same reader)."""
    rows = _rows(path, context)
    keep = [r for r in rows if seeds is None or int(r["seed"]) in seeds]
    with tempfile.TemporaryDirectory() as tmp:
        cut = Path(tmp) / "returns.csv"
        with cut.open("w", newline="") as f:
            columns = ("method", "seed", "task", "episode", "return")
            writer = csv.DictWriter(f, columns, extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            writer.writerows(keep)
        return read_results(cut)


def read_seeds(path: Path, context: str, method: str) -> set[int]:
    """The training seeds of `method` in the CSV (of `context`, in reproduce.py's table)."""
    return {int(r["seed"]) for r in _rows(path, context) if r["method"] == method}


def _rows(path: Path, context: str) -> list[dict[str, str]]:
    with path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows or "context" not in rows[0]:
        return rows
    keep = [r for r in rows if r["context"] == context]
    if not keep:
        have = sorted({r["context"] for r in rows})
        raise SystemExit(f"{path}: no rows of context {context!r}; it has {have}")
    return keep


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model_csv", type=Path)
    p.add_argument("model_method")
    p.add_argument("twin_csv", type=Path)
    p.add_argument("twin_method")
    p.add_argument("out_png", type=Path)
    p.add_argument("--zero", type=float, help="the zero-action return (a dotted line)")
    p.add_argument("--target", type=float, help="a target return (a dashed line)")
    p.add_argument("--last", type=int, default=10, help="episodes averaged at the end")
    p.add_argument("--late-from", type=int, default=4,
                   help="first episode (0-based) of the late gain's baseline window")  # fmt: skip
    p.add_argument("--late-to", type=int, default=8,
                   help="the late gain's baseline window ends before this episode")  # fmt: skip
    p.add_argument("--context", default="full history",
                   help="the rows read from a reproduce.py table (its context column)")  # fmt: skip
    a = p.parse_args(argv)
    model, twin, note = read_pair(a.model_csv, a.model_method, a.twin_csv, a.twin_method, a.context)
    if note:
        print(note)
    rollouts = {"with rewards": model, "rewards zeroed (twin)": twin}
    curves = {label: r.mean(1) for label, r in rollouts.items()}  # per task
    (m_first, m_last), (t_first, t_last) = (table(c, a.last) for c in curves.values())
    print(f"task  model first  model last{a.last}  twin first  twin last{a.last}")
    for i, row in enumerate(zip(m_first, m_last, t_first, t_last, strict=True)):
        print(f"{i:4d}  " + "  ".join(f"{v:{w}.1f}" for v, w in zip(row, WIDTHS, strict=True)))
    print(f"mean  {m_first.mean():11.1f}  {m_last.mean():12.1f}  {t_first.mean():10.1f}  "
          f"{t_last.mean():11.1f}")  # fmt: skip
    print_gains(rollouts, a.last, a.late_from, a.late_to)
    print(f"pre-registered endpoint: {endpoint(model, twin)}")
    diff, half = mean_ci95(m_last - t_last)
    print(f"model - twin, last {a.last} per task: {diff:+.1f} ± {half:.1f}")
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
