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


def test_unknown_preset_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--preset", "huge"])
    assert exc.value.code == 2
    assert "huge" in capsys.readouterr().err
