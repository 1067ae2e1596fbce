"""Issue 20, histories share: refusals before any work, no stuck states, schema checks on read,
one error line per failure in the CLI, and the lock on an output being generated.

Generation tests replace the source run (`run_task`) with a synthetic recorder run, so that they
check the driver (parts, lock, resume, clean-up) in milliseconds; the real learners are checked
in test_generate.py.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from pydantic import ValidationError

import icrl.histories._generate as gen
from icrl.histories import (
    DeviceError,
    HistoryFile,
    HistoryFileError,
    OutputPathError,
    RunLockedError,
    TaskFailedError,
    generate,
)
from icrl.histories.__main__ import main
from icrl.histories._generate import LOCK_NAME, parts_dir


@pytest.fixture
def fake_source(monkeypatch: pytest.MonkeyPatch, synthetic_source: Any) -> list[int]:
    """Replace the source run; returns the list of task indices it was asked to run."""
    calls: list[int] = []

    def run(config: Any, index: int, task: Any, progress: Any = None, **kw: Any) -> Any:
        calls.append(index)
        return synthetic_source(config, index, task, progress, **kw)

    monkeypatch.setattr(gen, "run_task", run)
    return calls


@pytest.fixture
def failing_from(monkeypatch: pytest.MonkeyPatch, synthetic_source: Any) -> Any:
    """`failing_from(bad, exc)`: the synthetic source, except that task `bad` raises `exc`."""

    def install(bad: int, exc: BaseException) -> None:
        def run(config: Any, index: int, task: Any, progress: Any = None, **kw: Any) -> Any:
            if index == bad:
                raise exc
            return synthetic_source(config, index, task, progress, **kw)

        monkeypatch.setattr(gen, "run_task", run)

    return install


def _parts_listing(out: Path) -> list[str]:
    return sorted(p.name for p in parts_dir(out).iterdir())


# -- refused before any work ------------------------------------------------------------------


def test_steps_below_one_episode_are_refused(make_config: Any, tmp_path: Path, capsys) -> None:
    with pytest.raises(ValidationError, match=r"40 is less than one episode: ReacherGoal.*50"):
        make_config(steps_per_task=40, algorithm={"kind": "sac", "warmup_steps": 20})
    make_config(steps_per_task=100, algorithm={"kind": "sac", "warmup_steps": 20})  # 1 each
    args = ["generate", "--family", "ReacherGoal", "--n-envs", "2", "--steps", "40"]
    args += ["--set", "warmup_steps=20", "--out", str(tmp_path / "o.h5")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--steps" in err and "50 steps" in err and "at least 100" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("lr", -1, r"--set lr \(algorithm sac\): Input should be greater than or equal to 0"),
        ("hidden_sizes", [16, 0], r"--set hidden_sizes\.1 .*greater than or equal to 1"),
        ("max_grad_norm", 0, r"--set max_grad_norm \(algorithm ppo\): .*greater than 0"),
    ],
)
def test_bad_algorithm_values_are_refused_before_any_file(
    tmp_path: Path, capsys, field: str, value: Any, message: str
) -> None:
    algo = ["--algorithm", "ppo"] if field == "max_grad_norm" else []
    args = ["generate", "--family", "ReacherGoal", *algo, "--set", f"{field}={json.dumps(value)}"]
    assert main([*args, "--out", str(tmp_path / "o.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert re.search(message, err) and "\n" not in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_negative_seed_is_refused(make_config: Any) -> None:
    with pytest.raises(ValidationError, match="seed"):
        make_config(seed=-1)


def test_an_absent_device_is_refused_before_anything_is_written(
    tmp_path: Path, make_config: Any
) -> None:
    import torch

    out = tmp_path / "o.h5"
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match=r"'cuda'.*no CUDA device is available"):
            generate(make_config(device="cuda"), out)
    with pytest.raises(DeviceError, match=r"'cuda:99'"):
        gen.check_device("cuda:99", "tianshou")
    with pytest.raises(DeviceError, match="not a torch device"):
        generate(make_config(device="gpu0"), out)
    with pytest.raises(DeviceError, match="only --backend batched"):
        generate(make_config(device="cpu,cpu"), out)
    assert list(tmp_path.iterdir()) == []


def test_output_paths_that_cannot_be_files_are_refused(tmp_path: Path, make_config: Any) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputPathError, match=r"file is a file, not a directory"):
        generate(make_config(), tmp_path / "file" / "o.h5")
    with pytest.raises(OutputPathError, match=r"is a directory; give the history file's path"):
        generate(make_config(), tmp_path)
    (tmp_path / "p.h5.parts").write_text("x")
    with pytest.raises(OutputPathError, match=r"p\.h5\.parts is a file"):
        generate(make_config(), tmp_path / "p.h5")


def test_an_output_directory_that_cannot_be_written_is_refused_before_work(
    tmp_path: Path, make_config: Any, fake_source: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the merged file goes is checked too, even when the parts directory is writable
    (mode bits cannot show it to root, so os.access is what answers here)."""
    out = tmp_path / "o.h5"
    parts_dir(out).mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m: Path(p) != tmp_path and real(p, m))
    with pytest.raises(gen.OutputWriteError, match=rf"Permission denied.*'{out}'"):
        generate(make_config(), out)
    monkeypatch.setattr(os, "access", lambda p, m: Path(p) != parts_dir(out) and real(p, m))
    with pytest.raises(gen.OutputWriteError, match=rf"Permission denied.*'{out}\.parts'"):
        generate(make_config(), out)
    assert fake_source == [] and os.listdir(parts_dir(out)) == []


