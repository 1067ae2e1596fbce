"""The baselines CLI's error boundary and run-folder locks (issue 20): one line, no traceback.

Bad input and OS errors exit 2 naming the file, field or value; Ctrl-C exits 130 saying how to
resume; a run folder that another process trains into is refused; a failed start leaves no
run folder behind that would refuse the corrected rerun.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from icrl.baselines import MacawConfig, MacawTrainConfig, mql_preset, train_macaw, train_mql
from icrl.baselines.__main__ import main
from icrl.baselines._common import LOCK_NAME, RunDirInUseError, load_torch, run_dir_lock
from icrl.histories import GenerateConfig, generate

TINY_ALGO = MacawConfig(
    hidden_sizes=(16,), latent_dim=4, batch_size=16, inner_batch_size=16, task_batch_size=2
)


@pytest.fixture(scope="module")
def histories(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two ReacherGoal tasks, 100 env steps each of a tiny Tianshou SAC (k = 1)."""
    cfg = GenerateConfig.model_validate(
        {"family": "ReacherGoal", "steps_per_task": 100, "n_envs": 2, "k": 1, "tasks": 2,
         "workers": 0, "progress": False,
         "algorithm": {"kind": "sac", "hidden_sizes": [16], "batch_size": 16,
                       "warmup_steps": 40}}
    )  # fmt: skip
    return generate(cfg, tmp_path_factory.mktemp("hist") / "reacher.h5")


def _error(capsys: pytest.CaptureFixture[str], argv: list[str], code: int = 2) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_missing_and_truncated_histories(tmp_path, histories, capsys) -> None:
    run = str(tmp_path / "run")
    err = _error(
        capsys, ["macaw", "train", "--histories", str(tmp_path / "no.h5"), "--run-dir", run]
    )
    assert "no.h5 does not exist" in err
    cut = tmp_path / "cut.h5"
    cut.write_bytes(histories.read_bytes()[:5000])
    err = _error(capsys, ["macaw", "train", "--histories", str(cut), "--run-dir", run])
    assert "cut.h5: cannot be opened as HDF5" in err
    assert not (tmp_path / "run").exists()  # the corrected rerun is not refused


def test_invalid_settings_name_the_field_and_value(tmp_path, histories, capsys) -> None:
    argv = ["macaw", "train", "--histories", str(histories), "--steps", "-5",
            "--run-dir", str(tmp_path / "run")]  # fmt: skip
    err = _error(capsys, argv)
    assert "invalid MacawTrainConfig settings: steps: Input should be greater than" in err
    assert "(got -5)" in err
    err = _error(capsys, ["mql", "train", str(tmp_path / "m"), "--family", "Nope"])
    assert "unknown family 'Nope'" in err and "ReacherGoal" in err
    err = _error(capsys, ["mql", "train", str(tmp_path / "m"), "--set", "hist_len=-1"])
    assert "hist_len" in err and "(got -1)" in err


def test_an_empty_run_folder_says_to_train_first(tmp_path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    err = _error(
        capsys, ["macaw", "evaluate", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]
    )
    assert "no MACAW checkpoint at" in err and "train the run first" in err
    err = _error(capsys, ["mql", "evaluate", str(tmp_path / "empty"), "--size", "tiny"])
    assert "checkpoint.pt does not exist" in err


def test_ctrl_c_exits_130_and_says_how_to_resume(tmp_path, capsys) -> None:
    with mock.patch("icrl.baselines.__main__._run", side_effect=KeyboardInterrupt):
        err = _error(capsys, ["mql", "train", str(tmp_path / "m")], code=130)
    assert err.startswith("interrupted: the last checkpoint in") and "rerun the same command" in err


def test_a_truncated_checkpoint_says_so(tmp_path) -> None:
    path = tmp_path / "checkpoint.pt"
    import torch

    torch.save({"x": torch.zeros(100)}, path)
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(ValueError, match=r"checkpoint.pt cannot be read: it is truncated"):
        load_torch(path)


def test_training_into_a_locked_run_folder_is_refused(tmp_path, histories, capsys) -> None:
    run = tmp_path / "run"
    with run_dir_lock(run):
        with pytest.raises(RunDirInUseError, match=r"in use by another process \(pid \d+"):
            train_macaw(MacawTrainConfig(histories=histories, run_dir=run, algo=TINY_ALGO,
                                         steps=2), progress=False)  # fmt: skip
        with pytest.raises(RunDirInUseError, match="in use by another process"):
            train_mql(mql_preset("ReacherGoal", "tiny"), run, progress=False)
        err = _error(capsys, ["macaw", "train", "--histories", str(histories), "--steps", "2",
                              "--run-dir", str(run)])  # fmt: skip
        assert "is in use by another process" in err
    assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]
    train_macaw(MacawTrainConfig(histories=histories, run_dir=run, algo=TINY_ALGO, steps=2),
                progress=False)  # fmt: skip


def test_the_lock_of_a_killed_process_is_released(tmp_path) -> None:
    """The holder is SIGKILLed after it reported holding the lock (no timing involved)."""
    code = (
        "import sys; from icrl.baselines._common import run_dir_lock\n"
        f"with run_dir_lock({str(tmp_path)!r}):\n    print('held', flush=True); sys.stdin.read()"
    )
    with subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as proc:  # fmt: skip
        try:
            assert proc.stdout.readline().strip() == "held"
            with pytest.raises(RunDirInUseError, match=str(proc.pid)), run_dir_lock(tmp_path):
                pass
        finally:
            proc.kill()
    with run_dir_lock(tmp_path):
        pass
