"""The public API as a user meets it: a generation config from a preset, a history recorded."""

import importlib

import numpy as np
import pytest

import icrl.histories as h


def test_public_names_resolve() -> None:
    mod = importlib.import_module("icrl.histories")
    missing = [n for n in mod.__all__ if not hasattr(mod, n)]
    assert not missing, f"icrl.histories.__all__ names missing attributes: {missing}"


def test_generate_config_takes_the_family_preset() -> None:
    cfg = h.GenerateConfig(family="ReacherGoal", tasks=2, workers=2)
    preset = h.PRESETS["ReacherGoal"]
    assert isinstance(preset, h.Preset)
    assert isinstance(cfg.algorithm, h.SACConfig) and cfg.algorithm == preset.algorithm
    assert (cfg.steps_per_task, cfg.k, cfg.tasks) == (preset.steps_per_task, preset.k, 2)
    assert isinstance(h.PRESETS["PusherGoal"].algorithm, h.PPOConfig)
    assert isinstance(h.PRESETS["AntDir"].algorithm, h.DroQConfig)
    again = h.GenerateConfig.model_validate_json(cfg.model_dump_json())
    assert again == cfg


def test_generate_config_refuses_a_bad_step_budget() -> None:
    with pytest.raises(ValueError, match="steps_per_task"):
        h.GenerateConfig(family="ReacherGoal", steps_per_task=401, k=1, n_envs=2)


def test_recorder_keeps_one_episode_of_every_k() -> None:
    rec = h.HistoryRecorder(n_envs=1, k=2, obs_dim=2, act_dim=1)
    for episode in range(4):
        for t in range(3):
            obs = np.full((1, 2), 10 * episode + t, dtype=np.float32)
            rec.record_step(
                obs, np.zeros((1, 1)), np.array([1.0]), obs + 1,
                np.array([False]), np.array([t == 2]), mean_action=np.zeros((1, 1)),
            )  # fmt: skip
    assert rec.n_episodes == 4
    transitions, episodes = rec.result()
    assert len(transitions["reward"]) == 6  # episodes 0 and 2 kept, 3 steps each
    assert sorted(set(transitions["episode"].tolist())) == [0, 2]
    assert transitions["obs"][:, 0].tolist() == [0, 1, 2, 20, 21, 22]
    np.testing.assert_allclose(episodes["return"], [3.0] * 4)  # every episode's return kept
