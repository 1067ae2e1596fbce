"""Combine the evaluation directories of one family's run into docs/results/<Family>/.

    python docs/results/combine.py OUT_DIR EVAL_DIR [EVAL_DIR ...] [--primary NAME]

Writes OUT_DIR/summary.json ({method: {first_mean, first_ci95, last10_mean, last10_ci95}, ...,
"references": {source_first, source_final, random, zero}}), OUT_DIR/returns.csv (every method's
per-episode returns, columns method,seed,task,episode,return) and OUT_DIR/fig1.png (mean ± 95% CI
per method, with the zero, random and final-source lines). The method named by
--primary is stored under the key "AD-Mamba" as well, so programs find the recipe of record.

With --seed-labels the inputs may hold the same method (e.g. one recipe's runs with different AD
seeds, each in its own directory): every method becomes "METHOD, seed S" per training seed of its
rows, its summary is computed from the returns, and a method found with more than one seed gets a
pooled entry "METHOD, seeds A, B pooled" as well (every rollout of every seed; its CI over the
test tasks' means over the seeds, which share the tasks). A (method, seed) found in two inputs is
refused.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

import numpy as np

from icrl.ad import method_summary, plot_curves, read_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("evals", type=Path, nargs="+")
    parser.add_argument("--primary", help="method stored under 'AD-Mamba' too")
    parser.add_argument("--title", default="")
    parser.add_argument(
        "--seed-labels", action="store_true", help="label methods by seed, add pooled entries"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace OUT's summary.json, returns.csv, fig1.png"
    )
    args = parser.parse_args()
    outputs = [args.out / name for name in ("summary.json", "returns.csv", "fig1.png")]
    existing = [str(p) for p in outputs if p.exists()]
    if existing and not args.overwrite:  # before anything is written: all or nothing
        raise SystemExit(f"refusing to overwrite {existing}; pass --overwrite to replace them")
    for p in outputs:
        p.unlink(missing_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, object] = {}
    curves: dict[str, np.ndarray] = {}
    lines: list[str] = []
    refs = None
    pooled: dict[str, list[tuple[Path, list[int], np.ndarray]]] = {}  # method -> inputs
    for d in args.evals:
        s = json.loads((d / "summary.json").read_text())
        refs = s.pop("references")
        s.pop("source_curve", None)
        text = (d / "returns.csv").read_text()
        runs = read_results(d / "returns.csv")
        if args.seed_labels:
            seeds = seeds_by_method(text)
            for method, arr in runs.items():
                pooled.setdefault(method, []).append((d, seeds[method], arr))
            # read_results orders the seed axis by seed, as seeds_by_method lists them
            runs = {
                f"{method}, seed {seed}": arr[:, [i]]
                for method, arr in runs.items()
                for i, seed in enumerate(seeds[method])
            }
            s = {name: method_summary(arr) for name, arr in runs.items()}
            text = seed_labelled(text)
        curves.update(runs)
        summary.update(s)
        lines += text.splitlines() if not lines else text.splitlines()[1:]
    for method, parts in pooled.items():
        entry = pooled_entry(method, parts)
        if entry is not None:
            summary[entry[0]] = entry[1]
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


def pooled_entry(
    method: str, parts: list[tuple[Path, list[int], np.ndarray]]
) -> tuple[str, dict[str, object]] | None:
    """("METHOD, seeds A, B pooled", summary) of one method's rollouts over every input, or None
    for a single seed. Refuses a seed found in two inputs and inputs of different shapes. Its CI
    is over the test tasks' means over the seeds: the seeds share the tasks, whose spread
    dominates, so counting every rollout as independent would overstate the precision."""
    where: dict[int, Path] = {}
    for d, seeds, _ in parts:
        for seed in seeds:
            if seed in where:
                raise SystemExit(
                    f"{method!r} seed {seed} is in both {where[seed]} and {d}: pass one "
                    "directory per (method, seed)"
                )
            where[seed] = d
    if len(where) < 2:
        return None
    shapes = {(arr.shape[0], arr.shape[2]) for _, _, arr in parts}
    if len(shapes) != 1:
        raise SystemExit(
            f"{method!r}: {[str(d) for d, _, _ in parts]} hold different (tasks, episodes) "
            f"{sorted(shapes)}; pooling needs the same test tasks and episodes"
        )
    both = np.concatenate([arr for _, _, arr in parts], axis=1)  # tasks x seeds x episodes
    entry: dict[str, object] = dict(method_summary(both.mean(axis=1, keepdims=True)))
    entry["rollouts"] = int(np.prod(both.shape[:-1]))
    entry["ci_over"] = "the test tasks' means over the seeds"
    return f"{method}, seeds {', '.join(map(str, sorted(where)))} pooled", entry


def seeds_by_method(text: str) -> dict[str, list[int]]:
    """The training seeds of each method in a returns CSV's text, in increasing order."""
    seeds: dict[str, set[int]] = {}
    for r in csv.DictReader(io.StringIO(text)):
        seeds.setdefault(r["method"], set()).add(int(r["seed"]))
    return {m: sorted(s) for m, s in seeds.items()}


def seed_labelled(text: str) -> str:
    """A returns CSV's text with each row's method renamed "METHOD, seed S"."""
    reader = csv.DictReader(io.StringIO(text))
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=reader.fieldnames or [], lineterminator="\n")
    w.writeheader()
    for r in reader:
        w.writerow({**r, "method": f"{r['method']}, seed {r['seed']}"})
    return out.getvalue()


if __name__ == "__main__":
    main()
