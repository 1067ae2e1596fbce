"""Kill -9 at random points, rerun, and compare with an uninterrupted run (issue 12).

Each job (history generation, AD training, `apps/reproduce.py`) is started as a subprocess and
killed with SIGKILL (its whole process group) after a delay drawn from a seeded RNG; it is then
started again, killed again, ... until `KILLS` kills have landed, and finally run to completion.
Its outputs must equal, byte for byte or array for array, those of one uninterrupted run with
the same seeds; after every kill, whatever the run left that a reader would take as finished
must be whole.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from icrl.ad import latest_checkpoint, load_checkpoint
from icrl.histories import GenerateConfig, HistoryFile

ROOT = Path(__file__).resolve().parents[2]
KILLS = 10
# One intra-op thread in every child: 2 shared cores, and bitwise-equal float reductions.
ENV = {
    **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TQDM_DISABLE": "1",
}

TINY_HISTORIES = {
    "family": "ReacherGoal",
    "algorithm": {"kind": "sac", "hidden_sizes": [16], "batch_size": 16, "warmup_steps": 40},
    "steps_per_task": 240,
    "n_envs": 2,
    "k": 2,
    "tasks": 5,
    "workers": 0,
    "progress": False,
}


def _run(cmd: list[str], timeout: float = 600) -> None:
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stderr[-3000:]}"


def kill_chain(
    cmd: list[str],
    delays: tuple[float, float],
    seed: int,
    after_kill: Callable[[], None],
    kills: int = KILLS,
) -> list[float]:
    """Start `cmd`, SIGKILL it after a seeded random delay, repeat `kills` times, then finish it.

    A start that finishes before its kill does not count as a kill point. Returns the delays
    at which kills landed.
    """
    rng = np.random.default_rng(seed)
    landed: list[float] = []
    for _ in range(5 * kills):
        if len(landed) == kills:
            break
        delay = float(rng.uniform(*delays))
        proc = subprocess.Popen(
            cmd,
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            proc.wait(delay)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the job and any worker processes
            proc.wait()
            landed.append(delay)
            after_kill()
        else:
            assert proc.returncode == 0, f"{cmd} failed on its own (exit {proc.returncode})"
            break  # finished before the kill: more kills could not land anywhere
    _run(cmd)
    return landed


# --- history generation ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def histories_ref(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(config JSON, uninterrupted output) of a tiny 5-task SAC generation."""
    d = tmp_path_factory.mktemp("hist_ref")
    cfg = d / "cfg.json"
    cfg.write_text(GenerateConfig.model_validate(TINY_HISTORIES).model_dump_json())
    out = d / "ref.h5"
    _run([sys.executable, "-m", "icrl.histories", "generate", "--config", str(cfg),
          "--out", str(out), "--no-progress"])  # fmt: skip
    return cfg, out


def _h5_items(path: Path) -> dict[str, object]:
    """Every dataset (as an array) and attribute of an HDF5 file, by path."""
    items: dict[str, object] = {}
    with h5py.File(path, "r") as f:

        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset):
                items[name] = obj[()]
            for key, value in obj.attrs.items():
                items[f"{name}@{key}"] = value

        for key, value in f.attrs.items():
            items[f"@{key}"] = value
        f.visititems(visit)
    return items


def _assert_same_h5(a: Path, b: Path) -> None:
    ia, ib = _h5_items(a), _h5_items(b)
    assert ia.keys() == ib.keys()
    for key in ia:
        if key.endswith(("@created", "@wall_time_s", "@library_versions")) or "time" in key:
            continue  # wall clocks differ between any two runs
        np.testing.assert_array_equal(np.asarray(ia[key]), np.asarray(ib[key]), err_msg=key)


def test_history_generation_killed_ten_times_equals_uninterrupted(
    histories_ref: tuple[Path, Path], tmp_path: Path
) -> None:
    cfg, ref = histories_ref
    out = tmp_path / "killed.h5"
    parts = out.with_name(out.name + ".parts")

    def after_kill() -> None:
        # No partial artefact reads as complete: the final file only exists when whole, and
        # every committed task part is a readable, finished task.
        if out.exists():
            assert len(HistoryFile(out).tasks) == TINY_HISTORIES["tasks"]
        for part in parts.glob("task_*.h5"):
            HistoryFile(part).history(part.stem)

    cmd = [sys.executable, "-m", "icrl.histories", "generate", "--config", str(cfg),
           "--out", str(out), "--no-progress"]  # fmt: skip
    landed = kill_chain(cmd, (1.0, 7.0), seed=12, after_kill=after_kill)
    assert len(landed) >= KILLS, f"only {len(landed)} kills landed before the run finished"
    assert not parts.exists() and not list(tmp_path.glob("*.tmp"))
    _assert_same_h5(ref, out)


