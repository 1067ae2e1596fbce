"""docs/results/twin_compare.py on a committed probe: its paired gains are the app's own."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = ROOT / "docs/results/HalfCheetahVel/probes/small-2000-steps-mamba-twin"


def test_twin_compare_gains_match_the_summaries(tmp_path) -> None:
    out = tmp_path / "twin.png"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "docs/results/twin_compare.py"),
         str(PROBE / "returns_HalfCheetahVel.csv"), "AD-Mamba",
         str(PROBE / "blinded-twin/returns_HalfCheetahVel.csv"), "AD-Mamba", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    gains = re.findall(r"paired gain ([+-][\d.]+) ± ([\d.]+), late gain .*? ([+-][\d.]+) ±",
                       proc.stdout)  # fmt: skip
    assert len(gains) == 2, proc.stdout
    for (gain, half, _), summary in zip(
        gains, (PROBE / "summary.json", PROBE / "blinded-twin/summary.json"), strict=True
    ):
        mamba = json.loads(summary.read_text())["HalfCheetahVel"]["AD-Mamba"]
        assert float(gain) == round(mamba["gain_mean"], 1)
        assert float(half) == round(mamba["gain_ci95"], 1)
    assert re.search(r"model - twin, last 10 per task: [+-][\d.]+ ± [\d.]+", proc.stdout)
    assert out.stat().st_size > 10_000


def test_twin_compare_refuses_a_late_window_inside_the_last_episodes(tmp_path) -> None:
    csv = str(PROBE / "returns_HalfCheetahVel.csv")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "docs/results/twin_compare.py"), csv, "AD-Mamba", csv,
         "AD-Transformer", str(tmp_path / "x.png"), "--late-from", "30", "--late-to", "34"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1 and "--late-from 30" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "x.png").exists()


def test_twin_compare_compares_the_seeds_both_csvs_hold(tmp_path) -> None:
    twin = ROOT / "docs/results/HalfCheetahVel/probes/small-2000-steps-transformer-twin"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "docs/results/twin_compare.py"),
         str(PROBE / "returns_HalfCheetahVel.csv"), "AD-Transformer",
         str(twin / "returns_HalfCheetahVel.csv"), "AD-Transformer", str(tmp_path / "t.png")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "seeds [0, 1] only: the model has [0, 1, 2], the twin [0, 1]" in proc.stdout
    assert proc.stdout.count("(10 tasks x 2 seeds)") == 2, proc.stdout
