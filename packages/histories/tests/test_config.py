"""Presets carry the paper's values; configs validate their input and say what is wrong."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from icrl.histories import PRESETS, DroQConfig, GenerateConfig, PPOConfig, SACConfig
from icrl.histories.__main__ import main


def test_presets_are_the_papers_tables() -> None:
    expected = {  # Table 4 (algorithm, steps) and Table 5 (k)
        "ReacherGoal": (SACConfig, 100_000, 4),
        "PusherGoal": (PPOConfig, 500_000, 10),
        "HalfCheetahVel": (SACConfig, 400_000, 8),
        "AntDir": (DroQConfig, 500_000, 10),
    }
    for family, (cls, steps, k) in expected.items():
        config = GenerateConfig(family=family)
        assert isinstance(config.algorithm, cls)
        assert (config.steps_per_task, config.k, config.n_envs) == (steps, k, 5)
        assert config.algorithm.lr == 1e-4 and config.algorithm.gamma == 0.99
        assert config.tasks is None  # the whole train split
    ppo = PRESETS["PusherGoal"].algorithm
    assert (ppo.epochs, ppo.steps_per_env, ppo.batch_size, ppo.ent_coef) == (10, 500, 64, 5e-3)
    assert (ppo.gae_lambda, ppo.clip, ppo.vf_coef) == (0.95, 0.2, 0.5)
    sac = PRESETS["ReacherGoal"].algorithm
    assert (sac.buffer_size, sac.warmup_steps, sac.batch_size) == (1_000_000, 400, 256)
    droq = PRESETS["AntDir"].algorithm
    assert (droq.gradient_steps, droq.policy_delay, droq.warmup_steps) == (3, 3, 400)


def test_bad_configs_name_the_field() -> None:
    with pytest.raises(ValidationError, match="family must be one of"):
        GenerateConfig(family="Hopper")
    with pytest.raises(ValidationError, match=r"warmup_steps \(400\) must be a multiple of n_envs"):
        GenerateConfig(family="ReacherGoal", n_envs=7)
    with pytest.raises(ValidationError, match=r"steps_per_task \(1003\) minus warm-up \(400\)"):
        GenerateConfig(family="ReacherGoal", steps_per_task=1003)
    with pytest.raises(ValidationError, match="multiple of 2500"):
        GenerateConfig(family="PusherGoal", steps_per_task=3000)
    with pytest.raises(ValidationError, match="extra"):
        GenerateConfig(family="ReacherGoal", workrs=2)
    with pytest.raises(ValidationError, match="algorithm must be one of"):
        GenerateConfig(family="ReacherGoal", algorithm="td3")


def test_cli_overrides_reach_the_config(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import icrl.histories._generate as gen

    parser_args = [
        "generate",
        "--family",
        "AntDir",
        "--out",
        "x.h5",
        "--set",
        "hidden_sizes=[64,64]",
        "--set",
        "lr=3e-4",
        "--steps",
        "1400",
        "--tasks",
        "2",
    ]
    captured: dict[str, GenerateConfig] = {}

    def fake_generate(config: GenerateConfig, path: str) -> str:
        captured["config"] = config
        return path

    monkeypatch.setattr(gen, "generate", fake_generate)  # parse only: no run
    assert main(parser_args) == 0
    config = captured["config"]
    assert isinstance(config.algorithm, DroQConfig)  # the family's preset, overridden
    assert config.algorithm.hidden_sizes == (64, 64) and config.algorithm.lr == 3e-4
    assert config.algorithm.gradient_steps == 3
    assert (config.steps_per_task, config.tasks) == (1400, 2)
    capsys.readouterr()
    assert main(["generate", "--family", "AntDir", "--out", "x.h5", "--set", "nope"]) == 2
    assert "--set expects KEY=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tasks", "0"], "--tasks: Input should be greater than or equal to 1 (got 0)"),
        (["--set", "lr=abc"], "--set lr (algorithm sac): Input should be a valid number"),
        (["--set", "nosuch=1"], "--set nosuch (algorithm sac): Extra inputs are not permitted"),
    ],
)
def test_cli_names_the_flag_of_an_invalid_field(args, message, capsys) -> None:
    assert main(["generate", "--family", "ReacherGoal", "--out", "x.h5", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "generate --help" in err and "errors.pydantic.dev" not in err
