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
    endpoint = re.search(r"model - twin late gain per task: ([+-][\d.]+) ± ([\d.]+) \(the "
                         r"interval (above 0|includes 0|below 0)\)", proc.stdout)  # fmt: skip
    assert endpoint, proc.stdout
    model = _late_gain_per_task(PROBE / "returns_HalfCheetahVel.csv")
    twin = _late_gain_per_task(PROBE / "blinded-twin/returns_HalfCheetahVel.csv")
    diff = model - twin
    mean, half = diff.mean(), 1.959964 * diff.std(ddof=1) / np.sqrt(len(diff))
    assert (float(endpoint[1]), float(endpoint[2])) == (round(mean, 1), round(half, 1))
    where = "above 0" if mean - half > 0 else "below 0" if mean + half < 0 else "includes 0"
    assert endpoint[3] == where


def _late_gain_per_task(path: Path) -> np.ndarray:
    """Straight from the CSV: per test task, the mean over seeds of (last 10 episodes' mean -
    episodes 4-7's mean) of AD-Mamba's full-history rollouts."""
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
        gains[task].append(r[-10:].mean() - r[4:8].mean())
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
