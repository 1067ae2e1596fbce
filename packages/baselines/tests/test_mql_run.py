"""MQL end to end on ReacherGoal (CPU): train, checkpoint/resume, adapt, AD-format results."""

from pathlib import Path

import pytest
import torch

from icrl.baselines import evaluate_mql, mql_preset, read_results_csv, run_mql, train_mql
from icrl.baselines._results import COLUMNS


@pytest.mark.slow
def test_tiny_run_trains_adapts_and_writes_ad_format(tmp_path: Path) -> None:
    cfg = mql_preset("ReacherGoal", "tiny")
    csv_path, png_path = run_mql(cfg, tmp_path, seeds=(0,), progress=False)
    rows = read_results_csv(csv_path)
    assert csv_path.name == "returns.csv" and png_path.name == "curves.png"
    assert csv_path.read_text().splitlines()[0] == ",".join(COLUMNS)
    # 2 test tasks x (episode 0 before adaptation + 2 adaptation rounds)
    assert {(r.task, r.episode) for r in rows} == {(t, e) for t in (0, 1) for e in (0, 1, 2)}
    assert all(r.method == "MQL" and r.seed == 0 for r in rows)
    # ReacherGoal rewards are -distance - control cost: every 50-step return is negative
    assert all(-1000 < r.ret < 0 for r in rows)
    assert png_path.stat().st_size > 0
    metrics = (tmp_path / "seed_0" / "metrics.csv").read_text().splitlines()
    assert metrics[-1].startswith(f"{cfg.total_env_steps},")
    # a rerun finds everything done and returns the same file
    text = csv_path.read_text()
    assert run_mql(cfg, tmp_path, seeds=(0,), progress=False)[0].read_text() == text


def test_resume_is_exact(tmp_path: Path) -> None:
    cfg = mql_preset("ReacherGoal", "tiny", total_env_steps=1000, checkpoint_every=600)
    train_mql(cfg, tmp_path / "straight", progress=False)
    train_mql(cfg.model_copy(update={"total_env_steps": 600}), tmp_path / "resumed", progress=False)
    train_mql(cfg, tmp_path / "resumed", progress=False)
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    assert a["counters"]["env_steps"] == b["counters"]["env_steps"] == 1000
    assert a["agent"]["updates"] == b["agent"]["updates"] > 0
    for name in ("actor", "critic_target"):
        for k, v in a["agent"][name].items():
            torch.testing.assert_close(v, b["agent"][name][k], rtol=0, atol=0)


def test_run_dir_of_another_config_is_refused(tmp_path: Path) -> None:
    cfg = mql_preset("ReacherGoal", "tiny", total_env_steps=200)
    train_mql(cfg, tmp_path, progress=False)
    with pytest.raises(ValueError, match="hist_len"):
        train_mql(cfg.model_copy(update={"hist_len": 7}), tmp_path, progress=False)
    with pytest.raises(ValueError, match="train_mql"):
        evaluate_mql(cfg, tmp_path / "nothing", progress=False)


def test_cli_train_then_evaluate(tmp_path: Path) -> None:
    from icrl.baselines.__main__ import main

    common = ["--family", "ReacherGoal", "--size", "tiny", "--no-progress"]
    common += ["--set", "total_env_steps=600", "adapt_rounds=1", "n_test_tasks=1"]
    assert main(["mql", "train", str(tmp_path), *common]) == 0
    assert main(["mql", "evaluate", str(tmp_path), *common]) == 0
    rows = read_results_csv(tmp_path / "returns.csv")
    assert [(r.task, r.episode) for r in rows] == [(0, 0), (0, 1)]


@pytest.mark.slow
def test_seeds_side_by_side_give_the_serial_results(tmp_path: Path) -> None:
    # run_mql(processes=2) trains and evaluates the seeds in spawned processes; every seed's
    # returns must be those of the one-process run, and a rerun finds both seeds done.
    cfg = mql_preset("ReacherGoal", "tiny", total_env_steps=600, adapt_rounds=1, n_test_tasks=1)
    serial, _ = run_mql(cfg, tmp_path / "serial", seeds=(0, 1), progress=False)
    both, _ = run_mql(cfg, tmp_path / "both", seeds=(0, 1), progress=False, processes=2)
    assert both.read_text() == serial.read_text()
    assert {r.seed for r in read_results_csv(both)} == {0, 1}
    assert (
        run_mql(cfg, tmp_path / "both", seeds=(0, 1), processes=2)[0].read_text()
        == both.read_text()
    )


def test_adapt_every_adapts_before_every_mth_episode_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import icrl.baselines.mql._run as run_module

    cfg = mql_preset("ReacherGoal", "tiny", total_env_steps=600, n_test_tasks=1, adapt_rounds=4)
    train_mql(cfg, tmp_path, progress=False)
    calls = []
    real = run_module.mql_adapt

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "mql_adapt", counting)
    for every, adaptations in ((1, 4), (2, 2), (3, 2), (5, 1)):  # before episodes 1, 1+m, ...
        calls.clear()
        rows = evaluate_mql(cfg.model_copy(update={"adapt_every": every}), tmp_path, progress=False)
        assert [r.episode for r in rows] == [0, 1, 2, 3, 4]
        assert len(calls) == adaptations, every
