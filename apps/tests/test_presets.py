"""What the presets resolve to: the histories backend, the source of the small preset, and
settings refused before any stage runs."""

import json
from pathlib import Path

import numpy as np
import pytest

from icrl.ad import write_results
from icrl.apps import _presets as P
from icrl.apps import main
from icrl.apps._config import ReproduceConfig
from icrl.apps._pipeline import FamilyResults
from icrl.apps._report import context_label, family_summary


def _cfg(**fields) -> ReproduceConfig:
    return ReproduceConfig.model_validate(fields)


@pytest.mark.parametrize(("cuda", "backend", "device"), [(False, "tianshou", "cpu"),
                                                         (True, "batched", "cuda")])  # fmt: skip
def test_auto_backend_is_batched_on_a_gpu_machine(monkeypatch, cuda, backend, device) -> None:
    monkeypatch.setattr(P, "_cuda", lambda: cuda)
    monkeypatch.setattr(P.os, "cpu_count", lambda: 16)
    gen = P.histories_config("ReacherGoal", _cfg(preset="small"))
    assert (gen.backend, gen.device) == (backend, device)
    assert gen.workers == (15 if cuda else 16)  # batched: one core drives the learners


def test_forced_backend_and_workers_win(monkeypatch) -> None:
    monkeypatch.setattr(P, "_cuda", lambda: True)
    cfg = _cfg(preset="small", histories={"backend": "tianshou", "workers": 3})
    gen = P.histories_config("ReacherGoal", cfg)
    assert (gen.backend, gen.device, gen.workers) == ("tianshou", "cpu", 3)


def test_small_preset_uses_the_strengthened_sac_source_and_paper_keeps_the_paper_one() -> None:
    small = P.histories_config("HalfCheetahVel", _cfg(preset="small")).algorithm
    paper = P.histories_config("HalfCheetahVel", _cfg(preset="paper")).algorithm
    assert (small.gradient_steps, small.init_alpha) == (5, 0.1)
    assert (paper.gradient_steps, paper.init_alpha) == (1, 1.0)
    mine = _cfg(preset="paper", histories={"gradient_steps": 3, "init_alpha": 0.2})
    algo = P.histories_config("ReacherGoal", mine).algorithm
    assert (algo.gradient_steps, algo.init_alpha) == (3, 0.2)


def test_a_stage_setting_is_refused_before_anything_runs(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    argv = ["--families", '["PusherGoal"]', "--histories.gradient_steps", "5", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "PusherGoal" in err and "gradient_steps" in err and "ppo" in err
    assert "Traceback" not in err and not out.exists()


def test_an_invalid_stage_config_does_not_touch_an_existing_run(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text('{"kept": true}')
    assert main(["--out", str(out), "--ad.overrides", '["optim.lr=-1"]']) == 2
    assert "optim.lr" in capsys.readouterr().err
    assert (out / "config.json").read_text() == '{"kept": true}'


def test_out_pointing_at_a_file_is_one_line(tmp_path: Path, capsys) -> None:
    out = tmp_path / "file"
    out.write_text("x")
    assert main(["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "is a file" in err and "Traceback" not in err
    assert out.read_text() == "x"


def test_a_second_run_into_one_out_is_refused(tmp_path: Path, capsys) -> None:
    from icrl.apps._stages import RunLock

    out = tmp_path / "run"
    out.mkdir()
    with RunLock(out):
        assert main(["--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "in use by another reproduce.py" in err and "--out" in err
    assert not (out / "config.json").exists()


def test_show_preset_prints_every_stage_and_runs_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    argv = ["--show-preset", "small", "--families", '["ReacherGoal"]', "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    plan = json.loads(text[text.index("{") :])
    fam = plan["ReacherGoal"]
    assert plan["preset"] == "small" and fam["histories"]["tasks"] == 35
    assert fam["train mamba (first context, first seed)"]["model"]["d_model"] == 128
    assert {"evaluate", "macaw", "mql"} <= set(fam) and not out.exists()


def test_context_labels_are_plain_words() -> None:
    assert context_label("full") == "full history"
    assert context_label("episodes:4") == "last 4 episodes"
    assert context_label("window:800") == "last 800 transitions"


def test_family_summary_has_the_fields_programs_read(tmp_path: Path) -> None:
    tasks = [{"family": "ReacherGoal", "goal": [0.1, 0.1]}] * 2
    returns = np.arange(2 * 2 * 12, dtype=float).reshape(2, 2, 12)
    write_results(tmp_path, "AD-Mamba", [0, 1], tasks, returns)
    refs = {"source_first": -30.0, "source_final": -5.0, "random": -42.0, "zero": -11.0}
    res = FamilyResults("ReacherGoal", tmp_path / "h.h5", curves={"AD-Mamba": tmp_path /
                        "returns.csv"}, summary_refs=refs)  # fmt: skip
    summary = family_summary(res)
    assert summary["references"] == refs
    ad = summary["AD-Mamba"]
    assert {"first_mean", "first_ci95", "last10_mean", "last10_ci95"} <= set(ad)
    assert ad["first_mean"] == pytest.approx(returns[..., 0].mean())
    assert ad["last10_mean"] == pytest.approx(returns[..., -10:].mean())


def test_a_failed_stage_is_one_line_and_its_traceback_is_kept(tmp_path: Path, capsys,
                                                                monkeypatch) -> None:  # fmt: skip
    from icrl.ad import NonFiniteLossError
    from icrl.apps import _pipeline

    def boom(*args, **kwargs):
        raise NonFiniteLossError("non-finite loss at step 7; the last good checkpoint is c.pt")

    monkeypatch.setattr(_pipeline, "run_family", boom)
    out = tmp_path / "run"
    assert main(["--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NonFiniteLossError: non-finite loss at step 7" in err
    assert "Traceback" not in err and "rerun the same command" in err
    assert "Traceback" in (out / "error.log").read_text()


def test_a_missing_config_file_is_a_bad_option(tmp_path: Path, capsys) -> None:
    assert main(["--config", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "r")]) == 2
    assert "--config" in capsys.readouterr().err and not (tmp_path / "r").exists()
