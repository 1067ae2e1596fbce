"""Noise-distilled histories (GenerateConfig.noise_distillation): schedule, file and CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from icrl.histories import (
    ConfigMismatchError,
    GenerateConfig,
    HistoryFile,
    NoiseDistillation,
    SACConfig,
    generate,
)
from icrl.histories.__main__ import main

EPISODES = 12  # 20-step PointGoal episodes, played by 5 envs: 3 rounds, 15 episodes recorded


def _config(**kw) -> GenerateConfig:
    return GenerateConfig(
        family="PointGoal",
        tasks=2,
        steps_per_task=600,
        workers=0,
        progress=False,
        backend="batched",
        algorithm=SACConfig(warmup_steps=100, hidden_sizes=(16, 16), batch_size=16),
        **kw,
    )


def test_epsilon_falls_linearly_from_one_to_zero_then_stays() -> None:
    noise = NoiseDistillation(episodes=11, anneal=0.5)
    eps = noise.epsilon(np.arange(14))
    assert eps[0] == 1.0 and eps[5] == 0.0 and (eps[5:] == 0).all()
    assert np.allclose(np.diff(eps[:6]), -0.2)


def test_file_keeps_every_noise_distilled_episode(tmp_path: Path) -> None:
    noise = NoiseDistillation(episodes=EPISODES, anneal=0.5)
    path = generate(_config(noise_distillation=noise), tmp_path / "nd.h5")
    hf = HistoryFile(path)
    meta = hf.meta(hf.tasks[0])
    assert meta["k"] == 1 and meta["noise_distillation"] == {"episodes": EPISODES, "anneal": 0.5}
    assert meta["source_episodes"] == 600 // 20 and np.isfinite(meta["source_final_return"])
    returns, lengths = hf.episode_returns(hf.tasks[0])
    assert len(returns) == 15 and (lengths == 20).all()  # 3 rounds of 5 envs
    h = hf.history(hf.tasks[0])
    assert len(h.reward) == 15 * 20
    gap = ((h.action - h.mean_action) ** 2).sum(-1).reshape(15, 20).mean(-1)
    # episode j (round j // 5, env j % 5) has eps = 1 - j / 5.5: 1, .82, .64 lead the file
    # (uniform noise mixed in); from j = 6 on eps is 0 and the action is mu's own, to the bit
    assert gap[:3].min() > 0.1
    assert gap[5] > 0 and (gap[6:] == 0).all()


def test_identity_unchanged_without_it_and_tianshou_refused() -> None:
    assert "noise_distillation" not in _config().identity()
    assert _config(noise_distillation={"episodes": 4})
    with pytest.raises(ValidationError, match="backend='batched'"):
        GenerateConfig(family="PointGoal", noise_distillation={"episodes": 4})


def test_cli_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.h5"
    args = ["generate", "--family", "PointGoal", "--out", str(out), "--backend", "batched",
            "--workers", "0", "--tasks", "1", "--steps", "300", "--noise-distilled", "5",
            "--set", "warmup_steps=100", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    hf = HistoryFile(out)
    assert hf.meta(hf.tasks[0])["noise_distillation"]["episodes"] == 5
    assert main([*args[:-1], "--noise-distilled", "1"]) == 2  # fewer than 2 episodes
    err = capsys.readouterr().err
    assert "--noise-distilled: Input should be greater than or equal to 2" in err


def _excess_kurtosis(x: np.ndarray) -> float:
    x = x - x.mean()
    return float((x**4).mean() / (x**2).mean() ** 2 - 3.0)


@pytest.mark.parametrize("shape", ["uniform", "gaussian"])
def test_noise_shape(tmp_path: Path, shape: str) -> None:
    """The residual a - (1 - eps) * mu, divided by eps, is the noise itself: Uniform[-1, 1]
    (excess kurtosis -1.2) or N(0, 1/3) censored at the box (PointGoal's box is [-1, 1], so env
    and policy units agree); both have the uniform's variance 1/3 (the Gaussian a bit less, from
    the clip). Rows with eps in [0.4, 0.8] (clipping there is mild): 2 tasks x 80 episodes x 20
    steps x 2 dims = 6400 samples, the kurtosis estimate's sd about 0.06 for a Gaussian."""
    noise = NoiseDistillation(episodes=200, anneal=1.0, noise=shape)
    path = generate(_config(noise_distillation=noise), tmp_path / f"{shape}.h5")
    hf = HistoryFile(path)
    residuals = []
    for task in hf.tasks:
        meta = hf.meta(task)
        expected = {"episodes": 200, "anneal": 1.0}
        expected |= {"noise": shape} if shape != "uniform" else {}
        assert meta["noise_distillation"] == expected  # "uniform" is left out (older files)
        h = hf.history(task)
        assert np.abs(h.action).max() <= 1.0  # clipped to the box (the uniform blend is inside)
        n_ep = len(h.reward) // 20
        eps = noise.epsilon(np.arange(n_ep))
        keep = (eps >= 0.4) & (eps <= 0.8)
        act = h.action.reshape(n_ep, 20, -1)[keep]
        mean = h.mean_action.reshape(n_ep, 20, -1)[keep]
        e = eps[keep][:, None, None]
        residuals.append(((act - (1.0 - e) * mean) / e).ravel())
    r = np.concatenate(residuals)
    assert len(r) >= 6000
    kurt, var = _excess_kurtosis(r), r.var()
    if shape == "uniform":
        assert abs(kurt + 1.2) < 0.1 and abs(var - 1 / 3) < 0.03 and np.abs(r).max() <= 1 + 1e-5
    else:  # a censored Gaussian: near 0, far from the uniform's -1.2; tails beyond the uniform's
        assert kurt > -0.5 and 0.27 < var < 0.36 and (np.abs(r) > 1.01).mean() > 0.01


def test_noise_shape_identity_and_resume(tmp_path: Path) -> None:
    """The default ("uniform") keeps the identity that files written before the field had, so
    they resume; "gaussian" is a different file, refused on resume with the difference named."""
    old = _config(noise_distillation={"episodes": EPISODES})
    assert old.identity()["noise_distillation"] == {"episodes": EPISODES, "anneal": 0.8}
    gauss = _config(noise_distillation={"episodes": EPISODES, "noise": "gaussian"})
    assert gauss.identity()["noise_distillation"]["noise"] == "gaussian"
    path = generate(old, tmp_path / "u.h5")
    assert generate(old, path) == path  # resumes (all tasks done: nothing to do)
    with pytest.raises(ConfigMismatchError, match="noise"):
        generate(gauss, path)


def test_cli_noise_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.h5"
    args = ["generate", "--family", "PointGoal", "--out", str(out), "--backend", "batched",
            "--workers", "0", "--tasks", "1", "--steps", "300", "--set", "warmup_steps=100",
            "--no-progress", "--noise-shape", "gaussian"]  # fmt: skip
    assert main(args) == 2  # no episodes: --noise-distilled is needed
    assert "--noise-distilled: Field required" in capsys.readouterr().err
    assert main([*args, "--noise-distilled", "5"]) == 0
    hf = HistoryFile(out)
    assert hf.meta(hf.tasks[0])["noise_distillation"]["noise"] == "gaussian"
