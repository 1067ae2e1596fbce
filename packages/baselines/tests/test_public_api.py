"""The public API as a user meets it: top-level names used, sub-package names resolved."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import icrl.baselines as bl

USER_FACING = {
    # configs
    "MacawConfig",
    "MacawTrainConfig",
    "MacawEvalConfig",
    "MQLConfig",
    "mql_preset",
    # train / evaluate / run
    "train_macaw",
    "load_macaw",
    "evaluate_macaw",
    "run_macaw",
    "train_mql",
    "evaluate_mql",
    "run_mql",
    # results format
    "EpisodeResult",
    "write_results",
    "write_results_csv",
    "read_results_csv",
    "plot_results",
}
INTERNALS = {
    "icrl.baselines.macaw": {"Macaw", "MacawMLP", "WLinear", "MacawBuffer", "build_macaw_buffer"},
    "icrl.baselines.mql": {"MQLAgent", "MultiTaskReplay", "mql_adapt", "AD_DATA_VOLUME"},
}


def test_top_level_exports_exactly_the_user_facing_names() -> None:
    assert set(bl.__all__) == USER_FACING
    assert len(bl.__all__) == len(USER_FACING)
    for sub, names in INTERNALS.items():
        assert not names & set(bl.__all__), f"{sub} internals leak into icrl.baselines.__all__"


@pytest.mark.parametrize("name", sorted(INTERNALS))
def test_sub_package_names_resolve(name: str) -> None:
    mod = importlib.import_module(name)
    missing = [n for n in mod.__all__ if not hasattr(mod, n)]
    assert not missing, f"{name}.__all__ names missing attributes: {missing}"
    assert INTERNALS[name] <= set(mod.__all__)
    # The entry points re-exported at the top level are the sub-package's own objects.
    for n in set(mod.__all__) & USER_FACING:
        assert getattr(bl, n) is getattr(mod, n)


def test_mql_preset_builds_a_config_with_overrides() -> None:
    cfg = bl.mql_preset("ReacherGoal", "tiny", hist_len=3)
    assert isinstance(cfg, bl.MQLConfig)
    assert (cfg.family, cfg.hist_len, cfg.total_env_steps) == ("ReacherGoal", 3, 1_200)
    paper = bl.mql_preset("ReacherGoal")
    assert paper.total_env_steps == 70 * 100_000  # AD's data volume: 70 train tasks × 100k steps
    with pytest.raises(ValueError, match="unknown family"):
        bl.mql_preset("Nope", "tiny")


def test_macaw_configs_compose(tmp_path: Path) -> None:
    algo = bl.MacawConfig(hidden_sizes=(16,), latent_dim=4)
    train = bl.MacawTrainConfig(histories=tmp_path / "h.h5", run_dir=tmp_path / "run", algo=algo)
    assert train.algo.latent_dim == 4 and train.steps == 1000
    again = bl.MacawTrainConfig.model_validate_json(train.model_dump_json())
    assert again == train
    assert bl.MacawEvalConfig(episodes=3).adaptation == "online"


def test_results_csv_round_trip(tmp_path: Path) -> None:
    rows = [bl.EpisodeResult("MQL", 0, t, e, float(t + e) / 3) for t in range(2) for e in range(3)]
    path = tmp_path / "returns.csv"
    bl.write_results_csv(rows, path)
    assert path.read_text().splitlines()[0] == "method,seed,task,episode,return"
    assert bl.read_results_csv(path) == rows
