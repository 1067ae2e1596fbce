"""MACAW training on in-memory buffers: a toy offline meta-problem, checkpoint/resume, results."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from icrl.baselines import EpisodeResult, read_results_csv, write_results
from icrl.baselines._results import summarize
from icrl.baselines.macaw import (
    MacawConfig,
    MacawTrainConfig,
    TaskData,
    build_macaw_buffer,
    load_macaw,
    sample_batch,
    train_macaw,
)

TOY = MacawConfig(
    hidden_sizes=(32, 32),
    latent_dim=8,
    value_lr=1e-3,
    policy_lr=1e-3,
    batch_size=64,
    inner_batch_size=64,
    task_batch_size=4,
    transition_skip=1,
)


def _bandit_task(goal: float, rng: np.random.Generator, n: int = 300):
    """One-step tasks: reward −(a − goal)², observations carry no task information, behaviour
    actions uniform in [−1, 1]; each transition is its own (terminated) episode."""
    obs = rng.normal(size=(n, 2)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(n, 1)).astype(np.float32)
    rew = -((act[:, 0] - goal) ** 2)
    return build_macaw_buffer(obs, act, rew, obs, np.ones(n, bool), np.zeros(n, bool), np.arange(n))


def _toy_data(goals, rng) -> TaskData:
    return TaskData(
        buffers=[_bandit_task(g, rng) for g in goals],
        names=[f"goal{g:.2f}" for g in goals],
        family="toy-bandit",
        action_low=np.array([-1.0]),
        action_high=np.array([1.0]),
    )


def test_toy_offline_meta_problem_adapted_beats_unadapted(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    train_goals = rng.uniform(-0.8, 0.8, 12)
    test_goals = np.array([-0.7, -0.4, 0.4, 0.7])
    cfg = MacawTrainConfig(run_dir=tmp_path / "run", algo=TOY, steps=120, seed=0, log_every=20)
    train_macaw(cfg, data=_toy_data(train_goals, rng), progress=False)
    model, meta = load_macaw(tmp_path / "run")
    assert meta["step"] == 120 and meta["family"] == "toy-bandit"

    states = torch.as_tensor(rng.normal(size=(200, 2)), dtype=torch.float32)
    unadapted, adapted = [], []
    for g in test_goals:
        batch = sample_batch(_bandit_task(g, rng), 64, rng)
        _, params = model.adapt(batch)
        unadapted.append(-((model.act(None, states) - g) ** 2).mean().item())
        adapted.append(-((model.act(params, states) - g) ** 2).mean().item())
    # Goals at ±0.4 and ±0.7 are far from the meta-policy's mean action; one inner step on 64
    # offline transitions of the new task must close most of that gap.
    assert np.mean(adapted) > np.mean(unadapted) + 0.1, (unadapted, adapted)
    assert all(a > u for a, u in zip(adapted, unadapted, strict=True)), (unadapted, adapted)
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").read_text().splitlines()))
    assert [int(r["step"]) for r in rows] == [20, 40, 60, 80, 100, 120]
    walls = [float(r["wall_s"]) for r in rows]  # training time so far, growing with the steps
    assert 0 < walls[0] < walls[-1], walls


def test_resume_is_exact(tmp_path: Path) -> None:
    small = TOY.model_copy(update={"hidden_sizes": (8,), "batch_size": 16, "inner_batch_size": 16})

    def data() -> TaskData:
        return _toy_data(np.linspace(-0.5, 0.5, 6), np.random.default_rng(1))

    straight = MacawTrainConfig(run_dir=tmp_path / "a", algo=small, steps=6, checkpoint_every=3)
    train_macaw(straight, data=data(), progress=False)
    first = straight.model_copy(update={"run_dir": tmp_path / "b", "steps": 3})
    train_macaw(first, data=data(), progress=False)
    train_macaw(first.model_copy(update={"steps": 6}), data=data(), progress=False)
    a, _ = load_macaw(tmp_path / "a")
    b, meta = load_macaw(tmp_path / "b")
    assert meta["step"] == 6
    lines = (tmp_path / "b" / "metrics.csv").read_text().splitlines()
    walls = [float(r["wall_s"]) for r in csv.DictReader(lines)]
    assert len(walls) == 2 and 0 < walls[0] < walls[1], walls  # summed over the resume
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name

    other = straight.model_copy(update={"seed": 5})
    with pytest.raises(ValueError, match="different config"):
        train_macaw(other, data=data(), progress=False)


def test_results_csv_and_plot(tmp_path: Path) -> None:
    rows = [
        EpisodeResult("MACAW", seed, task, ep, float(seed + task + ep))
        for seed in range(3)
        for task in range(2)
        for ep in range(4)
    ]
    csv_path, png_path = write_results(rows, tmp_path, title="t")
    assert csv_path.read_text().splitlines()[0] == "method,seed,task,episode,return"
    assert read_results_csv(csv_path) == rows
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    s = summarize(rows)["MACAW"]
    np.testing.assert_allclose(s["mean"], [1.5, 2.5, 3.5, 4.5])
    vals = np.array([0, 1, 1, 2, 2, 3], float)
    np.testing.assert_allclose(s["ci95"][0], 1.959963984540054 * vals.std(ddof=1) / np.sqrt(6))
    with pytest.raises(FileExistsError):
        write_results(rows, tmp_path)
