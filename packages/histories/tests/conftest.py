"""Shared tiny configurations: Tianshou runs small enough for a 2-core CI machine."""

from __future__ import annotations

import os
from typing import Any

import pytest

os.environ.setdefault("TQDM_DISABLE", "1")

from icrl.histories import GenerateConfig

TINY_SAC: dict[str, Any] = {
    "kind": "sac",
    "hidden_sizes": [16],
    "batch_size": 16,
    "warmup_steps": 40,
    "lr": 1e-3,
}


def tiny_config(**overrides: Any) -> GenerateConfig:
    """Two ReacherGoal tasks, 2 envs, 140 env steps each with a one-layer SAC, in-process."""
    data: dict[str, Any] = {
        "family": "ReacherGoal",
        "algorithm": TINY_SAC,
        "steps_per_task": 240,
        "n_envs": 2,
        "k": 2,
        "tasks": 2,
        "workers": 0,
        "progress": False,
    }
    data.update(overrides)
    return GenerateConfig.model_validate(data)


@pytest.fixture(scope="session")
def make_config() -> Any:
    """The `tiny_config` factory (test modules cannot import conftest in importlib mode)."""
    return tiny_config


def initial_mean_action(config: GenerateConfig, index: int, obs: Any) -> Any:
    """The deterministic action (env units) of task `index`'s policy as initialised, at `obs`.

    Rebuilds the untrained policy from the task seed (Tianshou: the reference learner's own
    builders after its seeding; batched: the stacked nets from the task's generator) and maps
    tanh(loc) (SAC/DroQ) or clip(loc) (PPO) to the action box, independently of the recorder.
    """
    import numpy as np
    import torch

    from icrl.histories import PPOConfig, TaskSpec, _envs
    from icrl.histories._learners import _build, seed_everything
    from icrl.histories._records import task_seed

    task = _envs.train_tasks(config.family, index + 1)[index]
    env = _envs.make_env(config.family, task)
    box = env.action_space
    env.close()
    seed = task_seed(config.seed, index)
    algo = config.algorithm
    ppo = isinstance(algo, PPOConfig)
    obs_t = torch.as_tensor(np.asarray(obs, np.float32))
    with torch.no_grad():
        if config.backend == "tianshou":
            spec = TaskSpec(config.family, task, index, seed, config.steps_per_task, 1, algo)
            seed_everything(seed)
            loc = _build(spec, env.observation_space, box)[0].policy.actor(obs_t)[0][0]
        elif ppo:
            from icrl.histories.batched import BatchedPPO

            loc = BatchedPPO(algo, obs_t.shape[1], box.shape[0], [seed]).dist(obs_t[None])[0][0]
        else:
            from icrl.histories.batched import BatchedSAC

            loc = BatchedSAC(algo, obs_t.shape[1], box.shape[0], [seed]).actor._heads(obs_t[None])
            loc = loc[0][0]
    raw = np.clip(loc.numpy(), -1, 1) if ppo else np.tanh(loc.numpy())
    return box.low + (box.high - box.low) * (raw + 1.0) / 2.0


@pytest.fixture(scope="session")
def policy_mean() -> Any:
    """The `initial_mean_action` function."""
    return initial_mean_action


def synthetic_run_task(config: Any, index: int, task: Any, progress: Any = None, **_: Any) -> Any:
    """A synthetic source run of `config` for task `index` (in place of `run_task`): the real
    recorder on random 2-dim obs and actions (seeded by the index), 50-step episodes."""
    import numpy as np

    from icrl.histories import HistoryRecorder
    from icrl.histories._records import task_record

    rng = np.random.default_rng(index)
    rec = HistoryRecorder(config.n_envs, config.k, obs_dim=2, act_dim=2)
    n = config.n_envs
    for v in range(config.steps_per_task // n):
        rec.record_step(
            rng.normal(size=(n, 2)),
            rng.uniform(-1, 1, size=(n, 2)),
            rng.normal(size=n),
            rng.normal(size=(n, 2)),
            np.zeros(n, bool),
            np.full(n, (v + 1) % 50 == 0),
            mean_action=rng.uniform(-1, 1, size=(n, 2)),
        )
    trans, eps = rec.result()
    return task_record(
        config, index, task, 0, trans, eps, rec.env_steps, rec.unfinished_transitions(), 2, 2
    )


@pytest.fixture(scope="session")
def synthetic_source() -> Any:
    """The `synthetic_run_task` function: a source run in milliseconds, no learner."""
    return synthetic_run_task
