"""Figures like the paper's (Fig. 1 per family, Fig. 2 context lengths) and a Markdown report."""

from __future__ import annotations

import csv
import io
import json
import os
import platform
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TypeVar

import numpy as np

from icrl.ad import Context, EpisodesContext, WindowContext, read_results
from icrl.ad._results import mean_ci, method_summary
from icrl.histories.results import plot_mean_ci, read_results_csv, write_png
from icrl.histories.runtime import atomic_write

from ._pipeline import FamilyResults
from ._stages import write_json_atomic

_LIBS = ("torch", "gymnasium", "mujoco", "tianshou", "h5py", "numpy", "mamba-ssm", "flash-attn")


_K = TypeVar("_K")  # a curve's key: a method name, or an AD-Mamba training context


def _curves(paths: dict[_K, Path]) -> dict[_K, np.ndarray]:
    out = {}
    for name, path in paths.items():
        arrays = read_results(path)
        out[name] = next(iter(arrays.values())) if len(arrays) == 1 else arrays[name]
    return out


def _save(fig, path: Path) -> Path:
    """Render to memory, then write atomically (a killed run never leaves half a PNG)."""
    return write_png(fig, path)


_LINESTYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "D", "v", "P")


def context_label(context: Context) -> str:
    """A training context in plain words (EpisodesContext(n_episodes=4) -> "last 4 episodes")."""
    if isinstance(context, EpisodesContext):
        n = context.n_episodes
        return f"last {n} episode{'s' if n != 1 else ''}"
    if isinstance(context, WindowContext):
        return f"last {context.window} transitions"
    return "full history"


def _reference_lines(
    refs: dict[str, float | None], noise: dict | None = None
) -> list[tuple[str, float, str]]:
    final = (
        "source RL, final (mean of its last 10 kept episodes)"
        if noise is None
        else "source's final policy (last 10 noise-distilled episodes, eps near 0)"
    )
    lines = [
        (final, refs.get("source_final"), "--"),
        ("random-action policy", refs.get("random"), "-."),
        ("zero-action policy", refs.get("zero"), ":"),
    ]
    return [(name, float(v), ls) for name, v, ls in lines if v is not None and np.isfinite(v)]


def figure(
    curves: dict[str, np.ndarray],
    res: FamilyResults,
    path: Path,
    title: str,
    asymptote: bool = True,
) -> Path:
    """Mean ± 95% CI of each curve vs in-context episode, with source and reference lines.

    Lines differ in style and marker as well as colour (Fig. 2's curves often overlap); the
    legend sits outside the axes, and the y range leaves room for every reference line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(9.5, 4.4), dpi=120)
    lows, highs = [], []
    for i, (name, arr) in enumerate(curves.items()):
        mean, ci = mean_ci(arr)
        x = np.arange(len(mean))
        plot_mean_ci(ax, x, mean, ci, band={"alpha": 0.15, "zorder": 2}, lw=1.8,
                     ls=_LINESTYLES[i % 4], marker=_MARKERS[i % 6],
                     markevery=max(len(x) // 10, 1), ms=4, label=name, zorder=3 + i)  # fmt: skip
        lows.append(np.nanmin(mean - ci))
        highs.append(np.nanmax(mean + ci))
    refs = _reference_lines(res.summary_refs, res.noise_distillation) if asymptote else []
    for name, value, ls in refs:
        ax.axhline(value, color="k" if name.startswith("source") else "grey", ls=ls, lw=1.2,
                   label=name, zorder=1)  # fmt: skip
        lows.append(value)
        highs.append(value)
    if lows:
        lo, hi = float(np.nanmin(lows)), float(np.nanmax(highs))
        pad = 0.06 * (hi - lo or 1.0)  # keep every line off the frame
        ax.set_ylim(lo - pad, hi + pad)
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Patch(color="grey", alpha=0.3))
    labels.append("shaded: 95% CI over test tasks × seeds")
    ax.set(xlabel="in-context episode (no gradient step)", ylabel="return", title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              frameon=False)  # fmt: skip
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out


def _pm(mean: float, ci: float, signed: bool = False) -> str:
    return f"{mean:{'+' if signed else ''}.1f} ± {ci:.1f}"


_POLICY_NAMES = {
    "random": "random-action policy (test tasks)",
    "zero": "zero-action policy (test tasks)",
}


def _source_names(noise: dict | None) -> dict[str, str]:
    """Labels of the source references: a noise-distilled history's first and last episodes are
    the final policy with eps near 1 and near 0 (0 after the anneal: deterministic), not
    the learning run's."""
    if noise is None:
        return {
            "source_first": "source RL, its first 10 kept episodes (train tasks, stochastic)",
            "source_final": "source RL, its last 10 kept episodes (train tasks, stochastic)",
        }
    return {
        "source_first": "noise-distilled history, its first 10 episodes (train tasks, eps near 1)",
        "source_final": "noise-distilled history, its last 10 episodes (train tasks, the source's "
        "final policy with eps near 0)",
    }


def _histories_line(noise: dict | None) -> list[str]:
    if noise is None:
        return []
    return [
        f"Histories: **noise-distilled** (AD-epsilon, not the paper's recipe; settings "
        f"`{json.dumps(noise, sort_keys=True)}`): the source's final policy with annealed noise, "
        "not its learning runs (icrl.histories README).",
        "",
    ]