# -- no stuck states ---------------------------------------------------------------------------


def test_parts_without_a_finished_task_do_not_block_other_settings(
    tmp_path: Path, make_config: Any, fake_source: list[int]
) -> None:
    out = tmp_path / "o.h5"
    parts = parts_dir(out)
    parts.mkdir()
    (parts / "config.json").write_text(json.dumps(make_config(device="cuda").identity()))
    with pytest.warns(UserWarning, match=r"no finished task.*device: existing 'cuda'"):
        generate(make_config(), out)
    assert HistoryFile(out).tasks == ["task_000", "task_001"] and not parts.exists()


def test_a_failed_first_task_leaves_nothing_and_a_later_one_keeps_the_finished(
    tmp_path: Path, make_config: Any, failing_from: Any
) -> None:
    out = tmp_path / "o.h5"
    failing_from(0, RuntimeError("boom"))
    with pytest.raises(TaskFailedError, match="task_000"):
        generate(make_config(), out)
    assert list(tmp_path.iterdir()) == []  # as before the run
    failing_from(1, RuntimeError("boom"))
    with pytest.raises(TaskFailedError, match="task_001"):
        generate(make_config(), out)
    assert _parts_listing(out) == ["config.json", "task_000.h5"]


def test_refusal_advice_for_finished_parts_works(
    tmp_path: Path,
    make_config: Any,
    monkeypatch: pytest.MonkeyPatch,
    failing_from: Any,
    synthetic_source: Any,
    capsys,
) -> None:
    """Parts holding a finished task refuse other settings; the printed command resumes."""
    out = tmp_path / "o.h5"
    failing_from(1, RuntimeError("boom"))
    with pytest.raises(TaskFailedError):
        generate(make_config(), out)
    cfg = tmp_path / "other.json"
    cfg.write_text(make_config(k=3).model_dump_json())
    assert main(["generate", "--config", str(cfg), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "k: existing 2, requested 3" in err and "1 finished task" in err and "\n" not in err
    command = err.split("resume it with its own settings (`")[1].split("`")[0]
    assert command.startswith("python -m icrl.histories generate --config ")
    monkeypatch.setattr(gen, "run_task", synthetic_source)
    # The advice as printed (in-process, so that the synthetic source applies: --workers 0).
    assert main([*command.split()[3:], "--workers", "0"]) == 0
    assert HistoryFile(out).tasks == ["task_000", "task_001"]


# -- the lock ----------------------------------------------------------------------------------


def test_a_second_writer_is_refused_and_a_dead_holder_does_not_block(
    tmp_path: Path, make_config: Any, fake_source: list[int]
) -> None:
    out = tmp_path / "o.h5"
    parts = parts_dir(out)
    parts.mkdir()
    fd = os.open(parts / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.pwrite(fd, b"4242\n", 0)
        with pytest.raises(RunLockedError, match=r"pid 4242\) is generating into .*o\.h5"):
            generate(make_config(), out)
        assert fake_source == [] and os.listdir(parts) == [LOCK_NAME]
    finally:
        os.close(fd)
    # A holder killed with SIGKILL: the kernel drops its lock, and the next run goes ahead.
    code = (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); "
        "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code, str(parts / LOCK_NAME)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError):
            generate(make_config(), out)
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    generate(make_config(), out)
    assert HistoryFile(out).tasks == ["task_000", "task_001"] and not parts.exists()


# -- the CLI's error boundary ------------------------------------------------------------------


def _args(cfg: Path, out: Path) -> list[str]:
    return ["generate", "--config", str(cfg), "--out", str(out), "--workers", "0"]


@pytest.fixture
def cfg(tmp_path: Path, make_config: Any) -> Path:
    path = tmp_path / "cfg.json"
    path.write_text(make_config().model_dump_json())
    return path


def test_ctrl_c_says_how_to_resume(tmp_path: Path, cfg: Path, failing_from: Any, capsys) -> None:
    out = tmp_path / "o.h5"
    failing_from(1, KeyboardInterrupt())
    assert main(_args(cfg, out)) == 130
    err = capsys.readouterr().err.strip()
    assert err == (
        f"interrupted; 1 finished task is kept in {out}.parts; rerun the same command to resume"
    )


def test_a_failed_task_is_one_line(tmp_path: Path, cfg: Path, failing_from: Any, capsys) -> None:
    out = tmp_path / "o.h5"
    failing_from(0, RuntimeError("CUDA error: an illegal memory access"))
    assert main(_args(cfg, out)) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "task_000" in err and "illegal memory access" in err
    assert "no task had finished" in err and not parts_dir(out).exists()


def test_a_full_disk_names_the_file_and_keeps_finished_tasks(
    tmp_path: Path, cfg: Path, monkeypatch: pytest.MonkeyPatch, fake_source: list[int], capsys
) -> None:
    out = tmp_path / "o.h5"

    def full_after_one(path: Any, mode: str = "r", *a: Any, **kw: Any) -> Any:
        if mode == "wb" and "task_000" not in str(path):  # the first task's file fits
            raise OSError(errno.ENOSPC, "No space left on device")
        return open(path, mode, *a, **kw)

    monkeypatch.setattr(gen, "open", full_after_one, raising=False)  # shadows the builtin
    assert main(_args(cfg, out)) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: No space left on device while writing {out}.parts/task_001.h5.tmp; free space "
        f"(or choose another --out), then 1 finished task is kept in {out}.parts; rerun the "
        "same command to resume"
    )
    assert _parts_listing(out) == ["config.json", "task_000.h5"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, r"--config .*c\.json: no such file"),
        ('{"family": ', r"--config .*c\.json is not valid JSON"),
        ("[1]", r"--config .*c\.json holds a JSON list"),
    ],
)
def test_config_file_errors_name_the_file(
    tmp_path: Path, capsys, content: str | None, message: str
) -> None:
    if content is not None:
        (tmp_path / "c.json").write_text(content)
    assert main(["generate", "--config", str(tmp_path / "c.json"), "--out", "o.h5"]) == 2
    err = capsys.readouterr().err.strip()
    assert re.search(message, err) and "free space" not in err


