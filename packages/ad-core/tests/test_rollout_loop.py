"""AD's `rollout` on the shared loop (icrl.metaenvs.rollout): returns equal hand-run episodes."""

from __future__ import annotations

import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from icrl.ad._evaluate import rollout
from icrl.metaenvs import make_env, make_vector_env, test_tasks

FAMILY = "PointGoal"


def test_rollout_returns_equal_hand_run_episodes_with_clipped_actions() -> None:
    tasks = test_tasks(FAMILY, 2)
    envs = make_vector_env(FAMILY, tasks, asynchronous=False, autoreset_mode=AutoresetMode.DISABLED)
    tokens: list[np.ndarray] = []
    returns = rollout(None, envs, 2, seed=7, device=torch.device("cpu"),
                      policy=lambda feats: np.full((len(feats), 2), 3.0, np.float32),
                      on_token=tokens.append)  # fmt: skip
    envs.close()
    assert returns.shape == (2, 2)
    lengths = []
    for i, task in enumerate(tasks):
        env = make_env(FAMILY, task)
        for e in range(2):
            env.reset(seed=7 + i if e == 0 else None)
            total, n, done = 0.0, 0, False
            while not done:  # the policy's 3.0 is clipped to the box's 1.0
                _, reward, terminated, truncated, _ = env.step(np.ones(2, np.float32))
                total, n, done = total + float(reward), n + 1, terminated or truncated
            assert returns[i, e] == total
            lengths.append(n)
        env.close()
    assert len(tokens) == max(lengths[0] + lengths[1], lengths[2] + lengths[3])  # env steps
