"""docs/results/twin_compare.py on a committed probe: its paired gains are the app's own."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

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
    endpoint = re.search(r"pre-registered endpoint: model paired gain per task ([+-][\d.]+) ± "
                         r"([\d.]+), model - twin per task ([+-][\d.]+) ± ([\d.]+): in-context "
                         r"RL from the rewards (shown|not shown)", proc.stdout)  # fmt: skip
    assert endpoint, proc.stdout
    model = _paired_gain_per_task(PROBE / "returns_HalfCheetahVel.csv")
    twin = _paired_gain_per_task(PROBE / "blinded-twin/returns_HalfCheetahVel.csv")
    lows = []
    for k, values in enumerate((model, model - twin)):
        # Student's t, 9 degrees of freedom (10 test tasks): 2.262157 in the tables
        mean, half = values.mean(), 2.262157 * values.std(ddof=1) / np.sqrt(len(values))
        got = float(endpoint[2 * k + 1]), float(endpoint[2 * k + 2])
        assert got == (round(mean, 1), round(half, 1))
        lows.append(mean - half)
    assert endpoint[5] == ("shown" if min(lows) > 0 else "not shown")


def _paired_gain_per_task(path: Path) -> np.ndarray:
    """Straight from the CSV: per test task, the mean over seeds of (last 10 episodes' mean -
    the first episode) of AD-Mamba's full-history rollouts."""
    returns: dict[tuple[int, int], dict[int, float]] = defaultdict(dict)
    with path.open() as f:
        for row in csv.DictReader(f):
            if row["method"] == "AD-Mamba" and row["context"] == "full history":
                returns[int(row["task"]), int(row["seed"])][int(row["episode"])] = float(
                    row["return"]
                )
    gains: dict[int, list[float]] = defaultdict(list)
    for (task, _), by_episode in returns.items():
        r = np.array([by_episode[e] for e in sorted(by_episode)])
        gains[task].append(r[-10:].mean() - r[0])
    return np.array([np.mean(gains[t]) for t in sorted(gains)])


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
