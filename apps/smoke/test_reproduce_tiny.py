"""Smoke: `apps/reproduce.py` on its default tiny preset, end to end, then rerun from cache.

Run by `uv run nox -s smoke` (minutes on 2 cores); not part of the per-package test sessions.
"""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
METHODS = ("AD-Mamba", "AD-Transformer", "MACAW", "MQL")


def _run(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TQDM_DISABLE": "1"}
    cmd = [sys.executable, str(ROOT / "apps/reproduce.py"), "--out", str(out), "--no-progress"]
    cmd += args
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1500)


def test_tiny_preset_end_to_end_then_cached_then_moved(tmp_path: Path) -> None:
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
    with (out / "returns_ReacherGoal.csv").open() as f:  # both figures' curves in one table
        table = {(row["method"], row["context"]) for row in csv.DictReader(f)}
    assert table == {("AD-Mamba", "full history"), ("AD-Mamba", "last 2 episodes"),
                     ("AD-Transformer", "full history"), ("MACAW", ""), ("MQL", "")}  # fmt: skip
    # the report's parameter counts leave the transformer's position table out
    record = next((out / "stages").glob("train-ReacherGoal-transformer-full-s0-*/stage.json"))
    result = json.loads(record.read_text())["summary"]
    assert result["position_params"] > 0
    assert f"| AD-Transformer | {result['params'] - result['position_params']:,} |" in report

    # what the baselines are given beside the AD stages on a GPU (counted from the histories
    # before any training) is the episode count that the first AD evaluation ran
    from types import SimpleNamespace

    from icrl.apps._config import ReproduceConfig
    from icrl.apps._pipeline import _first_context_episodes

    cfg = ReproduceConfig.model_validate({"out": str(out)})
    h5 = next((out / "stages").glob("histories-ReacherGoal-*/histories.h5"))
    fam = SimpleNamespace(family="ReacherGoal", cfg=cfg, out=SimpleNamespace(histories=h5))
    evaluated = next((out / "stages").glob("eval-ReacherGoal-mamba-full-*/stage.json"))
    ran = json.loads(evaluated.read_text())["summary"]["episodes"]
    assert _first_context_episodes(fam) == ran

    summary = json.loads((out / "summary.json").read_text())["ReacherGoal"]
    for method in METHODS:
        assert {"first_mean", "first_ci95", "last10_mean", "last10_ci95"} <= set(summary[method])
    refs = summary["references"]
    assert set(refs) == {"source_first", "source_final", "random", "zero"}
    assert all(isinstance(v, float) for v in refs.values())

    again = _run(out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count(": cached") == first.stdout.count("done in")
    assert "done in" not in again.stdout
    # The same config without Mamba (reproduce-job.sh's pass beside the mamba-ssm build) keys
    # the transformer's evaluation by the same episode count: nothing reruns.
    alone = _run(out, "--backbones", '["transformer"]', "--no-macaw.enabled", "--no-mql.enabled")
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert "eval-ReacherGoal-transformer-full: cached" in alone.stdout
    assert "done in" not in alone.stdout

    # Carried to another machine: the moved directory is reused, and a stage that had not
    # finished (here: the Fig. 1 AD-Mamba evaluation) reruns from the moved checkpoints.
    before = _returns(out)
    moved = tmp_path / "elsewhere" / "run"
    moved.parent.mkdir()
    shutil.move(out, moved)
    (next((moved / "stages").glob("eval-ReacherGoal-mamba-full-*")) / "stage.json").unlink()
    third = _run(moved)
    assert third.returncode == 0, third.stderr[-3000:]
    assert third.stdout.count("done in") == 1 and "eval-ReacherGoal-mamba-full" in third.stdout
    assert _returns(moved) == before

    # The transformer's seeds trained again side by side, in spawned processes: the same stage
    # keys, the same models (one torch thread each, as the serial run had), the same returns.
    for stage in (moved / "stages").glob("*-ReacherGoal-transformer-*"):
        shutil.rmtree(stage)
    flags = ("--backbones", '["transformer"]', "--no-macaw.enabled", "--no-mql.enabled")
    side = _run(moved, *flags, "--ad.seed_processes", "2")
    assert side.returncode == 0, side.stderr[-3000:]
    for seed in (0, 1):
        assert f"train-ReacherGoal-transformer-full-s{seed}: done in" in side.stdout
    assert _returns(moved) == before
    assert "seeds trained side by side (2 processes)" in (moved / "report.md").read_text()


def _returns(run: Path) -> dict[str, str]:
    return {p.parent.parent.name.rsplit("-", 1)[0]: p.read_text()
            for p in (run / "stages").glob("eval-*/eval/returns.csv")}  # fmt: skip