def _family_section(res: FamilyResults, fig1: Path, fig2: Path, root: Path) -> list[str]:
    lines = [f"## {res.family}", "", *_histories_line(res.noise_distillation)]
    lines += [f"![Fig. 1]({fig1.relative_to(root)})", ""]
    lines += [
        "In-context return on unseen test tasks, mean ± 95% CI over test tasks × seeds:",
        "",
        "| method | params (no position table) | first in-context episode "
        "| mean of the last 10 episodes | gain (last 10 − first, paired per rollout) |",
        "|---|---|---|---|---|",
    ]
    for name, arr in _curves(res.curves).items():
        s = method_summary(arr)
        params = f"{res.params[name]:,}" if name in res.params else "—"
        lines.append(
            f"| {name} | {params} | {_pm(s['first_mean'], s['first_ci95'])} "
            f"| {_pm(s['last10_mean'], s['last10_ci95'])} "
            f"| {_pm(s['gain_mean'], s['gain_ci95'], signed=True)} |"
        )
    lines += ["", "References (single numbers, not learning curves):", ""]
    lines += ["| reference | return |", "|---|---|"]
    names = {**_source_names(res.noise_distillation), **_POLICY_NAMES}
    for key, label in names.items():
        value = res.summary_refs.get(key)
        if value is not None:
            lines.append(f"| {label} | {value:.1f} |")
    lines += ["", f"![Fig. 2]({fig2.relative_to(root)})", ""]
    table = f"returns_{res.family}.csv"
    lines += [f"Per-episode returns of every curve of both figures: [`{table}`]({table}).", ""]
    lines += ["| stage | wall-clock (s) |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in res.wall.items()]
    if res.ad_seeds_side_by_side > 1:
        lines += ["", f"Each AD model's seeds trained side by side ({res.ad_seeds_side_by_side} "
                  "processes): a training row is the longest seed's wall-clock."]  # fmt: skip
    if res.baselines_side_by_side:
        lines += ["", "MACAW and MQL ran at the same time on the GPU: their wall-clocks overlap."]
    if res.baselines_beside_ad:
        lines += ["", "The baselines ran beside the AD stages (from the end of the histories "
                  "on): their wall-clocks overlap those of the AD stages."]  # fmt: skip
    return [*lines, ""]


def family_summary(res: FamilyResults) -> dict[str, object]:
    """One family's entry of summary.json: per method first/last-10 mean ± 95% CI, references."""
    out: dict[str, object] = {}
    for name, arr in _curves(res.curves).items():
        out[name] = method_summary(arr)
    out["references"] = {
        k: res.summary_refs.get(k) for k in ("source_first", "source_final", "random", "zero")
    }
    return out


RETURNS_COLUMNS = ("method", "context", "seed", "task", "episode", "return")


def write_returns_table(res: FamilyResults, path: Path) -> Path:
    """Every curve of both figures in one CSV, one row per (method, training context, seed,
    test task, episode): Fig. 1's methods (the AD models on its context; MACAW and MQL with an
    empty context) and Fig. 2's shorter AD-Mamba contexts, for programs that compare runs."""
    sources = [
        (name, res.fig1_context if name.startswith("AD-") else None, path_)
        for name, path_ in res.curves.items()
    ]
    sources += [("AD-Mamba", c, p) for c, p in res.contexts.items() if c != res.fig1_context]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(RETURNS_COLUMNS)
    for method, context, source in sources:
        label = context_label(context) if context is not None else ""
        for r in read_results_csv(source):
            if r.method == method:
                writer.writerow([method, label, r.seed, r.task, r.episode, repr(r.ret)])
    atomic_write(path, buf.getvalue())
    return path


def _versions() -> list[str]:
    rows = []
    for lib in _LIBS:
        try:
            rows.append(f"{lib} {metadata.version(lib)}")
        except metadata.PackageNotFoundError:
            continue
    return rows


def _machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {gpu}"


def write_report(results: Sequence[FamilyResults], root: Path, preset: str, command: str) -> Path:
    """Draw both figures per family and write ``report.md`` (plus ``summary.json``)."""
    figs = root / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    lines = ["# icrl reproduction report", "", f"Command: `{command}`", ""]
    if preset == "tiny":
        lines += [
            "> **tiny preset**: every stage ran with tiny models and budgets on the CPU. It proves",
            "> the plumbing, not the science: these curves say nothing about in-context learning.",
            "",
        ]
    summary = {}
    for res in results:
        curves = _curves(res.curves)
        fig1 = figure(curves, res, figs / f"fig1_{res.family}.png",
                      f"{res.family}: in-context return on unseen test tasks")  # fmt: skip
        ctx = {
            f"AD-Mamba trained on {context_label(k)}": v for k, v in _curves(res.contexts).items()
        }
        fig2 = figure(ctx, res, figs / f"fig2_{res.family}.png",
                      f"{res.family}: AD-Mamba by training context")  # fmt: skip
        lines += _family_section(res, fig1, fig2, root)
        write_returns_table(res, root / f"returns_{res.family}.csv")
        summary[res.family] = family_summary(res)
    lines += ["## Machine and versions", "", f"- machine: {_machine()}"]
    lines += [f"- {v}" for v in _versions()]
    report = root / "report.md"
    atomic_write(report, "\n".join(lines) + "\n")
    write_json_atomic(root / "summary.json", summary)
    return report
