"""The results page's table, from the committed `apps/reproduce.py` summaries of each family.

    python docs/results/four_families.py docs/results/{ReacherGoal,HalfCheetahVel}/summary.json

Each SUMMARY is a `summary.json` written by `apps/reproduce.py` (keyed by family, then method:
`first_mean`, `first_ci95`, `last10_mean`, `last10_ci95`; and `references`). Prints one Markdown
table: every method's first in-context episode → mean of its last 10 (± 95% CI over test tasks ×
seeds), the source's final return, and the checks the paper's claims and issue 19 ask for:

- **in-context RL**: AD-Mamba's last-10 interval lies wholly above its first-episode interval
  (`last10_mean - last10_ci95 > first_mean + first_ci95`, a conservative reading of "above its
  first episode by more than the 95% CI");
- **paired gain**: AD-Mamba's last-10 mean minus its first episode, rollout by rollout (± 95%
  CI; `gain_mean`/`gain_ci95`, read from `returns_<Family>.csv` beside a summary written before
  summary.json had them). Every method meets the same tasks, so this interval is not widened by
  the spread between tasks, which dominates the unpaired ones on HalfCheetahVel; shown beside the
  check, which stays the conservative one;
- **Mamba ≥ transformer** and **AD > MACAW**: by the last-10 means (the CIs are in the row);
- **AD vs MQL**: the last-10 difference AD-Mamba − MQL;
- **blinded twin**: where `blinded-twin/summary.json` lies beside a summary (`reproduce-job.sh`
  TWIN=1), AD-Mamba trained and evaluated with every context reward zeroed: a climb that the twin
  matches follows the context's length, not its rewards;
- **from the rewards**: where the twin's per-episode table lies beside it too, the pre-registered
  endpoint (docs/results/README.md; `twin_compare.py`): per test task, AD-Mamba's paired gain and
  that gain minus its twin's, shown only when both 95% t-intervals over tasks lie above 0.

Exit status 1 when a family misses the in-context RL check (the page must then explain it with
`diagnose`), 2 when a file lacks a field.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import ModuleType

METHODS = ("AD-Mamba", "AD-Transformer", "MACAW", "MQL")


def _cell(m: dict[str, float] | None) -> str:
    if m is None:
        return "—"
    return (
        f"{m['first_mean']:.1f} ± {m['first_ci95']:.1f} → "
        f"**{m['last10_mean']:.1f}** ± {m['last10_ci95']:.1f}"
    )


def icrl(m: dict[str, float]) -> bool:
    """AD-Mamba's last-10 interval wholly above its first-episode interval."""
    return m["last10_mean"] - m["last10_ci95"] > m["first_mean"] + m["first_ci95"]


def paired_gain(summary: Path, family: str, m: dict[str, float]) -> tuple[float, float]:
    """AD-Mamba's paired gain: from its summary, or from the full-history rows of the
    per-episode table beside it (summaries written before the field existed)."""
    if "gain_mean" in m:
        return m["gain_mean"], m["gain_ci95"]
    # Only older summaries need the packages (uv run) and the table beside them.
    tc = _twin_compare(f"{summary} has no gain_mean; computing it")
    from icrl.ad import method_summary

    table = summary.parent / f"returns_{family}.csv"
    if not table.is_file():
        raise ValueError(f"{summary} has no gain_mean and {table} is not there to compute it from")
    try:
        curves = tc.read_curves(table, "full history")
    except SystemExit as e:  # read_curves' own message; not this script's exit 1
        raise ValueError(str(e)) from None
    if "AD-Mamba" not in curves:
        raise ValueError(f"{table}: no AD-Mamba rows (it has {sorted(curves)})")
    s = method_summary(curves["AD-Mamba"])
    return s["gain_mean"], s["gain_ci95"]


def _twin_compare(what: str) -> ModuleType:
    """twin_compare.py beside this script, which needs the packages (uv run)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        import twin_compare

        import icrl.ad  # noqa: F401  (what twin_compare reads with)
    except ImportError as e:
        raise ValueError(f"{what} needs {e.name}: uv run") from e
    return twin_compare


def endpoint_cell(summary: Path, family: str) -> str:
    """The pre-registered endpoint (docs/results/README.md) of AD-Mamba against its blinded twin,
    from the per-episode tables beside `summary` ("—" without the twin's): shown or not, the
    model's paired gain and that gain minus the twin's, per test task."""
    twin_csv = summary.parent / "blinded-twin" / f"returns_{family}.csv"
    if not twin_csv.is_file():
        return "—"
    tc = _twin_compare("the pre-registered endpoint")
    model_csv = summary.parent / f"returns_{family}.csv"
    try:
        model, twin, _ = tc.read_pair(model_csv, "AD-Mamba", twin_csv, "AD-Mamba", "full history")
    except SystemExit as e:  # read_pair's own message; not this script's exit 1
        raise ValueError(str(e)) from None
    e = tc.endpoint(model, twin)
    (g, gh), (d, dh) = e.gain, e.over_twin
    return f"{_yes(e.shown)}: {g:+.1f} ± {gh:.1f}, over the twin {d:+.1f} ± {dh:.1f}"


def _yes(flag: bool) -> str:
    return "yes" if flag else "**no**"


def row(
    family: str,
    s: dict,
    twin: dict | None = None,
    gain: tuple[float, float] | None = None,
    reading: str = "—",
) -> tuple[str, bool]:
    """One family's Markdown row, and whether its AD-Mamba learns in context by the check."""
    mamba, tf = s["AD-Mamba"], s.get("AD-Transformer")
    macaw, mql = s.get("MACAW"), s.get("MQL")
    last = mamba["last10_mean"]
    ok = icrl(mamba)
    checks = [
        _yes(ok),
        f"{gain[0]:+.1f} ± {gain[1]:.1f}" if gain else "—",
        reading,
        _yes(last >= tf["last10_mean"]) if tf else "—",
        _yes(last > macaw["last10_mean"]) if macaw else "—",
        f"{last - mql['last10_mean']:+.1f}" if mql else "—",
    ]
    source = s["references"].get("source_final")
    cells = [family, *(_cell(s.get(k)) for k in METHODS), _cell(twin)]
    cells += [f"{source:.1f}" if source is not None else "—", *checks]
    return "| " + " | ".join(cells) + " |", ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("summaries", nargs="+", type=Path, help="apps/reproduce.py summary.json files")
    args = ap.parse_args(argv)
    head = ["family", *METHODS, "AD-Mamba, rewards zeroed (blinded twin)", "source, final",
            "in-context RL (AD-Mamba)", "AD-Mamba gain, paired",
            "from the rewards (pre-registered endpoint, per task)",
            "Mamba ≥ transformer", "AD-Mamba > MACAW", "AD-Mamba − MQL"]  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    missed = []
    for path in args.summaries:
        twin_path = path.parent / "blinded-twin" / "summary.json"
        twins = json.loads(twin_path.read_text()) if twin_path.exists() else {}
        for family, s in json.loads(path.read_text()).items():
            try:
                gain = paired_gain(path, family, s["AD-Mamba"])
                reading = endpoint_cell(path, family)
                line, ok = row(family, s, twins.get(family, {}).get("AD-Mamba"), gain, reading)
            except (KeyError, TypeError) as e:
                print(f"{path}: {family}: missing field {e}", file=sys.stderr)
                return 2
            except ValueError as e:
                print(f"{path}: {family}: {e}", file=sys.stderr)
                return 2
            print(line)
            if not ok:
                missed.append(family)
    if missed:
        print(f"\nin-context RL check missed on: {', '.join(missed)}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
