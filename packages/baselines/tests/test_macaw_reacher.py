"""MACAW end to end on a tiny ReacherGoal histories file: CLI train, evaluate, AD's format."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from icrl.baselines import (
    MacawConfig,
    MacawEvalConfig,
    MacawTrainConfig,
    evaluate_macaw,
    load_macaw,
    run_macaw,
    train_macaw,
)
from icrl.baselines.__main__ import main
from icrl.histories import GenerateConfig, HistoryFile, generate

pytestmark = pytest.mark.slow

TINY_ALGO = MacawConfig(
    hidden_sizes=(32, 32), latent_dim=8, batch_size=32, inner_batch_size=32, task_batch_size=2
)


@pytest.fixture(scope="module")
def reacher_histories(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three ReacherGoal train tasks, 300 env steps each of a one-layer Tianshou SAC (k = 1)."""
    path = tmp_path_factory.mktemp("hist") / "reacher.h5"
    cfg = GenerateConfig.model_validate(
        {
            "family": "ReacherGoal",
            "algorithm": {
                "kind": "sac",
                "hidden_sizes": [16],
                "batch_size": 16,
                "warmup_steps": 40,
                "lr": 1e-3,
            },
            "steps_per_task": 300,
            "n_envs": 2,
            "k": 1,
            "tasks": 3,
            "workers": 0,
            "progress": False,
        }
    )
    return generate(cfg, path)


def test_cli_train_and_online_evaluation_write_ad_format(
    reacher_histories: Path, tmp_path: Path
) -> None:
    config = tmp_path / "macaw.toml"
    config.write_text(
        "\n".join(
            [
                "log_every = 5",
                "[algo]",
                "hidden_sizes = [32, 32]",
                "latent_dim = 8",
                "batch_size = 32",
                "inner_batch_size = 32",
                "task_batch_size = 2",
                "[eval]",
                "explore_sigma = 0.2",
            ]
        )
    )
    runs = []
    for seed in range(3):
        run = tmp_path / f"seed_{seed}"
        args = ["macaw", "train", "--config", str(config), "--histories", str(reacher_histories)]
        args += ["--run-dir", str(run), "--seed", str(seed), "--steps", "10", "--no-progress"]
        assert main(args) == 0
        runs.append(run)
    _, meta = load_macaw(runs[1])
    assert meta["step"] == 10 and meta["seed"] == 1 and meta["family"] == "ReacherGoal"
    assert (meta["obs_dim"], meta["act_dim"]) == (8, 2)
    assert len((runs[0] / "metrics.csv").read_text().splitlines()) == 1 + 2

    out = tmp_path / "eval"
    args = ["macaw", "evaluate", *map(str, runs), "--config", str(config), "--out", str(out)]
    args += ["--episodes", "3", "--n-test-tasks", "2", "--no-progress"]
    assert main(args) == 0
    rows = list(csv.reader((out / "returns.csv").read_text().splitlines()))
    assert rows[0] == ["method", "seed", "task", "episode", "return"]
    body = rows[1:]
    assert len(body) == 3 * 2 * 3
    assert {(int(r[1]), int(r[2]), int(r[3])) for r in body} == {
        (s, t, e) for s in range(3) for t in range(2) for e in range(3)
    }
    rets = np.array([float(r[4]) for r in body])
    # ReacherGoal: −distance − ‖a‖² per step for 50 steps, distances under about 0.4 m.
    assert np.all(np.isfinite(rets)) and np.all(rets < 0) and np.all(rets > -200)
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    before = (out / "returns.csv").read_bytes()
    assert main(args) == 2  # the CLI refuses to overwrite results (one line, no traceback)
    assert (out / "returns.csv").read_bytes() == before


def test_offline_protocol_on_file_tasks(reacher_histories: Path, tmp_path: Path) -> None:
    cfg = MacawTrainConfig(
        histories=reacher_histories, run_dir=tmp_path / "run", algo=TINY_ALGO, steps=4
    )
    train_macaw(cfg, progress=False)
    offline = MacawEvalConfig(
        adaptation="offline", test_histories=reacher_histories, n_test_tasks=2, episodes=2
    )
    with pytest.raises(ValueError, match="trained on"):
        evaluate_macaw([cfg.run_dir], offline, progress=False)
    smoke = offline.model_copy(update={"allow_train_tasks": True, "explore_sigma": 0.0})
    rows = evaluate_macaw([cfg.run_dir], smoke, tmp_path / "eval", progress=False)
    assert [(r.task, r.episode) for r in rows] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    tasks = HistoryFile(reacher_histories).tasks
    assert len(tasks) == 3


def test_runs_of_two_families_are_refused_before_any_rollout(
    reacher_histories: Path, tmp_path: Path
) -> None:
    cfg = MacawTrainConfig(
        histories=reacher_histories, run_dir=tmp_path / "run", algo=TINY_ALGO, steps=2
    )
    train_macaw(cfg, progress=False)
    # the same run, relabelled as trained on PointGoal: rolled out there its ReacherGoal-sized
    # networks would fail on the first observation, so only a check made before the rollouts
    # gives this error
    other = tmp_path / "other"
    other.mkdir()
    ckpt = torch.load(cfg.run_dir / "checkpoint.pt", weights_only=False)
    ckpt["meta"]["family"] = "PointGoal"
    torch.save(ckpt, other / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"\['PointGoal', 'ReacherGoal'\].*one family"):
        evaluate_macaw([cfg.run_dir, other], MacawEvalConfig(episodes=1, n_test_tasks=1))
    # and a family setting that is not the runs' own, before any rollout too
    with pytest.raises(ValueError, match="trained on PointGoal, asked to evaluate on ReacherGoal"):
        evaluate_macaw([other], MacawEvalConfig(family="ReacherGoal", episodes=1, n_test_tasks=1))


def test_seeds_side_by_side_train_the_same_runs(reacher_histories: Path, tmp_path: Path) -> None:
    # run_macaw(processes=2) trains the seeds in spawned processes: each seed's checkpoint and
    # the evaluation must be those of the one-process run (a seed does not depend on its process).
    cfg = MacawTrainConfig(histories=reacher_histories, run_dir=tmp_path, algo=TINY_ALGO, steps=4)
    ev = MacawEvalConfig(n_test_tasks=1, episodes=2)
    csvs = {
        n: run_macaw(cfg, ev, tmp_path / f"p{n}", seeds=(0, 1), progress=False, processes=n)
        for n in (1, 2)
    }
    assert csvs[1].read_text() == csvs[2].read_text()
    for seed in (0, 1):
        a, b = (
            torch.load(tmp_path / f"p{n}" / f"seed_{seed}" / "checkpoint.pt", weights_only=False)
            for n in (1, 2)
        )
        for k, v in a["model"].items():
            torch.testing.assert_close(v, b["model"][k], rtol=0, atol=0)
    with pytest.raises(ValueError, match="processes must be at least 1"):
        run_macaw(cfg, ev, tmp_path / "p0", seeds=(0,), progress=False, processes=0)
