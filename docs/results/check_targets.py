"""Check a family's summary.json against issue 17's in-context RL targets and print each one.

    python docs/results/check_targets.py docs/results/ReacherGoal/icrl-record/summary.json \
        docs/results/HalfCheetahVel/icrl-record/summary.json [--method AD-Mamba]

ReacherGoal: `source_final` better than -6; the method's `last10_mean` at least 90% of the way
from `random` to `source_final`, and above its `first_mean`. HalfCheetahVel: `last10_mean` at
least halfway from `zero` to `source_final`, and at least 100 above `first_mean`. The family is
read from the nearest parent directory named after one unless --family names it (an
`apps/reproduce.py` summary.json is keyed by family: each of its families is checked). Exit
status 1 when a target is missed, 2 when a file cannot be checked (a field missing or null, an
unknown family).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

FAMILIES = ("ReacherGoal", "HalfCheetahVel")  # those issue 17 sets targets for


def targets(family: str, m: dict[str, float], refs: dict[str, float]) -> list[tuple[str, bool]]:
    """(description, met) of every target of `family` for one method's summary."""
    first, last = m["first_mean"], m["last10_mean"]
    if family == "ReacherGoal":
        mark = refs["random"] + 0.9 * (refs["source_final"] - refs["random"])
        return [
            (f"source_final {refs['source_final']:.2f} better than -6", refs["source_final"] > -6),
            (f"last10_mean {last:.2f} >= 90% mark {mark:.2f}", last >= mark),
            (f"last10_mean {last:.2f} > first_mean {first:.2f}", last > first),
        ]
    if family == "HalfCheetahVel":
        mark = (refs["zero"] + refs["source_final"]) / 2
        return [
            (f"last10_mean {last:.2f} >= halfway mark {mark:.2f}", last >= mark),
            (f"gain {last - first:+.2f} >= +100", last - first >= 100),
        ]
    raise LookupError(
        f"issue 17 sets targets for ReacherGoal and HalfCheetahVel, not {family!r} (pass --family "
        "when the file's directory does not name it)"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("summaries", type=Path, nargs="+", help="docs/results/<Family>/summary.json")
    p.add_argument("--method", default="AD-Mamba", help="the summary's method key to check")
    p.add_argument("--family", help="the family, where the parent directory does not name it")
    a = p.parse_args()
    missed = False
    for path in a.summaries:
        entries = _entries(path, json.loads(path.read_text()), a.family)
        if not entries:
            print(f"{path}: no family to check (--family {a.family}; targets exist for {FAMILIES})")
            return 2
        for family, s in entries:
            try:
                checks = targets(family, s[a.method], s["references"])
            except KeyError as e:
                print(f"{path}: no field {e} (methods: {[k for k in s if k != 'references']})")
                return 2
            except (LookupError, TypeError) as e:  # an unknown family; a null reference
                print(f"{path}: cannot check: {e}")
                return 2
            for text, ok in checks:
                print(f"{family}: {'met   ' if ok else 'MISSED'} {text}")
                missed |= not ok
    return 1 if missed else 0


def _entries(path: Path, s: dict, family: str | None) -> list[tuple[str, dict]]:
    """(family, summary) pairs of one file: a combine.py / icrl-job.sh summary holds one
    family's methods (the family is the nearest parent folder named after one, e.g.
    docs/results/ReacherGoal/icrl-record/), an apps/reproduce.py summary is keyed by family."""
    if "references" in s:
        here = path.resolve().parents
        return [(family or next((p.name for p in here if p.name in FAMILIES), here[0].name), s)]
    chosen = [(f, e) for f, e in s.items() if family in (None, f)]
    for f, _ in chosen:
        if f not in FAMILIES:
            print(f"{path}: {f}: issue 17 sets no targets for it (skipped)")
    return [(f, e) for f, e in chosen if f in FAMILIES or family == f]


if __name__ == "__main__":
    sys.exit(main())
