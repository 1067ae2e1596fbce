"""Noise-distilled histories (GenerateConfig.noise_distillation): schedule, file and CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from icrl.histories import GenerateConfig, HistoryFile, NoiseDistillation, SACConfig, generate
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
