"""CUDA-graph replay of MQL's TD3 updates matches the eager updates (needs a GPU)."""

import numpy as np
import pytest
import torch

from icrl.baselines.mql import MQLAgent, MultiTaskReplay, mql_preset
from icrl.baselines.mql._graph import GraphedUpdater, make_updater

OBS, ACT, H = 5, 2, 4


def _replay(n: int = 600) -> MultiTaskReplay:
    rng = np.random.default_rng(0)
    buf = MultiTaskReplay(n, OBS, ACT, H, n_tasks=3)
    for e in range(n // 50):
        buf.add_episode(
            rng.normal(size=(50, OBS)).astype(np.float32),
            rng.uniform(-1, 1, size=(50, ACT)).astype(np.float32),
            rng.normal(size=50).astype(np.float32),
            rng.normal(size=(50, OBS)).astype(np.float32),
            np.zeros(50, np.float32),
            e % 3,
        )
    return buf


def test_cpu_updater_is_eager() -> None:
    agent = MQLAgent(OBS, ACT, mql_preset("ReacherGoal", "tiny"), torch.device("cpu"))
    update = make_updater(agent, use_graphs=True)  # no CUDA here: falls back to eager
    assert not isinstance(getattr(update, "__self__", None), GraphedUpdater)
    buf = _replay()
    loss = update(buf.batch_arrays(np.arange(64)))
    assert loss.ndim == 0 and agent.updates == 1
    with pytest.raises(ValueError, match="CUDA"):
        GraphedUpdater(agent)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_graph_replay_matches_eager_updates() -> None:
    cfg = mql_preset("ReacherGoal", "tiny", hist_len=H, policy_noise=0.0, policy_freq=2)
    dev = torch.device("cuda")
    torch.manual_seed(0)
    eager = MQLAgent(OBS, ACT, cfg, dev)
    graphed = eager.clone()
    update = GraphedUpdater(graphed).update
    buf, rng = _replay(), np.random.default_rng(1)
    for _ in range(12):  # 4 eager warm-up steps, then both graphs captured and replayed
        arrays = buf.batch_arrays(buf.sample_indices(64, rng))
        want = eager.update({k: torch.as_tensor(v, device=dev) for k, v in arrays.items()})
        got = update(arrays)
        torch.testing.assert_close(got, want["critic_loss"], rtol=1e-4, atol=1e-5)
    assert graphed.updates == eager.updates == 12
    for name in ("actor", "critic", "actor_target", "critic_target"):
        for p, q in zip(
            getattr(eager, name).parameters(), getattr(graphed, name).parameters(), strict=True
        ):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_graphed_training_resumes(tmp_path) -> None:
    from icrl.baselines import train_mql

    cfg = mql_preset("ReacherGoal", "tiny", total_env_steps=1000, device="cuda")
    train_mql(cfg.model_copy(update={"total_env_steps": 600}), tmp_path, progress=False)
    train_mql(cfg, tmp_path, progress=False)  # capturable Adam state reloaded, graphs re-captured
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["counters"]["env_steps"] == 1000
    assert state["agent"]["updates"] == 150  # utd 0.25 × 200 steps × iterations ending at 600..1000