def test_info_of_an_unfinished_run_says_how_to_resume(
    tmp_path: Path, make_config: Any, failing_from: Any, capsys
) -> None:
    out = tmp_path / "o.h5"
    failing_from(1, RuntimeError("boom"))
    with pytest.raises(TaskFailedError):
        generate(make_config(), out)
    assert main(["info", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not finished yet" in err and "1 finished task" in err and "no such file" not in err
    assert f"generate --config {out}.parts/config.json --out {out}" in err


# -- schema checks on read ---------------------------------------------------------------------


@pytest.fixture
def good(tmp_path: Path, make_config: Any, fake_source: list[int]) -> Path:
    """Two synthetic tasks: 4 episodes of 50 steps each, k=2 keeps episodes 0 and 2."""
    return generate(make_config(), tmp_path / "good.h5")


def _damaged(good: Path, name: str, edit: Any) -> Path:
    path = good.with_name(name)
    shutil.copy(good, path)
    with h5py.File(path, "a") as f:
        edit(f["task_001"])
    return path


def _set(group: h5py.Group, key: str, change: Any, dtype: Any = None) -> None:
    data = change(group[key][()])
    del group[key]
    group.create_dataset(key, data=data if dtype is None else data.astype(dtype))


def _poke(key: str, row: Any, value: Any) -> Any:
    def change(data: np.ndarray) -> np.ndarray:
        data[row] = value
        return data

    return lambda group: _set(group, key, change)


DAMAGE = {
    "step": (_poke("transitions/step", 7, 3), r"transitions/step\[7\] is 3, expected 7"),
    "episode": (
        _poke("transitions/episode", 60, 0),
        r"transitions/episode\[60\] is 0, but the episodes table puts episode 2 there",
    ),
    "kept": (_poke("episodes/kept", 1, True), r"episodes/kept\[1\] is True, but k=2"),
    "first_row": (_poke("episodes/first_row", 2, 3), r"episodes/first_row\[2\] is 3"),
    "length": (_poke("episodes/length", 1, 0), r"episodes/length\[1\] is 0"),
    "dtype": (
        lambda g: _set(g, "episodes/length", lambda d: d, np.float32),
        r"'episodes/length' is float32 \(4,\); the schema wants int32 \(E,\)",
    ),
    "rows": (
        _poke("episodes/length", 2, 52),
        r"transitions hold 100 rows, but the kept episodes' lengths .* sum to 102",
    ),
    "inf": (
        _poke("transitions/reward", 30, np.inf),
        r"'transitions/reward' holds a non-finite value \(inf at row 30; 1 such row",
    ),
    "nan-obs": (
        _poke("transitions/obs", (5, 1), np.nan),
        r"'transitions/obs' holds a non-finite value \(nan at row 5, column 1",
    ),
    "json": (
        lambda g: g.attrs.__setitem__("task", "{not json"),
        r"malformed attributes \(Expecting property name",
    ),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_malformed_contents_are_refused_naming_file_task_and_field(
    good: Path, kind: str, capsys
) -> None:
    edit, message = DAMAGE[kind]
    path = _damaged(good, f"{kind}.h5", edit)
    with pytest.raises(HistoryFileError, match=rf"{kind}\.h5 \(task 'task_001'\): .*{message}"):
        HistoryFile(path).history("task_001")
    assert main(["info", str(path)]) == 2  # never listed as healthy
    captured = capsys.readouterr()
    assert "task_001   MALFORMED" in captured.out and "task_000   sac" in captured.out
    err = captured.err.strip()
    assert "\n" not in err and "task_001" in err and re.search(message, err)


def test_a_window_checks_the_rows_it_reads(good: Path) -> None:
    path = _damaged(good, "inf.h5", _poke("transitions/action", 80, -np.inf))
    hf = HistoryFile(path)
    assert len(hf.window("task_001", 0, 50)) == 50  # clean rows read fine
    with pytest.raises(HistoryFileError, match=r"-inf at row 80, column 0"):
        hf.window("task_001", 50, 50)