# --- AD training ------------------------------------------------------------------------------


def _ad_config(histories: Path, path: Path) -> Path:
    cfg = {
        "model": {"backbone": "mamba", "d_model": 16, "n_layers": 1, "embed_dim": 8, "d_ff": 32},
        "data": {"paths": [str(histories)], "context": "window", "window": 40},
        "optim": {"lr": 3e-3, "warmup_steps": 5, "weight_decay": 1e-4},
        "batch_size": 2,
        "max_steps": 1000,
        "checkpoint_every": 10,
        "log_every": 1,
        "tensorboard": False,
        "progress": False,
        "device": "cpu",
    }
    path.write_text(json.dumps(cfg))
    return path


def _losses(run: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows]


def test_ad_training_killed_ten_times_equals_uninterrupted(
    histories_ref: tuple[Path, Path], tmp_path: Path
) -> None:
    cfg = _ad_config(histories_ref[1], tmp_path / "ad.json")
    ref, run = tmp_path / "ref", tmp_path / "killed"
    _run([sys.executable, "-m", "icrl.ad", "train", "--config", str(cfg), "--run-dir", str(ref)])

    def after_kill() -> None:
        # The newest checkpoint is always whole (a torn one would not load).
        if (newest := latest_checkpoint(run)) is not None:
            load_checkpoint(newest)

    cmd = [sys.executable, "-m", "icrl.ad", "train", "--config", str(cfg), "--run-dir", str(run)]
    landed = kill_chain(cmd, (1.5, 5.0), seed=7, after_kill=after_kill)
    assert len(landed) >= KILLS, f"only {len(landed)} kills landed before the run finished"
    a, b = load_checkpoint(ref), load_checkpoint(run)
    assert a["step"] == b["step"] == 1000
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert _losses(ref) == _losses(run)


# --- apps/reproduce.py ----------------------------------------------------------------------

MICRO = [
    "--no-progress",
    "--histories.tasks", "2",
    "--histories.steps_per_task", "240",
    "--histories.n_envs", "2",
    "--histories.hidden_sizes", "[16]",
    "--histories.batch_size", "16",
    "--histories.workers", "0",
    "--ad.max_steps", "60",
    "--ad.d_model", "16",
    "--ad.n_layers", "1",
    "--seeds", "[0]",
    "--backbones", '["mamba"]',
    "--contexts", '["full"]',
    "--no-macaw.enabled",
    "--no-mql.enabled",
    "--evaluate.n_tasks", "2",
    "--evaluate.episodes", "3",
]  # fmt: skip


def _episode_rows(out: Path) -> dict[str, list[dict[str, str]]]:
    found = sorted((out / "stages").glob("*/eval/returns.csv"))
    assert found, f"no per-episode CSV under {out / 'stages'}"
    return {str(p.relative_to(out)): _csv_rows(p) for p in found}


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_reproduce_killed_ten_times_equals_uninterrupted(tmp_path: Path) -> None:
    script = [sys.executable, str(ROOT / "apps/reproduce.py"), *MICRO]
    ref, out = tmp_path / "ref", tmp_path / "killed"
    start = time.monotonic()
    _run([*script, "--out", str(ref)])
    took = time.monotonic() - start

    def after_kill() -> None:
        # A stage counts as finished once its stage.json exists; each such record is whole, and
        # a finished evaluation stage's per-episode CSV parses with every column filled.
        for record in (out / "stages").glob("*/stage.json"):
            json.loads(record.read_text())
            for path in record.parent.glob("eval/returns.csv"):
                rows = _csv_rows(path)
                assert rows and all(None not in row.values() for row in rows), path

    landed = kill_chain([*script, "--out", str(out)], (1.5, max(4.0, took / 2)), seed=3,
                        after_kill=after_kill)  # fmt: skip
    assert len(landed) >= KILLS, f"only {len(landed)} kills landed before the run finished"
    assert _episode_rows(ref) == _episode_rows(out)
    assert (out / "report.md").is_file()
