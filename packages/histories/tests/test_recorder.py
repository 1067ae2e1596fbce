"""Recording, episode ordering and k-downsampling, on synthetic step streams (no learner)."""

from __future__ import annotations

import numpy as np
import pytest

from icrl.histories import HistoryRecorder


def _drive(
    recorder: HistoryRecorder,
    lengths: list[list[int]],
    warm_steps: int = 0,
    steps: int | None = None,
) -> None:
    """Step n envs in lockstep; env i runs episodes of lengths[i] in turn (obs = [env, ep, t])."""
    n = len(lengths)
    ep = [0] * n
    t = [0] * n
    total = max(sum(ls) for ls in lengths) if steps is None else steps
    for v in range(total):
        recorder.warmup = v < warm_steps
        obs = np.array([[i, ep[i], t[i]] for i in range(n)], dtype=np.float32)
        nxt = obs.copy()
        nxt[:, 2] += 1
        done = np.zeros(n, dtype=bool)
        for i in range(n):
            if ep[i] < len(lengths[i]) and t[i] + 1 == lengths[i][ep[i]]:
                done[i] = True
        act = obs[:, :2] * 0.5
        rew = np.full(n, 1.0) + np.arange(n)
        mean = np.tanh(act) - 0.25  # stands for the policy's deterministic action
        recorder.record_step(obs, act, rew, nxt, np.zeros(n, bool), done, mean_action=mean)
        for i in range(n):
            t[i] += 1
            if done[i]:
                ep[i], t[i] = ep[i] + 1, 0


def test_episodes_are_ordered_by_finishing_step_then_env_index() -> None:
    rec = HistoryRecorder(n_envs=3, k=1, obs_dim=3, act_dim=2)
    # env 0: 4, 4; env 1: 2, 6; env 2: 4, 3 -> finish steps (0-based): e0@3, e0@7; e1@1, e1@7;
    # e2@3, e2@6
    _drive(rec, [[4, 4], [2, 6], [4, 3]])
    trans, eps = rec.result()
    assert eps["env_index"].tolist() == [1, 0, 2, 2, 0, 1]
    assert eps["end_vstep"].tolist() == [1, 3, 3, 6, 7, 7]
    assert eps["length"].tolist() == [2, 4, 4, 3, 4, 6]
    # transitions are contiguous per episode, in episode order
    assert trans["episode"].tolist() == np.repeat(np.arange(6), eps["length"]).tolist()
    assert np.all(trans["obs"][:, 0] == np.repeat(eps["env_index"], eps["length"]))
    assert np.array_equal(trans["step"], np.concatenate([np.arange(n) for n in eps["length"]]))
    assert np.array_equal(eps["first_row"], np.concatenate([[0], np.cumsum(eps["length"])[:-1]]))
    # the deterministic action travels with its transition
    assert trans["mean_action"].dtype == np.float32 and trans["mean_action"].shape == (23, 2)
    np.testing.assert_allclose(trans["mean_action"], np.tanh(trans["action"]) - 0.25, rtol=1e-6)
    # within an episode, next_obs[t] is the observation of step t + 1
    same = trans["episode"][1:] == trans["episode"][:-1]
    assert np.array_equal(trans["next_obs"][:-1][same], trans["obs"][1:][same])


def test_k_downsampling_keeps_every_kth_episode_and_every_return() -> None:
    rec = HistoryRecorder(n_envs=2, k=3, obs_dim=3, act_dim=2)
    _drive(rec, [[3] * 7, [5, 2, 4, 3, 4, 3]])
    trans, eps = rec.result()
    n = len(eps["return"])
    assert n == 13
    assert eps["kept"].tolist() == [e % 3 == 0 for e in range(n)]
    assert sorted(set(trans["episode"].tolist())) == [0, 3, 6, 9, 12]
    # returns of every episode: reward is 1 + env index per step
    assert np.allclose(eps["return"], eps["length"] * (1.0 + eps["env_index"]))
    kept_rows = eps["first_row"][eps["kept"]]
    assert np.all(eps["first_row"][~eps["kept"]] == -1)
    assert np.array_equal(trans["step"][kept_rows], np.zeros(5, dtype=np.int32))
    assert len(trans["reward"]) == eps["length"][eps["kept"]].sum()


def test_warmup_flags_per_transition() -> None:
    rec = HistoryRecorder(n_envs=2, k=1, obs_dim=3, act_dim=2)
    _drive(rec, [[4, 4, 2], [4, 4, 5]], warm_steps=6)
    trans, eps = rec.result()
    assert eps["warmup_steps"].tolist() == [4, 4, 2, 2, 0, 0]
    assert trans["warmup"].sum() == 12
    # the flag is per transition: steps 4 and 5 of the second episodes are warm-up
    second = trans["episode"] == 2
    assert trans["warmup"][second].tolist() == [True, True, False, False]
    # env 0 finished its 3 episodes at step 9 and runs 3 more steps that never finish
    assert rec.unfinished_transitions() == 3
    assert len(eps["return"]) == 6
    assert rec.env_steps == 2 * 13


def test_unfinished_transitions_are_counted_and_dropped() -> None:
    rec = HistoryRecorder(n_envs=2, k=1, obs_dim=3, act_dim=2)
    _drive(rec, [[3, 3], [4, 9]], steps=6)  # env 1's second episode stops after 2 of 9 steps
    trans, _ = rec.result()
    assert rec.unfinished_transitions() == 2
    assert len(trans["reward"]) == 3 + 3 + 4


def test_mean_action_is_required() -> None:
    rec = HistoryRecorder(n_envs=1, k=1, obs_dim=1, act_dim=1)
    with pytest.raises(TypeError, match="mean_action"):
        rec.record_step(np.zeros((1, 1)), np.zeros((1, 1)), np.zeros(1), np.zeros((1, 1)),
                        np.zeros(1, bool), np.zeros(1, bool))  # fmt: skip


def test_bad_k_is_refused() -> None:
    with pytest.raises(ValueError, match="k must be"):
        HistoryRecorder(n_envs=1, k=0, obs_dim=1, act_dim=1)
