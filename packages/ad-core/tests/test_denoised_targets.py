"""TrainConfig.action_target="denoised": the known mean and variance of a noise-distilled action."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from icrl.ad import ContextDataset, FullContext, train
from icrl.ad._targets import denoised_targets
from icrl.ad._train import action_losses
from icrl.histories import HistoryFile, NoiseDistillation
from icrl.metaenvs import make_env

EPISODES = 12  # PointGoal: 20-step episodes, 5 envs: 15 recorded; eps 0 from episode 6 on


def _nd(sac, path: Path, noise: str = "uniform") -> Path:
    nd = NoiseDistillation(episodes=EPISODES, anneal=0.5, noise=noise)
    return sac(path, "PointGoal", steps=600, k=1, warmup=100, backend="batched",
               noise_distillation=nd)  # fmt: skip


@pytest.fixture(scope="module")
def nd_file(sac, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two PointGoal tasks of a tiny SAC, then 15 uniform noise-distilled episodes each."""
    return _nd(sac, tmp_path_factory.mktemp("nd") / "nd.h5")


def _box(family: str) -> tuple[np.ndarray, np.ndarray]:
    env = make_env(family)
    try:
        return np.asarray(env.action_space.low), np.asarray(env.action_space.high)
    finally:
        env.close()


def test_targets_are_the_blends_mean_and_variance(nd_file: Path) -> None:
    ds = ContextDataset.from_files([nd_file], action_target="denoised")
    h = HistoryFile(nd_file).history(ds.entries[0].name)
    _, mean, var = ds.tokens(0)
    low, high = _box("PointGoal")
    centre, half = (high + low) / 2, (high - low) / 2
    eps = NoiseDistillation(episodes=EPISODES, anneal=0.5).epsilon(h.episode)
    first, clean = h.episode == 0, eps == 0
    assert first.sum() == 20 and clean.sum() == 9 * 20
    # eps = 1: the mean is the box's centre whatever the state, the variance the uniform's
    np.testing.assert_allclose(mean[first], np.broadcast_to(centre, mean[first].shape), atol=1e-6)
    np.testing.assert_allclose(var[first], np.broadcast_to(half**2 / 3, var[first].shape))
    # eps = 0: the target is the executed action itself (mu's own), with no variance
    np.testing.assert_allclose(mean[clean], h.action[clean], atol=1e-6)
    assert (var[clean] == 0).all()
    # between: (1 - eps)·mu around the centre; every executed action within eps·s of it
    mid = (eps > 0) & (eps < 1)
    want = centre + (1 - eps[mid, None]) * (h.mean_action[mid] - centre)
    np.testing.assert_allclose(mean[mid], want, atol=1e-6)
    assert (np.abs(h.action - mean) <= eps[:, None] * half + 1e-5).all()
    # another box (centre 2, half-width 2 per dimension; PointGoal's is [-1, 1]): the same
    # history in its units has the targets mapped by a -> 2 + 2a and the variance times 4
    moved = dataclasses.replace(h, action=2 + 2 * h.action, mean_action=2 + 2 * h.mean_action)
    m4, v4 = denoised_targets(moved, np.zeros(2), np.full(2, 4.0), "moved")
    np.testing.assert_allclose(m4, 2 + 2 * mean, atol=1e-5)
    np.testing.assert_allclose(v4, 4 * var, rtol=1e-6)
    # the executed default is untouched: the recorded actions, no variance
    _, executed, none = ContextDataset.from_files([nd_file]).tokens(0)
    assert none is None and np.array_equal(executed, h.action)


def test_the_loss_is_the_executed_actions_loss_averaged_over_the_noise() -> None:
    g = torch.Generator().manual_seed(0)
    mean, log_std = torch.randn(1, 4, 2, generator=g), 0.3 * torch.randn(1, 4, 2, generator=g)
    target, half = torch.randn(1, 4, 2, generator=g), torch.tensor([0.5, 2.0])
    eps = torch.tensor([1.0, 0.6, 0.2, 0.0])[None, :, None]
    mask = torch.ones(1, 4, dtype=torch.bool)
    var = (eps * half) ** 2 / 3
    loss, mse = action_losses(mean, log_std, target, mask, var)
    # Monte Carlo over the uniform noise that the executed actions carry
    n = 100_000
    u = torch.rand(n, 4, 2, generator=g) * 2 - 1
    executed = target + eps * half * u
    nll, sq = action_losses(mean.expand(n, -1, -1), log_std.expand(n, -1, -1), executed,
                            torch.ones(n, 4, dtype=torch.bool))  # fmt: skip
    assert loss.item() == pytest.approx(nll.item(), rel=5e-3)
    assert mse.item() == pytest.approx(sq.item(), rel=5e-3)
    # an MSE head: the same expectation
    assert action_losses(mean, None, target, mask, var)[0].item() == pytest.approx(mse.item())


def test_histories_that_cannot_give_the_targets_are_refused(
    nd_file: Path, histories_file: Path, tmp_path: Path, sac
) -> None:
    with pytest.raises(ValueError, match=r"is not noise-distilled .*--noise-distilled"):
        ContextDataset.from_files([histories_file], action_target="denoised")
    with pytest.raises(ValueError, match=r"'gaussian' noise.*needs uniform noise"):
        ContextDataset.from_files(
            [_nd(sac, tmp_path / "g.h5", "gaussian")], action_target="denoised"
        )
    h = HistoryFile(nd_file).history(HistoryFile(nd_file).tasks[0])
    rows = {f.name for f in dataclasses.fields(h)} - {"task", "family", "name", "start", "meta"}

    def changed(keep: np.ndarray, **over) -> dict:
        cut = {k: getattr(h, k)[keep] for k in rows}
        return {"t": dataclasses.replace(h, **{**cut, **over})}

    everything = np.arange(len(h.reward))
    # episode 0 (eps 1, noisy) and episode 14 (eps 0) swap places, their numbers stay
    swapped = np.concatenate([everything[280:300], everything[20:280], everything[:20]])
    with pytest.raises(ValueError, match="not in the schedule's order"):
        ContextDataset.from_histories(
            changed(swapped, episode=h.episode, step=h.step), action_target="denoised"
        )
    with pytest.raises(ValueError, match=r"not all of one length .*steps 17–20"):
        ContextDataset.from_histories(changed(everything[3:]), action_target="denoised")
    with pytest.raises(ValueError, match="has no mean_action"):
        ContextDataset.from_histories(
            {"t": dataclasses.replace(h, mean_action=None)}, action_target="denoised"
        )


def test_training_on_denoised_targets(nd_file: Path, tmp_path: Path, tiny) -> None:
    cfg = tiny([nd_file], model__action_head="gaussian", max_steps=4, action_target="denoised")
    result = train(cfg, tmp_path / "run")
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert np.isfinite(result.loss) and rows
    # its MSE is E[(m - a)²] >= the noise's own variance, averaged over the tokens
    ds = ContextDataset.from_files([nd_file], action_target="denoised")
    floor = np.mean([ds.tokens(i)[2].mean() for i in range(len(ds.entries))])
    assert all(r["mse"] >= 0.9 * floor for r in rows), (rows, floor)
    # a dataset built for the other target is refused, not silently used
    executed = ContextDataset.from_files([nd_file], context=FullContext())
    with pytest.raises(ValueError, match="action_target"):
        train(cfg, tmp_path / "other", dataset=executed)
