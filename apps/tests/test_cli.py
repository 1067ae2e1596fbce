"""The reproduce CLI explains itself."""

import pytest

from icrl.apps import main


def test_help_lists_stages_and_presets(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for word in ("histories", "train", "evaluate", "baselines", "report", "tiny", "small", "paper"):
        assert word in out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--preset", "huge"], ["--preset", "huge", "tiny"]),
        (["--families", '["Foo"]'], ["--families", "Foo", "ReacherGoal"]),
        (["--families", '["PointGoal"]'], ["--families", "PointGoal", "icrl.ad"]),
        (["--contexts", '["episodes:x"]'], ["--contexts", "episodes:N"]),
        (["--ad.max_steps", "-3"], ["--ad.max_steps", "-3"]),
    ],
)
def test_bad_options_are_refused_with_the_flag_named(
    argv: list[str], words: list[str], capsys: pytest.CaptureFixture[str], tmp_path
) -> None:
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    for word in words:
        assert word in err
    assert not (tmp_path / "run").exists()


def test_report_command_line_has_no_trailing_space() -> None:
    from icrl.apps._cli import _command

    assert _command([]) == "uv run apps/reproduce.py"
    assert _command(["--out", "a b"]) == "uv run apps/reproduce.py --out 'a b'"


def test_flags_win_over_the_config_file_field_by_field(tmp_path) -> None:
    """--config fills what the flags left unset, inside a section too (runtime.merge_nested)."""
    from icrl.apps._cli import parse

    toml = tmp_path / "run.toml"
    toml.write_text('preset = "small"\nseeds = [4]\n[ad]\nmax_steps = 500\nlr = 1e-4\n')
    cfg = parse(["--config", str(toml), "--ad.max_steps", "7", "--seeds", "[1, 2]"])
    assert (cfg.preset, cfg.seeds, cfg.ad.max_steps, cfg.ad.lr) == ("small", [1, 2], 7, 1e-4)
