"""The shared rollout loop (icrl.metaenvs.rollout): returns equal hand-run episodes."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from icrl.metaenvs import make_env, make_vector_env, test_tasks
from icrl.metaenvs.rollout import Step, clip_action, run_episodes

FAMILY = "PointGoal"


def _policy(obs: np.ndarray) -> np.ndarray:
    """Deterministic, and often outside the box (so that clipping matters)."""
    obs = np.atleast_2d(obs)
    return 3.0 * np.tanh(obs[:, :2] * 5.0) - 0.5


def _by_hand(task, seed: int, episodes: int) -> tuple[list[float], list[int]]:
    """Episodes of one env: reset with `seed` first, then unseeded resets, clipped actions."""
    env = make_env(FAMILY, task)
    returns, lengths = [], []
    for e in range(episodes):
        obs, _ = env.reset(seed=seed if e == 0 else None)
        total, n, done = 0.0, 0, False
        while not done:
            action = np.clip(_policy(obs)[0], env.action_space.low, env.action_space.high)
            obs, reward, terminated, truncated, _ = env.step(action.astype(np.float32))
            total, n, done = total + float(reward), n + 1, terminated or truncated
        returns.append(total)
        lengths.append(n)
    env.close()
    return returns, lengths


def test_vector_env_with_autoreset_disabled_equals_hand_run_episodes() -> None:
    tasks = test_tasks(FAMILY, 3)
    envs = make_vector_env(FAMILY, tasks, asynchronous=False, autoreset_mode=AutoresetMode.DISABLED)
    starts, finished = [], []
    run = run_episodes(
        envs,
        lambda obs, rows, start: starts.append(start.copy()) or _policy(obs),
        3,
        seeds=[10, 11, 12],
        on_episode=lambda i, e, ret: finished.append((i, e, ret)),
    )
    envs.close()
    assert run.returns.shape == run.lengths.shape == (3, 3)
    for i, task in enumerate(tasks):
        returns, lengths = _by_hand(task, 10 + i, 3)
        np.testing.assert_array_equal(run.returns[i], returns)
        np.testing.assert_array_equal(run.lengths[i], lengths)
    assert sorted(finished) == sorted((i, e, run.returns[i, e]) for i in range(3) for e in range(3))
    assert starts[0].all() and starts[run.lengths[0, 0]][0] and not starts[1].any()


def test_single_envs_step_until_their_own_episodes_are_done() -> None:
    tasks = test_tasks(FAMILY, 2)
    envs = [make_env(FAMILY, task) for task in tasks]
    steps: list[Step] = []
    run = run_episodes(envs, lambda obs, rows, start: _policy(obs), 2, seeds=[3, 4],
                       on_step=steps.append)  # fmt: skip
    for i, task in enumerate(tasks):
        returns, lengths = _by_hand(task, 3 + i, 2)
        np.testing.assert_array_equal(run.returns[i], returns)
        np.testing.assert_array_equal(run.lengths[i], lengths)
    assert sum(len(s.rows) for s in steps) == run.lengths.sum()
    space = envs[0].action_space
    for step in steps:
        np.testing.assert_array_equal(step.action, clip_action(space, step.policy_action))
    assert any((np.abs(s.policy_action) > space.high).any() for s in steps)  # clipping was used
    assert [len(s.rows) for s in steps].count(1) == abs(run.lengths[0] - run.lengths[1]).sum()
    for env in envs:
        env.close()


def test_a_custom_action_map_and_reset_options() -> None:
    env = make_env(FAMILY)
    task = test_tasks(FAMILY, 1)[0]
    sent: list[np.ndarray] = []
    run_episodes(
        [env],
        lambda obs, rows, start: np.zeros((1, 2), np.float32),
        options=[{"task": task}],
        to_env=lambda space, a: (a + 0.25).astype(space.dtype),
        on_step=lambda s: sent.append(s.action),
    )
    assert env.unwrapped.task == task
    np.testing.assert_array_equal(sent[0], [[0.25, 0.25]])
    env.close()


def test_refusals() -> None:
    envs = make_vector_env(FAMILY, test_tasks(FAMILY, 2), asynchronous=False)
    with pytest.raises(ValueError, match="autoreset_mode=DISABLED"):
        run_episodes(envs, lambda obs, rows, start: _policy(obs))
    envs.close()
    env = make_env(FAMILY, test_tasks(FAMILY, 1)[0])
    with pytest.raises(RuntimeError, match="did not end within 5 steps"):
        run_episodes([env], lambda obs, rows, start: _policy(obs), max_steps=5)
    with pytest.raises(ValueError, match="positive int"):
        run_episodes([env], lambda obs, rows, start: _policy(obs), 0)
    env.close()
