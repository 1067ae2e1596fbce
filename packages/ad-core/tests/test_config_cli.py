"""Configs, presets and the command line, including their error paths."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from icrl.ad import ConfigError, DataConfig, TrainConfig, preset, preset_dict
from icrl.ad._cli import main
from icrl.ad._model import ADModel, NormStats
from icrl.seqmodels import PAPER_CONFIGS, MambaConfig, build_backbone


def test_small_presets_mamba_and_transformer_are_parameter_matched() -> None:
    # counted without the transformer's position table, as seqmodels counts the paper's pair
    counts = {}
    for backbone in ("mamba", "transformer"):
        model = build_backbone(
            preset("ReacherGoal", backbone, "small", histories="h.h5").model.backbone
        )
        counts[backbone] = model.num_parameters() - model.position_parameters()
    assert abs(counts["mamba"] / counts["transformer"] - 1) <= 0.02, counts


def test_paper_presets_follow_tables_5_to_7() -> None:
    wd = {"ReacherGoal": 1e-4, "PusherGoal": 2e-4, "HalfCheetahVel": 5e-4, "AntDir": 5e-4}
    for family, decay in wd.items():
        cfg = preset(family, "mamba", "paper", histories="h.h5")
        assert cfg.optim.weight_decay == decay and cfg.epochs == 450
        assert cfg.model.embed_dim == 32
        t = preset(family, "transformer", "paper", histories="h.h5")
        assert t.model.backbone.n_heads == 4 and t.model.backbone.d_ff == 2048
    assert preset("ReacherGoal", histories="h.h5").model.backbone.d_model == 384
    assert preset("AntDir", "transformer", histories="h.h5").model.embed_dim == 128
    assert preset("AntDir", "transformer", histories="h.h5").model.backbone.d_model == (
        PAPER_CONFIGS["transformer-14m"].d_model
    )
    cfg = preset("AntDir", "mamba", "tiny", histories="h.h5", overrides=["max_steps=7"])
    assert cfg.max_steps == 7 and cfg.epochs is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"context": "episodes"}, "needs data.n_episodes"),
        ({"context": "window"}, "needs data.window"),
        ({"context": "full", "window": 10}, 'only used with context="window"'),
        ({"paths": []}, "at least 1 item"),
    ],
)
def test_bad_data_configs_say_what_is_wrong(data, message) -> None:
    with pytest.raises(ValueError, match=message):
        DataConfig.model_validate({"paths": ["h.h5"], **data})


def test_bad_train_configs_say_what_is_wrong() -> None:
    base = {"data": {"paths": ["h.h5"]}, "max_steps": 3}
    with pytest.raises(ValueError, match="exactly one of epochs and max_steps"):
        TrainConfig.model_validate({**base, "epochs": 2})
    with pytest.raises(ValueError, match=r"not divisible by model\.n_heads"):
        TrainConfig.model_validate({**base, "model": {"backbone": "transformer", "d_model": 30}})
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        TrainConfig.model_validate({**base, "lr": 1e-3})
    with pytest.raises(ConfigError, match="unknown family 'Nope'"):
        preset_dict("Nope")


def test_every_backbone_knob_is_reachable_by_its_flat_key() -> None:
    sets = ["model.mixer=mamba2", "model.headdim=16", "model.norm_eps=1e-6", "model.dt_rank=3"]
    cfg = preset("ReacherGoal", "mamba", "tiny", histories="h.h5", overrides=sets)
    bb = cfg.model.backbone
    assert isinstance(bb, MambaConfig)
    assert (bb.d_model, bb.mixer, bb.headdim, bb.norm_eps, bb.dt_rank) == (
        32,
        "mamba2",
        16,
        1e-6,
        3,
    )
    # the model builds the seqmodels config it holds, as it is
    model = ADModel(cfg.model, 4, 2, NormStats((0.0,) * 4, (1.0,) * 4, 0.0, 1.0), None)
    assert model.backbone.config == bb
    flat = cfg.model_dump(mode="json")["model"]  # the dict form: flat, this backbone's fields only
    assert (flat["backbone"], flat["d_model"], flat["mixer"]) == ("mamba", 32, "mamba2")
    assert "n_heads" not in flat and "max_len" not in flat
    assert TrainConfig.model_validate(cfg.model_dump(mode="json")) == cfg
    t = preset(
        "ReacherGoal", "transformer", "tiny", histories="h.h5", overrides=["model.dropout=0.1"]
    )
    assert (t.model.kind, t.model.backbone.dropout, t.model.backbone.d_ff) == (
        "transformer",
        0.1,
        64,
    )
    with pytest.raises(ConfigError, match=r"model\.mixer: Input should be 'mamba1' or 'mamba2'"):
        preset("ReacherGoal", "mamba", "tiny", histories="h.h5", overrides=["model.mixer=mamba3"])


def test_cli_errors_exit_2_with_one_clear_line(tmp_path, capsys) -> None:
    assert main(["train", "--run-dir", str(tmp_path / "r"), "--preset", "ReacherGoal/mamba/tiny",
                 "--histories", "h.h5", "--set", "optim.lr=-1"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "optim.lr: Input should be greater than 0 (got -1)" in err
    assert main(["train", "--run-dir", str(tmp_path / "r"), "--preset", "ReacherGoal/tiny/x",
                 "--histories", "h.h5"]) == 2  # fmt: skip
    assert "unknown backbone 'tiny'" in capsys.readouterr().err
    assert main(["train", "--run-dir", str(tmp_path / "r"), "--config", "missing.toml"]) == 2
    assert "config file missing.toml does not exist" in capsys.readouterr().err
    code = main(["train", "--run-dir", str(tmp_path / "r"), "--preset", "ReacherGoal/mamba/tiny",
                 "--histories", str(tmp_path / "none.h5")])  # fmt: skip
    assert code == 2 and "none.h5 does not exist" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(tmp_path), "--out-dir", str(tmp_path / "e"),
                 "--set", "n_tasks=1", "--set", "device=cpu"]) == 2  # fmt: skip
    assert "holds no checkpoints" in capsys.readouterr().err


def test_cli_train_from_a_toml_config(tmp_path, histories_file, capsys) -> None:
    toml = tmp_path / "cfg.toml"
    toml.write_text(
        f'max_steps = 2\nbatch_size = 2\ndevice = "cpu"\ntensorboard = true\n'
        f"[model]\nd_model = 32\nn_layers = 1\nembed_dim = 8\n"
        f'[data]\npaths = ["{histories_file}"]\ncontext = "window"\nwindow = 20\n'
    )
    assert main(["train", "--config", str(toml), "--run-dir", str(tmp_path / "run")]) == 0
    assert "trained to step 2" in capsys.readouterr().out
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["n_layers"] == 1 and saved["optim"]["weight_decay"] == 1e-4
    assert any((tmp_path / "run" / "tb").iterdir())
    assert main(["preset", "HalfCheetahVel"]) == 0
    assert json.loads(capsys.readouterr().out)["optim"]["weight_decay"] == 5e-4


def test_module_help(capsys) -> None:
    out = subprocess.run([sys.executable, "-m", "icrl.ad", "train", "--help"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "usage: python -m icrl.ad train" in out and "--preset" in out
    with pytest.raises(SystemExit) as done:
        main(["evaluate", "--help"])
    assert done.value.code == 0
    assert "method,seed,task,episode,return" in capsys.readouterr().out


def test_paper_sizes_name_a_backbone_of_each_kind_for_every_paper_family() -> None:
    from icrl.ad import PAPER_SIZES, PAPER_TABLE
    from icrl.seqmodels import PAPER_CONFIGS, MambaConfig, TransformerConfig

    assert set(PAPER_SIZES) == set(PAPER_TABLE)
    for sizes in PAPER_SIZES.values():
        assert isinstance(PAPER_CONFIGS[sizes["mamba"]], MambaConfig)
        assert isinstance(PAPER_CONFIGS[sizes["transformer"]], TransformerConfig)
