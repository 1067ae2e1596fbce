"""Shared fixtures: a tiny real SAC histories file, and histories recorded in a real env."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from icrl.ad import TrainConfig
from icrl.histories import GenerateConfig, History, SACConfig, generate
from icrl.metaenvs import make_env, train_tasks


def sac_histories(path: Path, family: str, steps: int, k: int, warmup: int, **config) -> Path:
    """Two tasks of `family` learnt by a tiny SAC (16x16 networks) in this process, as a file."""
    cfg = GenerateConfig(
        family=family,
        tasks=2,
        steps_per_task=steps,
        k=k,
        workers=0,
        progress=False,
        algorithm=SACConfig(warmup_steps=warmup, hidden_sizes=(16, 16), batch_size=16),
        **config,
    )
    return generate(cfg, path)


def short_run_config(
    paths: list[Path], max_steps: int, model: dict, data: dict | None = None
) -> TrainConfig:
    """A CPU training config of a few steps on `paths` (d_model 32, batch 2, no logging): what a
    test trains to have a checkpoint. `model` and `data` fields go over the defaults."""
    return TrainConfig.model_validate(
        {
            "model": {"d_model": 32, "embed_dim": 8, **model},
            "data": {"paths": [str(p) for p in paths], "context": "full", **(data or {})},
            "max_steps": max_steps,
            "batch_size": 2,
            "tensorboard": False,
            "progress": False,
            "device": "cpu",
        }
    )


@pytest.fixture(scope="session")
def histories_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two ReacherGoal tasks of a tiny SAC run (500 env steps each, k=2): 5 kept episodes each."""
    path = tmp_path_factory.mktemp("hist") / "reacher.h5"
    return sac_histories(path, "ReacherGoal", steps=500, k=2, warmup=400)


def recorded_history(episodes: int = 3, seed: int = 0, task_index: int = 0) -> History:
    """A history recorded in a real ReacherGoal env under a deterministic policy of the obs.

    The policy changes with the episode index, like a learner's; actions are learnable from
    (observation, context), so a model can fit them to near-zero loss.
    """
    task = train_tasks("ReacherGoal")[task_index]
    env = make_env("ReacherGoal", task)
    rows: dict[str, list] = {k: [] for k in History.__dataclass_fields__ if k not in
                             ("task", "family", "name", "start", "meta")}  # fmt: skip
    w = np.random.default_rng(seed).normal(size=(env.action_space.shape[0], 8)) * 0.5
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed * 100 + ep)
        done, t = False, 0
        while not done:
            action = np.clip(np.tanh(w @ obs[:8]) * (1 - 0.2 * ep), -1, 1).astype(np.float32)
            nxt, r, term, trunc, _ = env.step(action)
            for k, v in zip(
                ("obs", "action", "reward", "next_obs", "terminated", "truncated", "episode",
                 "step", "warmup"),
                (obs, action, r, nxt, term, trunc, ep, t, False),
                strict=True,
            ):  # fmt: skip
                rows[k].append(v)
            obs, done, t = nxt, term or trunc, t + 1
    env.close()
    arrays = {
        "obs": np.asarray(rows["obs"], np.float32),
        "action": np.asarray(rows["action"], np.float32),
        "reward": np.asarray(rows["reward"], np.float32),
        "next_obs": np.asarray(rows["next_obs"], np.float32),
        "terminated": np.asarray(rows["terminated"], bool),
        "truncated": np.asarray(rows["truncated"], bool),
        "episode": np.asarray(rows["episode"], np.int64),
        "step": np.asarray(rows["step"], np.int32),
        "warmup": np.asarray(rows["warmup"], bool),
    }
    return History(**arrays, task=task, family="ReacherGoal", name=f"rec_{task_index}")


def tiny_config(paths: list[Path] | None = None, **overrides) -> TrainConfig:
    """A tiny CPU training config (d_model 32, 2 layers)."""
    base = {
        "model": {"backbone": "mamba", "d_model": 32, "n_layers": 2, "embed_dim": 8, "d_ff": 64},
        "data": {"paths": [str(p) for p in (paths or ["unused.h5"])], "context": "full"},
        "optim": {"lr": 3e-3, "warmup_steps": 5, "weight_decay": 1e-4},
        "batch_size": 2,
        "max_steps": 10,
        "checkpoint_every": 5,
        "log_every": 1,
        "tensorboard": False,
        "progress": False,
        "device": "cpu",
    }
    for key, value in overrides.items():
        section, _, field = key.partition("__")
        if field:
            base[section] = {**base.get(section, {}), field: value}
        else:
            base[key] = value
    return TrainConfig.model_validate(base)


@pytest.fixture
def record():
    """The `recorded_history` helper."""
    return recorded_history


@pytest.fixture
def tiny():
    """The `tiny_config` helper."""
    return tiny_config


@pytest.fixture(scope="session")
def sac():
    """The `sac_histories` helper (test modules cannot import conftest in importlib mode)."""
    return sac_histories


@pytest.fixture(scope="session")
def short_run():
    """The `short_run_config` helper."""
    return short_run_config


def pytest_configure(config: pytest.Config) -> None:
    """One intra-op thread: the suite shares 2 cores, where more threads only contend."""
    import torch

    torch.set_num_threads(1)
