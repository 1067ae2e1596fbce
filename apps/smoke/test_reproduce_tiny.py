"""Smoke: `apps/reproduce.py` on its default tiny preset, end to end, then rerun from cache.

Run by `uv run nox -s smoke` (minutes on 2 cores); not part of the per-package test sessions.
"""

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
METHODS = ("AD-Mamba", "AD-Transformer", "MACAW", "MQL")


def _run(out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TQDM_DISABLE": "1"}
    cmd = [sys.executable, str(ROOT / "apps/reproduce.py"), "--out", str(out), "--no-progress"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1500)


def test_tiny_preset_end_to_end_then_cached(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = _run(out)
    assert first.returncode == 0, first.stderr[-3000:]
    report = (out / "report.md").read_text()
    for method in (*METHODS, "source RL", "random-action", "zero-action", "tiny preset"):
        assert method in report, f"{method!r} missing from report.md"
    for fig in ("fig1_ReacherGoal.png", "fig2_ReacherGoal.png"):
        assert (out / "figures" / fig).stat().st_size > 10_000
    curves = list((out / "stages").glob("*/eval/returns.csv")) + list(
        (out / "stages").glob("mql-*/returns.csv")
    )
    seen = set()
    for path in curves:
        with path.open() as f:
            seen |= {row["method"] for row in csv.DictReader(f)}
    assert set(METHODS) <= seen

    start = time.perf_counter()
    again = _run(out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count(": cached") == first.stdout.count("done in")
    assert time.perf_counter() - start < 60
