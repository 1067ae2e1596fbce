"""The public API as a user meets it: a preset built, a token layout read, evaluation defaults."""

import importlib
from pathlib import Path

import pytest

import icrl.ad as ad
from icrl.seqmodels import PAPER_CONFIGS


def test_public_names_resolve() -> None:
    mod = importlib.import_module("icrl.ad")
    missing = [n for n in mod.__all__ if not hasattr(mod, n)]
    assert not missing, f"icrl.ad.__all__ names missing attributes: {missing}"


@pytest.mark.parametrize("backbone", ["mamba", "transformer"])
def test_paper_preset_is_the_papers_model(backbone: str) -> None:
    h5 = Path("reacher.h5")  # not read: a missing file is the data loader's to name
    cfg = ad.preset("ReacherGoal", backbone, "paper", histories=h5)
    assert isinstance(cfg, ad.TrainConfig)
    ref = PAPER_CONFIGS[ad.PAPER_SIZES["ReacherGoal"][backbone]]
    assert (cfg.model.kind, cfg.model.backbone.d_model, cfg.model.backbone.n_layers) == (
        backbone, ref.d_model, ref.n_layers)  # fmt: skip
    assert cfg.optim.weight_decay == ad.PAPER_TABLE["ReacherGoal"]["weight_decay"]
    assert (cfg.epochs, cfg.data.context, cfg.data.paths) == (450, ad.FullContext(), (h5,))
    assert ad.preset_dict("ReacherGoal", backbone, "paper")["model"]["d_model"] == ref.d_model


def test_preset_overrides_and_refusals() -> None:
    cfg = ad.preset(
        "ReacherGoal", "mamba", "tiny", histories=Path("h.h5"),
        overrides=["optim.lr=1e-4", "max_steps=5", 'data.context="episodes"', "data.n_episodes=2"],
    )  # fmt: skip
    assert (cfg.optim.lr, cfg.max_steps, cfg.data.context) == (
        1e-4, 5, ad.EpisodesContext(n_episodes=2))  # fmt: skip
    assert ad.SIZES == ("tiny", "small", "paper")
    with pytest.raises(ad.ConfigError, match="unknown backbone"):
        ad.preset_dict("ReacherGoal", "rnn")
    with pytest.raises(ad.ConfigError, match="unknown family"):
        ad.preset_dict("Nope")


def test_token_layout_widths() -> None:
    layout = ad.TokenLayout(3, 2)
    widths = {name: s.stop - s.start for name, s in layout.slices.items()}
    assert widths == {"prev_obs": 3, "prev_action": 2, "prev_reward": 1, "prev_next_obs": 3,
                      "obs": 3, "flags": 2}  # fmt: skip
    assert layout.width == sum(widths.values()) == 14
    starts = sorted(s.start for s in layout.slices.values())
    assert starts[0] == 0  # the components tile the token without gaps
    assert [s.stop for s in sorted(layout.slices.values(), key=lambda s: s.start)][:-1] == starts[
        1:
    ]


def test_eval_config_defaults() -> None:
    ev = ad.EvalConfig()
    assert (ev.n_tasks, ev.episodes, ev.device, ev.seed) == (10, None, "auto", 0)
    assert (ev.reference_episodes, ev.asynchronous, ev.histories) == (3, True, None)
    with pytest.raises(ValueError):
        ad.EvalConfig(n_tasks=0)
