"""MQL histories: the GRU context at step t is built from steps < t of the same episode only."""

from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from icrl.baselines.mql import MQLAgent, MultiTaskReplay, mql_preset
from icrl.baselines.mql._rollout import run_episodes

OBS, ACT, H = 3, 2, 4


def _episode(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {
        "obs": rng.normal(size=(n, OBS)).astype(np.float32),
        "act": rng.uniform(-1, 1, size=(n, ACT)).astype(np.float32),
        "rew": rng.normal(size=n).astype(np.float32),
        "next_obs": rng.normal(size=(n, OBS)).astype(np.float32),
        "terminated": np.zeros(n, np.float32),
    }


def _buffer(capacity: int = 100) -> MultiTaskReplay:
    return MultiTaskReplay(capacity, OBS, ACT, H, n_tasks=2, snapshot=10)


def test_history_holds_exactly_the_past_steps() -> None:
    rng = np.random.default_rng(0)
    buf = _buffer()
    first, second = _episode(rng, 7), _episode(rng, 9)
    buf.add_episode(**first, task=0)
    buf.add_episode(**second, task=1)
    idx = np.arange(7, 16)  # the second episode
    hist, next_hist = buf.histories(idx)
    assert hist.shape == (9, H, ACT + 1 + OBS)
    for t in range(9):
        for j in range(H):
            k = t - H + j  # step of the entry
            want = (
                np.concatenate([second["act"][k], second["rew"][k : k + 1], second["obs"][k]])
                if k >= 0
                else np.zeros(ACT + 1 + OBS)  # before the episode start: zeros, never episode 1
            )
            np.testing.assert_array_equal(hist[t, j], want)
    np.testing.assert_array_equal(next_hist[:-1], hist[1:])  # next_hist[t] == hist[t + 1]


def test_gru_context_ignores_present_and_future() -> None:
    rng = np.random.default_rng(1)
    ep = _episode(rng, 12)
    cfg = mql_preset("ReacherGoal", "tiny", hist_len=H)
    agent = MQLAgent(OBS, ACT, cfg, torch.device("cpu"))
    t = 6
    contexts = []
    for variant in range(2):
        e = {k: v.copy() for k, v in ep.items()}
        if variant:  # change step t and everything after it
            for k in ("obs", "act", "rew", "next_obs"):
                e[k][t:] = rng.normal(size=e[k][t:].shape)
        buf = _buffer()
        buf.add_episode(**e, task=0)
        contexts.append(agent.actor_context(torch.as_tensor(buf.histories(np.arange(12))[0])))
    torch.testing.assert_close(contexts[0][: t + 1], contexts[1][: t + 1], rtol=0, atol=0)
    assert not torch.allclose(contexts[0][t + 1 :], contexts[1][t + 1 :])


def test_ring_wraparound_keeps_episodes_apart() -> None:
    rng = np.random.default_rng(2)
    buf = _buffer(capacity=20)
    eps = [_episode(rng, 6) for _ in range(5)]  # 30 transitions in a ring of 20
    for i, e in enumerate(eps):
        buf.add_episode(**e, task=i % 2)
    slots = (np.arange(24, 30)) % 20  # the last episode, wrapped across the ring's end
    hist, _ = buf.histories(slots)
    np.testing.assert_array_equal(hist[0], 0.0)
    np.testing.assert_array_equal(hist[5, -1, :ACT], eps[4]["act"][4])
    # snapshot of task 0 (episodes 0, 2, 4): only slots still holding task-0 data
    snap = buf.snapshot_indices(0)
    assert len(snap) and (buf.task[snap] == 0).all() and (buf.episode[snap] >= 2).all()


def test_replay_roundtrip(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    buf = _buffer()
    for i in range(4):
        buf.add_episode(**_episode(rng, 5), task=i % 2)
    buf.save(tmp_path / "r.npz")
    other = _buffer()
    other.load(tmp_path / "r.npz")
    idx = np.arange(20)
    for a, b in zip(buf.histories(idx), other.histories(idx), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(buf.snapshot_indices(1), other.snapshot_indices(1))


def test_acting_and_training_see_the_same_context() -> None:
    """The running history used to act equals the one the replay rebuilds for training."""
    env = gym.make("Reacher-v5", max_episode_steps=15)
    obs_dim = env.observation_space.shape[0]
    cfg = mql_preset("ReacherGoal", "tiny", hist_len=H)
    torch.manual_seed(0)
    agent = MQLAgent(obs_dim, 2, cfg, torch.device("cpu"))
    (ep,) = run_episodes(
        [env], [None], agent, "deterministic", np.random.default_rng(0), H, seeds=[0]
    )
    buf = MultiTaskReplay(50, obs_dim, 2, H)
    buf.add_episode(ep.obs, ep.act, ep.rew, ep.next_obs, ep.terminated, 0)
    b = buf.batch(np.arange(len(ep)), "cpu")
    torch.testing.assert_close(agent.act(b["obs"], b["hist"]), torch.as_tensor(ep.act))
    env.close()
