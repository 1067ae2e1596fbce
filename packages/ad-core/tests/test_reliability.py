"""Issue 20 in icrl.ad: checks before expensive work, no silent wrong result, no stuck state.

Run-directory locks, falling back past a truncated newest checkpoint, plain messages for bad
checkpoints and devices, evaluation refusing bad outputs before its rollouts, mixed backbones,
a preset of another family, and non-finite training data refused on read.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import h5py
import numpy as np
import pytest
import torch

from icrl.ad import (
    CheckpointError,
    ConfigError,
    ContextDataset,
    EvalConfig,
    FullContext,
    RunDirError,
    evaluate,
    load_model,
    preset,
    train,
)
from icrl.ad._checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from icrl.ad._cli import main
from icrl.ad._lock import LOCK_NAME, DirectoryInUseError, DirLock
from icrl.ad._train import resolve_device


def _dataset(record, seed: int = 0) -> ContextDataset:
    return ContextDataset.from_histories(
        {"a": record(episodes=2)}, context=FullContext(), seed=seed
    )


@pytest.fixture
def run(tmp_path, record, tiny):
    """A 4-step Mamba run with a checkpoint at every step (keeps 3: steps 2, 3, 4)."""
    cfg = tiny(max_steps=4, checkpoint_every=1)
    train(cfg, tmp_path / "run", dataset=_dataset(record))
    return tmp_path / "run", cfg


# --- locks ------------------------------------------------------------------------------------


def test_a_locked_directory_is_refused_naming_the_holder(tmp_path) -> None:
    locked = pytest.raises(DirectoryInUseError, match=r"in use by another process \(pid \d+")
    with DirLock(tmp_path / "d"), locked:
        DirLock(tmp_path / "d").acquire()
    with DirLock(tmp_path / "d"):  # released on exit
        pass


def test_the_lock_of_a_killed_process_is_released(tmp_path) -> None:
    """The holder is SIGKILLed after it reported holding the lock (no timing involved)."""
    code = (
        "import sys; from icrl.ad._lock import DirLock; "
        f"lock = DirLock({str(tmp_path)!r}).acquire(); print('held', flush=True); sys.stdin.read()"
    )
    with subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as proc:  # fmt: skip
        try:
            assert proc.stdout.readline().strip() == "held"
            with pytest.raises(DirectoryInUseError, match=str(proc.pid)):
                DirLock(tmp_path).acquire()
        finally:
            proc.kill()
    with DirLock(tmp_path):
        pass


def test_training_into_a_locked_run_dir_is_refused(tmp_path, record, tiny) -> None:
    with DirLock(tmp_path / "run"), pytest.raises(DirectoryInUseError, match="in use by another"):
        train(tiny(max_steps=2), tmp_path / "run", dataset=_dataset(record))
    assert not (tmp_path / "run" / "config.json").exists()
    train(tiny(max_steps=2), tmp_path / "run", dataset=_dataset(record))  # the lock file is no run


# --- checkpoints --------------------------------------------------------------------------------


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])


def test_a_truncated_checkpoint_says_so(run) -> None:
    run_dir, _ = run
    newest = checkpoint_path(run_dir, 4)
    _truncate(newest)
    with pytest.raises(
        CheckpointError, match=r"step_000000004\.pt cannot be read: it is truncated"
    ):
        load_checkpoint(newest)


def test_a_truncated_newest_checkpoint_falls_back_to_the_previous(
    tmp_path, record, tiny, capsys
) -> None:
    longer = tiny(max_steps=6, checkpoint_every=1)
    reference = train(longer, tmp_path / "ref", dataset=_dataset(record))
    # The same run, stopped at step 4 with its newest checkpoint cut short, then resumed.
    part = tmp_path / "part"
    train(longer, part, dataset=_dataset(record), stop_after=4)
    _truncate(checkpoint_path(part, 4))
    resumed = train(longer, part, dataset=_dataset(record))
    err = capsys.readouterr().err
    assert "step_000000004.pt cannot be read: it is truncated" in err
    assert "resuming from" in err and "step_000000003.pt (step 3)" in err
    a, b = load_checkpoint(reference.checkpoint), load_checkpoint(resumed.checkpoint)
    assert b["step"] == 6
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    load_checkpoint(checkpoint_path(part, 4))  # overwritten by the resumed run


def test_no_readable_checkpoint_is_refused(run, record) -> None:
    run_dir, cfg = run
    for step in (2, 3, 4):
        _truncate(checkpoint_path(run_dir, step))
    with pytest.raises(RunDirError, match=r"no checkpoint of .* can be read"):
        train(cfg, run_dir, dataset=_dataset(record))


def test_weights_that_do_not_fit_their_config_are_named(run) -> None:
    run_dir, _ = run
    ckpt = load_checkpoint(checkpoint_path(run_dir, 4))
    ckpt["config"]["model"]["d_model"] = 48
    bad = run_dir.parent / "edited.pt"
    save_checkpoint(bad, {k: v for k, v in ckpt.items() if k not in ("format", "path")})
    with pytest.raises(CheckpointError, match=r"edited\.pt: its weights do not fit .*d_model=48"):
        load_model(bad)


def test_a_checkpoint_of_another_run_in_a_run_dir_is_refused(tmp_path, run, record, tiny) -> None:
    run_dir, cfg = run
    other = tiny(max_steps=9, checkpoint_every=9, model__backbone="transformer")
    train(other, tmp_path / "tf", dataset=_dataset(record))
    shutil.copy(checkpoint_path(tmp_path / "tf", 9), checkpoint_path(run_dir, 9))
    with pytest.raises(RunDirError, match=r"step_000000009\.pt was written by another run .*model"):
        train(cfg, run_dir, dataset=_dataset(record))
    with pytest.raises(CheckpointError, match=r"model\.backbone 'transformer' vs 'mamba'"):
        load_checkpoint(run_dir)


# --- devices, presets, data ---------------------------------------------------------------------


def test_an_unknown_device_is_refused_when_the_config_is_read(tiny) -> None:
    with pytest.raises(ValueError, match=r"device='tpu' is not a device icrl\.ad runs on"):
        tiny(device="tpu")
    with pytest.raises(ValueError, match="device='xla' is not a device"):
        EvalConfig(device="xla")
    with pytest.raises(ValueError, match="device='tpu'"):
        resolve_device("tpu")


def test_a_preset_of_another_family_is_refused(histories_file) -> None:
    refused = r"preset AntDir/mamba/tiny is for AntDir, but histories .*reacher\.h5 are of family "
    with pytest.raises(ConfigError, match=refused + "ReacherGoal; use --preset ReacherGoal/"):
        preset("AntDir", "mamba", "tiny", histories=histories_file)
    assert preset("ReacherGoal", "mamba", "tiny", histories=histories_file).max_steps


def test_non_finite_data_is_refused_on_read(tmp_path, record, histories_file) -> None:
    h = record(episodes=1)
    h.action[7, 1] = np.nan
    with pytest.raises(ValueError, match=r"history 'a': field 'action' .* nan at row 7, column 1"):
        ContextDataset.from_histories({"a": h}, context=FullContext())
    bad = tmp_path / "inf.h5"
    shutil.copy(histories_file, bad)
    with h5py.File(bad, "a") as f:
        reward = f["task_001/transitions/reward"]
        values = reward[()]
        values[5] = np.inf
        reward[...] = values
    # icrl.histories checks the values it reads (naming its dataset); ad-core's own check names
    # the field: either way the file, task and field are named before any training.
    named = r"inf\.h5 \(task 'task_001'\): (dataset 'transitions/|field ')reward' holds .*inf"
    with pytest.raises(ValueError, match=named):
        ContextDataset.from_files([bad])


# --- evaluation: refused before the rollouts ----------------------------------------------------


def _no_rollouts():
    return mock.patch("icrl.ad._evaluate._rollouts", side_effect=AssertionError("rolled out"))


def test_evaluation_checks_its_outputs_and_inputs_before_the_rollouts(
    tmp_path, run, record, tiny
) -> None:
    run_dir, _ = run
    cfg = EvalConfig(n_tasks=1, asynchronous=False, reference_episodes=0, progress=False)
    (tmp_path / "afile").write_text("x")
    cut = tmp_path / "cut.h5"
    with _no_rollouts():
        with pytest.raises(ValueError, match=r"output directory .*afile is a file"):
            evaluate(cfg, [run_dir], tmp_path / "afile")
        with pytest.raises(ValueError, match=r"afile/ev lies under .*afile, which is a file"):
            evaluate(cfg, [run_dir], tmp_path / "afile" / "ev")
        missing = cfg.model_copy(update={"histories": tmp_path / "missing.h5"})
        with pytest.raises(ValueError, match=r"histories=.*missing\.h5 .* does not exist"):
            evaluate(missing, [run_dir], tmp_path / "ev")
        cut.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
        truncated = cfg.model_copy(update={"histories": cut})
        with pytest.raises(ValueError, match=r"cut\.h5: cannot be opened as HDF5"):
            evaluate(truncated, [run_dir], tmp_path / "ev")
        other = tiny(max_steps=1, seed=1, model__backbone="transformer")
        train(other, tmp_path / "tf", dataset=_dataset(record, seed=1))
        with pytest.raises(ValueError, match=r"different backbones \(.*: mamba, .*: transformer\)"):
            evaluate(cfg, [run_dir, tmp_path / "tf"], tmp_path / "ev")
        with DirLock(tmp_path / "ev"), pytest.raises(DirectoryInUseError):
            evaluate(cfg, [run_dir], tmp_path / "ev")
    assert sorted(p.name for p in (tmp_path / "ev").iterdir()) == [LOCK_NAME]


def test_mixed_backbones_under_an_explicit_method_name(tmp_path, run, record, tiny) -> None:
    run_dir, _ = run
    other = tiny(max_steps=1, seed=1, model__backbone="transformer")
    train(other, tmp_path / "tf", dataset=_dataset(record, seed=1))
    cfg = EvalConfig(n_tasks=1, episodes=1, asynchronous=False, reference_episodes=0,
                     progress=False, method="AD-both")  # fmt: skip
    res = evaluate(cfg, [run_dir, tmp_path / "tf"], tmp_path / "ev")
    assert res.method == "AD-both" and res.returns.shape == (1, 2, 1)


# --- command line -------------------------------------------------------------------------------


def test_ctrl_c_exits_130_and_says_how_to_resume(tmp_path, capsys) -> None:
    argv = ["train", "--config", str(tmp_path / "c.json"), "--run-dir", str(tmp_path / "r")]
    with mock.patch("icrl.ad._cli._run", side_effect=KeyboardInterrupt):
        assert main(argv) == 130
    err = capsys.readouterr().err
    assert "interrupted: checkpoints finished so far are kept" in err and "rerun" in err


def test_a_config_with_an_unknown_device_exits_2(tmp_path, histories_file, capsys) -> None:
    argv = ["train", "--preset", "ReacherGoal/mamba/tiny", "--histories", str(histories_file),
            "--set", 'device="tpu"', "--run-dir", str(tmp_path / "r")]  # fmt: skip
    assert main(argv) == 2
    assert "device='tpu' is not a device" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
