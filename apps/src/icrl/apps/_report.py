"""Figures like the paper's (Fig. 1 per family, Fig. 2 context lengths) and a Markdown report."""

from __future__ import annotations

import io
import os
import platform
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import numpy as np

from icrl.ad import mean_ci, read_results

from ._pipeline import FamilyResults
from ._stages import write_json_atomic

_LIBS = ("torch", "gymnasium", "mujoco", "tianshou", "h5py", "numpy", "mamba-ssm", "flash-attn")


def _curves(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    out = {}
    for name, path in paths.items():
        arrays = read_results(path)
        out[name] = next(iter(arrays.values())) if len(arrays) == 1 else arrays[name]
    return out


def _save(fig, path: Path) -> Path:
    """Render to memory, then write atomically (a killed run never leaves half a PNG)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)
    return path


def figure(
    curves: dict[str, np.ndarray],
    res: FamilyResults,
    path: Path,
    title: str,
    asymptote: bool = True,
) -> Path:
    """Mean ± 95% CI of each curve vs in-context episode, with source and reference lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for name, arr in curves.items():
        mean, ci = mean_ci(arr)
        x = np.arange(len(mean))
        ax.plot(x, mean, lw=2, label=name)
        ax.fill_between(x, mean - ci, mean + ci, alpha=0.2)
    source = np.asarray(res.source, dtype=float)
    if asymptote and source.size and np.isfinite(source).any():
        final = float(source[np.isfinite(source)][-1])
        ax.axhline(final, color="k", ls="--", lw=1.3, label="source RL (final return)")
    for name, value in res.references.items():
        ax.axhline(value, color="grey", ls={"zero": ":", "random": "-."}.get(name, ":"),
                   lw=1.1, label=f"{name}-action policy")  # fmt: skip
    ax.set(xlabel="in-context episode", ylabel="return", title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out


def _final(arr: np.ndarray) -> tuple[float, float]:
    mean, ci = mean_ci(arr)
    return float(mean[-1]), float(ci[-1])


def _family_section(res: FamilyResults, fig1: Path, fig2: Path, root: Path) -> list[str]:
    curves = _curves(res.curves)
    lines = [f"## {res.family}", "", f"![Fig. 1]({fig1.relative_to(root)})", ""]
    lines += [
        "| method | params | first episode | final episode (mean ± 95% CI) |",
        "|---|---|---|---|",
    ]
    for name, arr in curves.items():
        m0, c0 = mean_ci(arr)
        mf, cf = _final(arr)
        params = f"{res.params[name]:,}" if name in res.params else "—"
        lines.append(f"| {name} | {params} | {m0[0]:.1f} ± {c0[0]:.1f} | {mf:.1f} ± {cf:.1f} |")
    source = [x for x in res.source if np.isfinite(x)]
    if source:
        lines.append(f"| source RL (final kept block) | — | {source[0]:.1f} | {source[-1]:.1f} |")
    for name, value in res.references.items():
        lines.append(f"| {name}-action policy | — | {value:.1f} | {value:.1f} |")
    lines += ["", f"![Fig. 2]({fig2.relative_to(root)})", ""]
    lines += ["| stage | wall-clock (s) |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in res.wall.items()]
    return [*lines, ""]


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
        ctx = {f"AD-Mamba, context {k}": v for k, v in _curves(res.contexts).items()}
        fig2 = figure(ctx, res, figs / f"fig2_{res.family}.png",
                      f"{res.family}: AD-Mamba by training context")  # fmt: skip
        lines += _family_section(res, fig1, fig2, root)
        summary[res.family] = {}
        for name, arr in curves.items():
            mean, ci = _final(arr)
            summary[res.family][name] = {"final_mean": mean, "final_ci95": ci}
    lines += ["## Machine and versions", "", f"- machine: {_machine()}"]
    lines += [f"- {v}" for v in _versions()]
    report = root / "report.md"
    tmp = root / ".report.md.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(report)
    write_json_atomic(root / "summary.json", summary)
    return report
