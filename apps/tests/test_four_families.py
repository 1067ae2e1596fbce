"""docs/results/four_families.py on the committed family records: the results page's table."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs/results"


def _run(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(RESULTS / "four_families.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def _cells(stdout: str, family: str) -> list[str]:
    line = next(ln for ln in stdout.splitlines() if ln.startswith(f"| {family} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_table_reads_the_endpoint_as_twin_compare_does(tmp_path) -> None:
    proc = _run(RESULTS / "ReacherGoal/summary.json", RESULTS / "HalfCheetahVel/summary.json")
    assert proc.returncode == 1, proc.stderr[-2000:]  # HalfCheetahVel misses the check
    assert "in-context RL check missed on: HalfCheetahVel" in proc.stderr
    head = _cells(proc.stdout.splitlines()[0], "family")
    column = head.index("from the rewards (pre-registered endpoint, per task)")
    for family in ("ReacherGoal", "HalfCheetahVel"):
        cell = _cells(proc.stdout, family)[column]
        compare = subprocess.run(
            [sys.executable, str(RESULTS / "twin_compare.py"),
             str(RESULTS / family / f"returns_{family}.csv"), "AD-Mamba",
             str(RESULTS / family / f"blinded-twin/returns_{family}.csv"), "AD-Mamba",
             str(tmp_path / f"{family}.png")],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert compare.returncode == 0, compare.stderr[-2000:]
        pattern = (
            r"gain per task (\S+) ± (\S+), model - twin per task (\S+) ± (\S+): "
            r"in-context RL from the rewards (shown|not shown)"
        )
        e = re.search(pattern, compare.stdout)
        assert e, compare.stdout
        verdict = "yes" if e[5] == "shown" else "**no**"
        assert cell == f"{verdict}: {e[1]} ± {e[2]}, over the twin {e[3]} ± {e[4]}"
    assert _cells(proc.stdout, "ReacherGoal")[column].startswith("yes:")
    assert _cells(proc.stdout, "HalfCheetahVel")[column].startswith("**no**:")


def test_a_family_without_its_twin_has_no_endpoint(tmp_path) -> None:
    for name in ("summary.json", "returns_ReacherGoal.csv"):  # (the CSV: an older summary's gain)
        shutil.copy(RESULTS / "ReacherGoal" / name, tmp_path / name)
    proc = _run(tmp_path / "summary.json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    head = _cells(proc.stdout.splitlines()[0], "family")
    column = head.index("from the rewards (pre-registered endpoint, per task)")
    assert _cells(proc.stdout, "ReacherGoal")[column] == "—"
