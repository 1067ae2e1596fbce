"""Combine the evaluation directories of one family's run into docs/results/<Family>/.

    python docs/results/combine.py OUT_DIR EVAL_DIR [EVAL_DIR ...] [--primary NAME]

Writes OUT_DIR/summary.json ({method: {first_mean, first_ci95, last10_mean, last10_ci95}, ...,
"references": {source_first, source_final, random, zero}}), OUT_DIR/returns.csv (every method's
per-episode returns, columns method,seed,task,episode,return) and OUT_DIR/fig1.png (mean ± 95% CI
per method, with the zero, random and final-source lines). The method named by
--primary is stored under the key "AD-Mamba" as well, so programs find the recipe of record.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from icrl.ad import plot_curves, read_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("evals", type=Path, nargs="+")
    parser.add_argument("--primary", help="method stored under 'AD-Mamba' too")
    parser.add_argument("--title", default="")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, object] = {}
    curves: dict[str, np.ndarray] = {}
    lines: list[str] = []
    refs = None
    for d in args.evals:
        s = json.loads((d / "summary.json").read_text())
        refs = s.pop("references")
        s.pop("source_curve", None)
        summary.update(s)
        curves.update(read_results(d / "returns.csv"))
        text = (d / "returns.csv").read_text().splitlines()
        lines += text if not lines else text[1:]
    if args.primary:
        summary["AD-Mamba"] = summary[args.primary]
    summary["references"] = refs
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / "returns.csv").write_text("\n".join(lines) + "\n")
    lines_at = {k: refs[k] for k in ("zero", "random") if refs and refs.get(k) is not None}
    if refs and refs.get("source_final") is not None:
        lines_at["source final (last 10 kept episodes)"] = refs["source_final"]
    plot_curves(curves, args.out / "fig1.png", references=lines_at, title=args.title)
    if refs and refs.get("source_final") is not None:
        print(
            f"source first/final (stochastic, train tasks): {refs['source_first']:.2f} / "
            f"{refs['source_final']:.2f}"
        )
    for name, s in summary.items():
        if name != "references":
            print(
                f"{name}: first {s['first_mean']:.2f} ± {s['first_ci95']:.2f}, "
                f"last-10 {s['last10_mean']:.2f} ± {s['last10_ci95']:.2f}"
            )


if __name__ == "__main__":
    main()
