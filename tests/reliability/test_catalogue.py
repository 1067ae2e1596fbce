"""The bad-input catalogue of docs/reliability.md (issue 12): every case, its message, a test.

Each case is run the way a user meets it: a command line (in a subprocess; it must exit
non-zero, print the message, print no traceback, and leave every file that existed before it
byte-identical) or a public API call (it must raise with the message). `python
tests/reliability/test_catalogue.py` runs every case and prints the catalogue's table with the
messages actually seen; docs/reliability.md holds that output.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
ENV = {
    **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    "OMP_NUM_THREADS": "1",
    "TQDM_DISABLE": "1",
}
HIST = [PY, "-m", "icrl.histories"]
AD = [PY, "-m", "icrl.ad"]
REPRO = [PY, str(ROOT / "apps/reproduce.py"), "--no-progress"]
TINY = ["--preset", "ReacherGoal/mamba/tiny", "--set", "progress=false"]


@dataclass(frozen=True)
class Case:
    """One bad input: what it is, how the user meets it, and the message they must see."""

    id: str
    what: str
    how: str  # the command line or call, as written in the catalogue
    expect: str  # a regex that the message must match
    run: Callable[[Path], tuple[int | None, str]]  # (exit code or None for an API raise, message)
    needs: str = ""  # "ro": a read-only directory can be made; "no-cuda": no CUDA device
    succeeds: bool = False  # the right outcome is exit 0 with this message (e.g. a warning)


def _cli(argv: Callable[[Path], list[str]], limit_bytes: int | None = None):
    def run(d: Path) -> tuple[int | None, str]:
        def limit() -> None:  # a "full disk": writes past limit_bytes fail with EFBIG
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

        proc = subprocess.run(
            [str(a) for a in argv(d)], env=ENV, capture_output=True, text=True, timeout=300,
            cwd=d, preexec_fn=limit if limit_bytes else None,
        )  # fmt: skip
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "%|" not in ln]
        return proc.returncode, "\n".join(lines[-4:])

    return run


def _api(call: Callable[[Path], object]):
    def run(d: Path) -> tuple[int | None, str]:
        try:
            call(d)
        except Exception as err:
            return None, f"{type(err).__name__}: {err}"
        raise AssertionError("no error was raised")

    return run


def _history(d: Path, name: str) -> object:
    from icrl.histories import HistoryFile

    return HistoryFile(d / "good.h5").history(name)


def _incomplete(d: Path) -> object:
    from icrl.histories import HistoryFile

    path = d / "incomplete.h5"
    shutil.copy(d / "good.h5", path)
    with h5py.File(path, "a") as f:
        f["task_001"].attrs["complete"] = False
    return HistoryFile(path).history("task_001")


def _bad_task(kind: str) -> object:
    from icrl.metaenvs import AntDirTask, HalfCheetahVelTask, make_env, task_from_dict

    if kind == "range":
        return AntDirTask(direction=7.0)
    if kind == "fields":
        return task_from_dict({"family": "AntDir", "velocity": 1.0})
    env = make_env("AntDir")
    try:
        return env.reset(options={"task": HalfCheetahVelTask(velocity=1.0)})
    finally:
        env.close()


# --- issue 20: icrl.ad and the baselines CLI --------------------------------------------------
BL = [PY, "-m", "icrl.baselines"]
MACAW_TINY = {"checkpoint_every": 1, "steps": 100_000,
              "algo": {"hidden_sizes": [16], "latent_dim": 4, "batch_size": 16,
                       "inner_batch_size": 16, "task_batch_size": 2}}  # fmt: skip


def _prepared(prepare: Callable[[Path], object], run: Callable[[Path], tuple[int | None, str]]):
    """Make the case's own inputs in `d`, then run it. They are new files, so the check that
    every fixture file is unchanged still covers all of the shared ones."""

    def wrapped(d: Path) -> tuple[int | None, str]:
        prepare(d)
        return run(d)

    return wrapped


def _held(directory: str, package: str, run: Callable[[Path], tuple[int | None, str]]):
    """Run the case while this process holds `directory`'s run lock, as a first writer would."""

    def wrapped(d: Path) -> tuple[int | None, str]:
        if package == "ad":
            from icrl.ad._lock import DirLock as lock
        else:
            from icrl.baselines._common import run_dir_lock as lock
        with lock(d / directory):
            return run(d)

    return wrapped


def _repro_held(out: str, run: Callable[[Path], tuple[int | None, str]]):
    """Run the case while this process holds `out`'s reproduce lock, as a first run would."""
    from icrl.apps._stages import RunLock

    def wrapped(d: Path) -> tuple[int | None, str]:
        (d / out).mkdir(exist_ok=True)
        with RunLock(d / out):
            return run(d)

    return wrapped


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupted(argv: Callable[[Path], list[str]], progress: str):
    """Start the command, press Ctrl-C (SIGINT) once `progress` exists (a checkpoint: a point
    of progress, not a delay, so it lands on any machine) and return (exit code, message)."""

    def run(d: Path) -> tuple[int | None, str]:
        # Ctrl-C's default action in the child, whatever this process inherited: a test run
        # started in the background (`nohup uv run nox &`) ignores SIGINT, and so would the child.
        proc = subprocess.Popen([str(a) for a in argv(d)], env=ENV, cwd=d, text=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                preexec_fn=_default_sigint)  # fmt: skip
        try:
            deadline = time.monotonic() + 300  # only fails a hung job; never picks the moment
            while not (d / progress).exists():
                assert proc.poll() is None, f"ended before {progress}: {proc.stderr.read()}"
                assert time.monotonic() < deadline, f"no {progress} after 300 s"
                time.sleep(0.02)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert "Traceback" not in err, err[-3000:]
        lines = [ln for ln in err.splitlines() if ln.strip() and "%|" not in ln]
        return proc.returncode, "\n".join(lines[-4:])

    return run


def _cut(src: Path, dst: Path) -> None:
    """A copy of `src` cut short by 40 bytes (as a full disk or a broken copy leaves it)."""
    dst.write_bytes(src.read_bytes()[:-40])


def _truncated_newest(d: Path) -> None:
    shutil.copytree(d / "run", d / "run_cut")
    newest = d / "run_cut/checkpoints/step_000000002.pt"
    _cut(newest, newest)


def _edited_checkpoint(d: Path) -> None:
    from icrl.ad._checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(d / "run/checkpoints/step_000000002.pt")
    ckpt["config"]["model"]["d_model"] = 48  # the weights are d_model 16's
    save_checkpoint(d / "edited.pt", {k: v for k, v in ckpt.items() if k not in ("format", "path")})


def _transformer_run(d: Path, name: str = "run_tf", seed: int = 1) -> Path:
    """A run like `run` (ad.json) with a transformer backbone."""
    from icrl.ad import TrainConfig, train

    cfg = json.loads((d / "ad.json").read_text())
    cfg["model"].update(backbone="transformer", n_heads=2)  # head dim 8, as flash needs
    cfg["seed"] = seed
    train(TrainConfig.model_validate(cfg), d / name)
    return d / name


def _foreign_checkpoint(d: Path) -> None:
    """`run` (Mamba) with a transformer run's checkpoint copied in as its newest."""
    shutil.copytree(d / "run", d / "run_mix")
    tf = _transformer_run(d, "tf_src", seed=0)
    shutil.copy(tf / "checkpoints/step_000000002.pt", d / "run_mix/checkpoints/step_000000009.pt")


# --- issue 20: the histories CLI --------------------------------------------------------------
# The source run raises: a task failure that no up-front check can catch (a CUDA fault, a
# simulator blow-up), injected the way a user would meet it, through the CLI.
_FAILING_SOURCE = (
    "import sys, icrl.histories._generate as g\n"
    "def run_task(*a, **k): raise RuntimeError('CUDA error: an illegal memory access')\n"
    "g.run_task = run_task\n"
    "from icrl.histories.__main__ import main\n"
    "sys.exit(main(sys.argv[1:]))"
)


# Both tasks are real source runs, but task_001 does not return (nor commit) until Ctrl-C, and
# says so in OUT.held, which the case waits for: the interrupt lands mid-run however fast the
# machine is (interrupting the plain two-task run raced its second task, 0.6 s, and the merge on
# an idle 2-core machine), and a patch that stopped reaching run_task would show as no OUT.held.
_SECOND_TASK_RUNS_UNTIL_INTERRUPTED = (
    "import sys, time, icrl.histories._generate as g\n"
    "real = g.run_task\n"
    "def run_task(config, index, task, *a, **k):\n"
    "    record = real(config, index, task, *a, **k)\n"
    "    if index > 0: open(sys.argv[sys.argv.index('--out') + 1] + '.held', 'w').close()\n"
    "    while index > 0: time.sleep(1)\n"
    "    return record\n"
    "g.run_task = run_task\n"
    "from icrl.histories.__main__ import main\n"
    "sys.exit(main(sys.argv[1:]))"
)


def _unchanged(run: Callable[[Path], tuple[int | None, str]]):
    """Also assert that the command wrote nothing at all: every path under `d` (the case's own
    prepared files included) is there afterwards, byte-identical, and no path was added."""

    def wrapped(d: Path) -> tuple[int | None, str]:
        before = {str(p): p.read_bytes() if p.is_file() else None for p in d.rglob("*")}
        result = run(d)
        after = {str(p): p.read_bytes() if p.is_file() else None for p in d.rglob("*")}
        assert after == before, f"paths changed: {sorted(set(after) ^ set(before))}"
        return result

    return wrapped


def _half_run(d: Path) -> None:
    """half.h5.parts: an unfinished generate of cfg.json with task_000 committed (a copy of
    good.h5 without task_001, as the run commits it), task_001 still to do."""
    from icrl.histories import GenerateConfig

    parts = d / "half.h5.parts"
    parts.mkdir()
    identity = GenerateConfig.model_validate_json((d / "cfg.json").read_text()).identity()
    (parts / "config.json").write_text(json.dumps(identity, sort_keys=True, indent=1))
    shutil.copy(d / "good.h5", parts / "task_000.h5")
    with h5py.File(parts / "task_000.h5", "a") as f:
        del f["task_001"]


def _stale_parts(d: Path) -> None:
    """stale.h5.parts: what a `--device cuda` run without CUDA left before issue 20 (settings,
    no finished task)."""
    from icrl.histories import GenerateConfig

    parts = d / "stale.h5.parts"
    parts.mkdir()
    cfg = GenerateConfig.model_validate_json((d / "cfg.json").read_text())
    stale = cfg.model_copy(update={"device": "cuda", "tasks": 1}).identity()
    (parts / "config.json").write_text(json.dumps(stale, sort_keys=True, indent=1))


def _parts_locked(out: str, run: Callable[[Path], tuple[int | None, str]]):
    """Run the case while this process holds `out`.parts/lock, as a running generate would."""
    import fcntl

    def wrapped(d: Path) -> tuple[int | None, str]:
        fd = os.open(d / f"{out}.parts" / "lock", os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return run(d)
        finally:
            os.close(fd)

    return wrapped


def _h5_damaged(name: str, key: str, row: object, value: object, dtype: object = None):
    """`name`: good.h5 with task_001's dataset `key` changed at `row` (or cast to `dtype`)."""

    def prepare(d: Path) -> None:
        shutil.copy(d / "good.h5", d / name)
        with h5py.File(d / name, "a") as f:
            group = f["task_001"]
            if key.startswith("attr:"):
                group.attrs[key[5:]] = value
                return
            data = group[key][()]
            if row is not None:
                data[row] = value
            del group[key]
            group.create_dataset(key, data=data if dtype is None else data.astype(dtype))

    return prepare


# fmt: off
CASES: list[Case] = [
    Case("family-histories", "unknown env family (histories CLI)",
         "python -m icrl.histories generate --family Nope --out o.h5",
         r"argument --family: invalid choice: 'Nope' \(choose from .*'ReacherGoal'\)",
         _cli(lambda d: [*HIST, "generate", "--family", "Nope", "--out", d / "o.h5"])),
    Case("family-reproduce", "unknown env family (apps)",
         "apps/reproduce.py --families '[\"Nope\"]'",
         r"--families: .*unknown env family \['Nope'\]; choose from \['ReacherGoal'",
         _cli(lambda d: [*REPRO, "--families", '["Nope"]', "--out", d / "rep"])),
    Case("family-api", "unknown env family (metaenvs API)", "icrl.metaenvs.train_tasks('antdir')",
         r"unknown task family 'antdir'",
         _api(lambda d: __import__("icrl.metaenvs").metaenvs.train_tasks("antdir"))),
    Case("preset-family", "unknown preset family (AD CLI)",
         "python -m icrl.ad train --preset Nope/mamba --histories good.h5 --run-dir r",
         r"unknown family 'Nope'; presets exist for \['AntDir'",
         _cli(lambda d: [*AD, "train", "--preset", "Nope/mamba", "--histories", d / "good.h5",
                         "--run-dir", d / "r"])),
    Case("preset-size", "unknown preset size (AD CLI)",
         "python -m icrl.ad train --preset ReacherGoal/mamba/huge ...",
         r"unknown preset size 'huge'; expected one of \('tiny', 'small', 'paper'\)",
         _cli(lambda d: [*AD, "train", "--preset", "ReacherGoal/mamba/huge", "--histories",
                         d / "good.h5", "--run-dir", d / "r"])),
    Case("preset-reproduce", "unknown preset (apps)", "apps/reproduce.py --preset huge",
         r"--preset.*'tiny', 'small'.*'paper'",
         _cli(lambda d: [*REPRO, "--preset", "huge", "--out", d / "rep"])),
    Case("task-range", "out-of-range task", "AntDirTask(direction=7.0)",
         r"AntDirTask\.direction=7\.0", _api(lambda d: _bad_task("range"))),
    Case("task-fields", "malformed task dict",
         "task_from_dict({'family': 'AntDir', 'velocity': 1})",
         r"exactly the fields", _api(lambda d: _bad_task("fields"))),
    Case("task-env", "task of another family given to an env",
         "make_env('AntDir').reset(options={'task': HalfCheetahVelTask(1.0)})",
         r"this env is AntDir; it cannot take a HalfCheetahVel", _api(lambda d: _bad_task("env"))),
    Case("k-negative", "negative k (histories CLI)",
         "python -m icrl.histories generate --family ReacherGoal --k -2 --out o.h5",
         r"--k: Input should be greater than or equal to 1 \(got -2\)",
         _cli(lambda d: [*HIST, "generate", "--family", "ReacherGoal", "--k", "-2",
                         "--out", d / "o.h5"])),
    Case("tasks-zero", "zero tasks (histories CLI)",
         "python -m icrl.histories generate --family ReacherGoal --tasks 0 --out o.h5",
         r"--tasks: Input should be greater than or equal to 1 \(got 0\)",
         _cli(lambda d: [*HIST, "generate", "--family", "ReacherGoal", "--tasks", "0",
                         "--out", d / "o.h5"])),
    Case("field-type", "field of the wrong type (histories CLI)",
         "python -m icrl.histories generate --family ReacherGoal --set lr=abc --out o.h5",
         r"--set lr \(algorithm sac\): Input should be a valid number.*\(got 'abc'\)",
         _cli(lambda d: [*HIST, "generate", "--family", "ReacherGoal", "--set", "lr=abc",
                         "--out", d / "o.h5"])),
    Case("tasks-zero-reproduce", "zero tasks (apps)", "apps/reproduce.py --histories.tasks 0",
         r"histories\.tasks.*greater than or equal to 1",
         _cli(lambda d: [*REPRO, "--histories.tasks", "0", "--out", d / "rep"])),
    Case("batch-negative", "negative batch size (AD CLI)",
         "python -m icrl.ad train --preset ReacherGoal/mamba/tiny --set batch_size=-1 ...",
         r"batch_size: Input should be greater than 0 \(got -1\)",
         _cli(lambda d: [*AD, "train", *TINY, "--set", "batch_size=-1", "--histories",
                         d / "good.h5", "--run-dir", d / "r"])),
    Case("window-long", "context window longer than the data (AD CLI)",
         "python -m icrl.ad train ... --set data.context='\"window\"' --set data.window=100000",
         r"data\.window=100000 is longer than the longest history \(\d+ steps, in .*good\.h5.*\); "
         r"set data\.window <= \d+",
         _cli(lambda d: [*AD, "train", *TINY, "--set", 'data.context="window"', "--set",
                         "data.window=100000", "--histories", d / "good.h5",
                         "--run-dir", d / "r"])),
    Case("episodes-many", "more context episodes than the data holds (AD CLI)",
         "python -m icrl.ad train ... --set data.context='\"episodes\"' --set data.n_episodes=50",
         r"data\.n_episodes=50 is more episodes than the histories hold .*good\.h5",
         _cli(lambda d: [*AD, "train", *TINY, "--set", 'data.context="episodes"', "--set",
                         "data.n_episodes=50", "--histories", d / "good.h5",
                         "--run-dir", d / "r"])),
    Case("h5-truncated", "truncated histories file (histories CLI)",
         "python -m icrl.histories info cut.h5",
         r"cut\.h5: cannot be opened as HDF5 \(.*truncated file",
         _cli(lambda d: [*HIST, "info", d / "cut.h5"])),
    Case("h5-truncated-train", "truncated histories file (AD CLI)",
         "python -m icrl.ad train --preset ReacherGoal/mamba/tiny --histories cut.h5 ...",
         r"cut\.h5: cannot be opened as HDF5 \(.*truncated file",
         _cli(lambda d: [*AD, "train", *TINY, "--histories", d / "cut.h5", "--run-dir", d / "r"])),
    Case("h5-corrupt", "corrupt (not HDF5) histories file", "python -m icrl.histories info junk.h5",
         r"junk\.h5: cannot be opened as HDF5 \(.*file signature not found",
         _cli(lambda d: [*HIST, "info", d / "junk.h5"])),
    Case("h5-schema", "histories file of another schema version",
         "python -m icrl.histories info v99.h5", r"v99\.h5.*unknown schema version 99",
         _cli(lambda d: [*HIST, "info", d / "v99.h5"])),
    Case("h5-missing-task", "histories file missing a task",
         "HistoryFile('good.h5').history('task_042')",
         r"good\.h5 \(task 'task_042'\): no such task; the file has \['task_000'",
         _api(lambda d: _history(d, "task_042"))),
    Case("h5-incomplete-task", "histories task not marked complete",
         "HistoryFile('incomplete.h5').history('task_001')", r"incomplete\.h5.*not complete",
         _api(_incomplete)),
    Case("h5-config-mismatch", "histories --out file made with another config",
         "python -m icrl.histories generate --config cfg.json --k 3 --out good.h5",
         r"good\.h5.*k: existing 2, requested 3",
         _cli(lambda d: [*HIST, "generate", "--config", d / "cfg.json", "--k", "3",
                         "--out", d / "good.h5", "--no-progress"])),
    Case("ckpt-size", "run directory / checkpoint of another model size",
         "python -m icrl.ad train --config ad.json --set model.d_model=64 --run-dir run",
         r"different config \(fields \['model\.d_model'\]\)",
         _cli(lambda d: [*AD, "train", "--config", d / "ad.json", "--set", "model.d_model=64",
                         "--run-dir", d / "run"])),
    Case("h5-dims", "histories whose obs dims don't match their family's env",
         "python -m icrl.ad train --config ad_dims.json --run-dir run_dims2",
         r"dims\.h5.*\(obs_dim, act_dim\)=\(5, 2\).*\(8, 2\).*regenerate",
         _cli(lambda d: [*AD, "train", "--config", d / "ad_dims.json",
                         "--run-dir", d / "run_dims2"])),
    Case("ckpt-env", "checkpoint whose obs dims don't match the env",
         "python -m icrl.ad evaluate --checkpoint run_dims --out-dir ev",
         r"\(obs_dim, act_dim\)=\(5, 2\).*\(\d+, 2\)",
         _cli(lambda d: [*AD, "evaluate", "--checkpoint", d / "run_dims", "--out-dir", d / "ev"])),
    Case("ckpt-corrupt", "corrupt checkpoint file",
         "python -m icrl.ad evaluate --checkpoint junk.pt --out-dir ev",
         r"checkpoint .*junk\.pt cannot be read",
         _cli(lambda d: [*AD, "evaluate", "--checkpoint", d / "junk.pt", "--out-dir", d / "ev"])),
    Case("eval-exists", "evaluation output directory already holds results",
         "python -m icrl.ad evaluate --checkpoint run --out-dir done",
         r"refusing to overwrite",
         _cli(lambda d: [*AD, "evaluate", "--checkpoint", d / "run", "--out-dir", d / "done"])),
    Case("nan-data", "NaN in the training data",
         "python -m icrl.ad train --preset ReacherGoal/mamba/tiny --histories nan.h5 ...",
         r"nan\.h5 \(task 'task_00\d'\): (dataset 'transitions/|field ')action' holds "
         r".*nan at row 3",
         _cli(lambda d: [*AD, "train", *TINY, "--histories", d / "nan.h5", "--run-dir", d / "r"])),
    Case("disk-full", "output directory full (writes fail)",
         "python -m icrl.ad train --config ad.json --run-dir full  (RLIMIT_FSIZE 64 KiB)",
         r"error: File too large while writing .*full; free space or choose another directory",
         _cli(lambda d: [*AD, "train", "--config", d / "ad.json", "--run-dir", d / "full"],
              limit_bytes=64 * 1024)),
    Case("dir-readonly", "read-only output directory",
         "python -m icrl.ad train --config ad.json --run-dir ro/run",
         r"error: (Read-only file system|Permission denied) while writing .*ro/run",
         _cli(lambda d: [*AD, "train", "--config", d / "ad.json", "--run-dir", d / "ro/run"]),
         needs="ro"),
    Case("dir-readonly-histories", "read-only output directory (histories CLI)",
         "python -m icrl.histories generate --config cfg.json --out ro/o.h5",
         r"error: .*(Read-only file system|Permission denied).*ro/o\.h5",
         _cli(lambda d: [*HIST, "generate", "--config", d / "cfg.json", "--out", d / "ro/o.h5"]),
         needs="ro"),
    Case("kernel-absent", "mamba kernels requested but absent",
         "python -m icrl.ad train ... --set model.kernel_backend='\"mamba-ssm\"'",
         r"backend='mamba-ssm' was requested but .*pip install 'icrl-seqmodels\[mamba\]'",
         _cli(lambda d: [*AD, "train", *TINY, "--set", 'model.kernel_backend="mamba-ssm"',
                         "--histories", d / "good.h5", "--run-dir", d / "r"]),
         needs="no-cuda"),
    # issue 20: the histories CLI -- checked before any work; no stuck .parts; schema on read
    Case("steps-short", "--steps below one episode per env (histories CLI)",
         "python -m icrl.histories generate --family ReacherGoal --n-envs 2 --steps 40 "
         "--set warmup_steps=20 --out o.h5",
         r"error: invalid configuration: steps_per_task \(--steps\) 40 is less than one episode: "
         r"ReacherGoal episodes are 50 steps.*\(20 each\).*use at least 100",
         _unchanged(_cli(lambda d: [*HIST, "generate", "--family", "ReacherGoal", "--n-envs", "2",
                                    "--steps", "40", "--set", "warmup_steps=20",
                                    "--out", d / "o.h5"]))),
    Case("device-absent-histories", "CUDA device asked for, none present (histories CLI)",
         "python -m icrl.histories generate --config cfg.json --device cuda --out o.h5",
         r"error: device 'cuda' \(--device\) needs CUDA, but no CUDA device is available",
         _unchanged(_cli(lambda d: [*HIST, "generate", "--config", d / "cfg.json", "--device",
                                    "cuda", "--out", d / "o.h5"])),
         needs="no-cuda"),
    Case("lr-negative", "negative learning rate (histories CLI)",
         "python -m icrl.histories generate --config cfg.json --set lr=-1 --out o.h5",
         r"error: invalid configuration: --set lr \(algorithm sac\): Input should be greater "
         r"than or equal to 0 \(got -1\)",
         _unchanged(_cli(lambda d: [*HIST, "generate", "--config", d / "cfg.json", "--set",
                                    "lr=-1", "--out", d / "o.h5"]))),
    Case("parts-stale", "OUT.parts of a failed run with other settings, no task finished",
         "python -m icrl.histories generate --config cfg.json --tasks 1 --out stale.h5",
         r"warning: .*stale\.h5\.parts holds no finished task of an earlier run with other "
         r"settings \(device: existing 'cuda', requested 'cpu'\); starting over",
         _prepared(_stale_parts,
                   _cli(lambda d: [*HIST, "generate", "--config", d / "cfg.json", "--tasks", "1",
                                   "--out", d / "stale.h5"])),
         succeeds=True),
    Case("parts-other-settings", "OUT.parts with a finished task, rerun with other settings",
         "python -m icrl.histories generate --config cfg.json --k 3 --out half.h5",
         r"error: .*half\.h5\.parts was generated with different settings.*k: existing 2, "
         r"requested 3\. It holds 1 finished task of that run: resume it with its own settings "
         r"\(`python -m icrl\.histories generate --config .*half\.h5\.parts/config\.json --out "
         r".*half\.h5`\), use another output path, or remove .*half\.h5\.parts",
         _prepared(_half_run,
                   _unchanged(_cli(lambda d: [*HIST, "generate", "--config", d / "cfg.json",
                                              "--k", "3", "--out", d / "half.h5"])))),
    Case("info-unfinished", "info on an output whose run is unfinished (histories CLI)",
         "python -m icrl.histories info half.h5",
         r"error: .*half\.h5: not finished yet: .*half\.h5\.parts holds 1 finished task .*resume "
         r"it with `python -m icrl\.histories generate --config .*half\.h5\.parts/config\.json "
         r"--out .*half\.h5`",
         _prepared(_half_run, _unchanged(_cli(lambda d: [*HIST, "info", d / "half.h5"])))),
    Case("parts-locked", "a second generate into one --out (histories CLI)",
         "python -m icrl.histories generate --config cfg.json --out half.h5  (half.h5.parts "
         "locked)",
         r"error: another process \(pid \d+\) is generating into .*half\.h5 \(it holds "
         r".*half\.h5\.parts/lock\); wait for it to finish or stop it",
         _prepared(_half_run,
                   _parts_locked("half.h5",
                                 _unchanged(_cli(lambda d: [*HIST, "generate", "--config",
                                                            d / "cfg.json",
                                                            "--out", d / "half.h5"]))))),
    Case("h5-step", "corrupted step column (histories CLI)",
         "python -m icrl.histories info step.h5",
         r"error: .*step\.h5 \(task 'task_001'\): transitions/step\[7\] is 3, expected 7",
         _prepared(_h5_damaged("step.h5", "transitions/step", 7, 3),
                   _cli(lambda d: [*HIST, "info", d / "step.h5"]))),
    Case("h5-step-train", "corrupted step column (AD CLI)",
         "python -m icrl.ad train --preset ReacherGoal/mamba/tiny --histories step.h5 ...",
         r"step\.h5 \(task 'task_001'\): transitions/step\[7\] is 3, expected 7",
         _prepared(_h5_damaged("step.h5", "transitions/step", 7, 3),
                   _cli(lambda d: [*AD, "train", *TINY, "--histories", d / "step.h5",
                                   "--run-dir", d / "r"]))),
    Case("h5-inf", "inf in a histories file (histories CLI)",
         "python -m icrl.histories info inf.h5",
         r"error: .*inf\.h5 \(task 'task_001'\): dataset 'transitions/reward' holds a non-finite "
         r"value \(inf at row 30",
         _prepared(_h5_damaged("inf.h5", "transitions/reward", 30, np.inf),
                   _cli(lambda d: [*HIST, "info", d / "inf.h5"]))),
    Case("h5-dtype", "dataset of the wrong dtype (histories CLI)",
         "python -m icrl.histories info dtype.h5",
         r"error: .*dtype\.h5 \(task 'task_001'\): dataset 'episodes/length' is float32 "
         r"\(\d+,\); the schema wants int32",
         _prepared(_h5_damaged("dtype.h5", "episodes/length", None, None, np.float32),
                   _cli(lambda d: [*HIST, "info", d / "dtype.h5"]))),
    Case("h5-json", "malformed JSON attribute (histories CLI)",
         "python -m icrl.histories info json.h5",
         r"error: .*json\.h5 \(task 'task_001'\): malformed attributes \(Expecting",
         _prepared(_h5_damaged("json.h5", "attr:task", None, "{not json"),
                   _cli(lambda d: [*HIST, "info", d / "json.h5"]))),
    Case("out-under-file", "--out under a file (histories CLI)",
         "python -m icrl.histories generate --config cfg.json --out cfg.json/o.h5",
         r"error: .*cfg\.json is a file, not a directory, so --out .*cfg\.json/o\.h5 cannot be "
         r"created under it",
         _unchanged(_cli(lambda d: [*HIST, "generate", "--config", d / "cfg.json",
                                    "--out", d / "cfg.json/o.h5"]))),
    Case("out-is-dir", "--out is a directory (histories CLI)",
         "python -m icrl.histories generate --config cfg.json --out ro",
         r"error: output path \(--out\) .*ro is a directory; give the history file's path",
         _unchanged(_cli(lambda d: [*HIST, "generate", "--config", d / "cfg.json",
                                    "--out", d / "ro"]))),
    Case("config-missing", "--config file missing (histories CLI)",
         "python -m icrl.histories generate --config no.json --out o.h5",
         r"error: --config .*no\.json: no such file",
         _unchanged(_cli(lambda d: [*HIST, "generate", "--config", d / "no.json",
                                    "--out", d / "o.h5"]))),
    Case("config-json", "--config file not JSON (histories CLI)",
         "python -m icrl.histories generate --config bad.json --out o.h5",
         r"error: --config .*bad\.json is not valid JSON \(",
         _prepared(lambda d: (d / "bad.json").write_text('{"family": '),
                   _unchanged(_cli(lambda d: [*HIST, "generate", "--config", d / "bad.json",
                                              "--out", d / "o.h5"])))),
    Case("disk-full-histories", "output directory full (histories CLI)",
         "python -m icrl.histories generate --config cfg.json --tasks 1 --out full.h5  "
         "(RLIMIT_FSIZE 32 KiB)",
         r"error: File too large while writing .*full\.h5\.parts/task_000\.h5\.tmp; free space "
         r"\(or choose another --out\), then no task had finished",
         _unchanged(_cli(lambda d: [*HIST, "generate", "--config", d / "cfg.json", "--tasks",
                                    "1", "--out", d / "full.h5"], limit_bytes=32 * 1024))),
    Case("task-failed", "the source run of a task fails (histories CLI)",
         "python -m icrl.histories generate --config cfg.json --out o.h5  (the source run "
         "raises)",
         r"error: task task_000 \(.*\) failed: RuntimeError\('CUDA error: an illegal memory "
         r"access'\); no task had finished, so nothing was kept",
         _unchanged(_cli(lambda d: [PY, "-c", _FAILING_SOURCE, "generate", "--config",
                                    d / "cfg.json", "--out", d / "o.h5"]))),
    Case("interrupt-histories", "Ctrl-C during generation (histories CLI)",
         "python -m icrl.histories generate --config cfg.json --out int.h5  (task_001 held until "
         "the Ctrl-C)",
         r"^interrupted; 1 finished task is kept in .*int\.h5\.parts; rerun the same command to "
         r"resume$",
         _interrupted(lambda d: [PY, "-c", _SECOND_TASK_RUNS_UNTIL_INTERRUPTED, "generate",
                                 "--config", d / "cfg.json", "--out", d / "int.h5"],
                      "int.h5.held")),
    # issue 20: icrl.ad -- checked before the rollouts; no silent mix; no stuck state or traceback
    Case("eval-outdir-file", "evaluation --out-dir is an existing file (AD CLI)",
         "python -m icrl.ad evaluate --checkpoint run --out-dir cfg.json",
         r"error: output directory .*cfg\.json is a file; choose a directory path",
         _cli(lambda d: [*AD, "evaluate", "--checkpoint", d / "run", "--out-dir", d / "cfg.json"])),
    Case("eval-outdir-readonly", "evaluation --out-dir not writable (AD CLI)",
         "python -m icrl.ad evaluate --checkpoint run --out-dir ro/ev",
         r"error: output directory .*ro/ev cannot be written \((Read-only file system|Permission "
         r"denied) in .*ro\); choose another directory",
         _cli(lambda d: [*AD, "evaluate", "--checkpoint", d / "run", "--out-dir", d / "ro/ev"]),
         needs="ro"),
    Case("eval-histories-missing", "source-curve histories file missing (AD CLI)",
         "python -m icrl.ad evaluate --checkpoint run --out-dir ev --set histories='\"no.h5\"'",
         r"error: histories=.*no\.h5 \(the source curve's file\) does not exist",
         _cli(lambda d: [*AD, "evaluate", "--checkpoint", d / "run", "--out-dir", d / "ev",
                         "--set", f'histories="{d / "no.h5"}"'])),
    Case("eval-histories-truncated", "source-curve histories file truncated (AD CLI)",
         "python -m icrl.ad evaluate --checkpoint run --out-dir ev --set histories='\"cut.h5\"'",
         r"error: .*cut\.h5: cannot be opened as HDF5 \(.*truncated file",
         _cli(lambda d: [*AD, "evaluate", "--checkpoint", d / "run", "--out-dir", d / "ev",
                         "--set", f'histories="{d / "cut.h5"}"'])),
    Case("eval-backbones", "checkpoints of different backbones evaluated together (AD CLI)",
         "python -m icrl.ad evaluate --checkpoint run run_tf --out-dir ev",
         r"error: the checkpoints are of different backbones \(.*: mamba, .*: transformer\); "
         r"evaluate each backbone into its own --out-dir",
         _prepared(_transformer_run,
                   _cli(lambda d: [*AD, "evaluate", "--checkpoint", d / "run", d / "run_tf",
                                   "--out-dir", d / "ev"]))),
    Case("preset-other-family", "preset of another family than the histories (AD CLI)",
         "python -m icrl.ad train --preset AntDir/mamba/tiny --histories good.h5 --run-dir r",
         r"error: preset AntDir/mamba/tiny is for AntDir, but histories .*good\.h5 are of family "
         r"ReacherGoal; use --preset ReacherGoal/mamba/tiny",
         _cli(lambda d: [*AD, "train", "--preset", "AntDir/mamba/tiny", "--histories",
                         d / "good.h5", "--run-dir", d / "r"])),
    Case("ckpt-truncated", "truncated checkpoint (AD CLI)",
         "python -m icrl.ad evaluate --checkpoint cut.pt --out-dir ev",
         r"error: checkpoint .*cut\.pt cannot be read: it is truncated \(\d+ bytes",
         _prepared(lambda d: _cut(d / "run/checkpoints/step_000000002.pt", d / "cut.pt"),
                   _cli(lambda d: [*AD, "evaluate", "--checkpoint", d / "cut.pt",
                                   "--out-dir", d / "ev"]))),
    Case("ckpt-truncated-resume", "truncated newest checkpoint, an older one is good (AD CLI)",
         "python -m icrl.ad train --config ad.json --run-dir run_cut  (step 2 cut short)",
         r"warning: checkpoint .*step_000000002\.pt cannot be read: it is truncated .*skipping "
         r"it\nwarning: resuming from .*step_000000001\.pt \(step 1\)",
         _prepared(_truncated_newest,
                   _cli(lambda d: [*AD, "train", "--config", d / "ad.json",
                                   "--run-dir", d / "run_cut"])),
         succeeds=True),
    Case("device-unknown", "a device torch has but icrl.ad cannot use (AD CLI)",
         "python -m icrl.ad train --config ad.json --set device='\"tpu\"' --run-dir r",
         r"device: .*device='tpu' is not a device icrl\.ad runs on; use 'auto', 'cpu', 'cuda'",
         _cli(lambda d: [*AD, "train", "--config", d / "ad.json", "--set", 'device="tpu"',
                         "--run-dir", d / "r"])),
    Case("ckpt-weights", "checkpoint whose weights do not match its config (AD CLI)",
         "python -m icrl.ad evaluate --checkpoint edited.pt --out-dir ev",
         r"error: checkpoint .*edited\.pt: its weights do not fit the model its config describes "
         r"\(backbone='mamba', d_model=48",
         _prepared(_edited_checkpoint,
                   _cli(lambda d: [*AD, "evaluate", "--checkpoint", d / "edited.pt",
                                   "--out-dir", d / "ev"]))),
    Case("ckpt-foreign", "a transformer checkpoint in a Mamba run dir, resumed (AD CLI)",
         "python -m icrl.ad train --config ad.json --run-dir run_mix",
         r"error: checkpoint .*step_000000009\.pt was written by another run than .*run_mix/"
         r"config\.json \(fields \[.*'model\.backbone'",
         _prepared(_foreign_checkpoint,
                   _cli(lambda d: [*AD, "train", "--config", d / "ad.json",
                                   "--run-dir", d / "run_mix"]))),
    Case("ckpt-foreign-eval", "a transformer checkpoint in a Mamba run dir, evaluated (AD CLI)",
         "python -m icrl.ad evaluate --checkpoint run_mix --out-dir ev",
         r"error: checkpoint .*step_000000009\.pt was written by another run than .*run_mix/"
         r"config\.json .*model\.backbone 'transformer' vs 'mamba'",
         _prepared(_foreign_checkpoint,
                   _cli(lambda d: [*AD, "evaluate", "--checkpoint", d / "run_mix",
                                   "--out-dir", d / "ev"]))),
    Case("run-locked", "a second process training into one run dir (AD CLI)",
         "python -m icrl.ad train --config ad.json --run-dir run  (run locked by another)",
         r"error: .*run is in use by another process \(pid \d+ holds .*run/\.lock\)",
         _held("run", "ad", _cli(lambda d: [*AD, "train", "--config", d / "ad.json",
                                            "--run-dir", d / "run"]))),
    Case("ad-interrupt", "Ctrl-C during training (AD CLI)",
         "python -m icrl.ad train --config ad.json --set max_steps=100000 --run-dir run_int",
         r"interrupted: checkpoints finished so far are kept in .*run_int/checkpoints; rerun the "
         r"same command to resume",
         _interrupted(lambda d: [*AD, "train", "--config", d / "ad.json", "--set",
                                 "max_steps=100000", "--run-dir", d / "run_int"],
                      "run_int/checkpoints/step_000000001.pt")),
    # issue 20: the baselines CLI -- one error boundary, a lock on run folders
    Case("bl-histories-missing", "histories file missing (baselines CLI)",
         "python -m icrl.baselines macaw train --histories no.h5 --run-dir mrun",
         r"error: histories file .*no\.h5 does not exist; generate it first",
         _cli(lambda d: [*BL, "macaw", "train", "--histories", d / "no.h5",
                         "--run-dir", d / "mrun"])),
    Case("bl-histories-truncated", "histories file truncated (baselines CLI)",
         "python -m icrl.baselines macaw train --histories cut.h5 --run-dir mrun",
         r"error: .*cut\.h5: cannot be opened as HDF5 \(.*truncated file",
         _cli(lambda d: [*BL, "macaw", "train", "--histories", d / "cut.h5",
                         "--run-dir", d / "mrun"])),
    Case("bl-steps-negative", "negative training steps (baselines CLI)",
         "python -m icrl.baselines macaw train --histories good.h5 --steps -5 --run-dir mrun",
         r"error: invalid MacawTrainConfig settings: steps: Input should be greater than or "
         r"equal to 1 \(got -5\)",
         _cli(lambda d: [*BL, "macaw", "train", "--histories", d / "good.h5", "--steps", "-5",
                         "--run-dir", d / "mrun"])),
    Case("bl-family", "unknown env family (baselines CLI)",
         "python -m icrl.baselines mql train mrun --family Nope",
         r"error: mql_preset: unknown family 'Nope'; expected \['AntDir'",
         _cli(lambda d: [*BL, "mql", "train", d / "mrun", "--family", "Nope"])),
    Case("bl-run-empty", "empty run folder evaluated (baselines CLI, MACAW)",
         "python -m icrl.baselines macaw evaluate empty --out ev",
         r"error: no MACAW checkpoint at .*empty/checkpoint\.pt; train the run first",
         _prepared(lambda d: (d / "empty").mkdir(),
                   _cli(lambda d: [*BL, "macaw", "evaluate", d / "empty", "--out", d / "ev"]))),
    Case("bl-run-empty-mql", "empty run folder evaluated (baselines CLI, MQL)",
         "python -m icrl.baselines mql evaluate empty --size tiny",
         r"error: .*empty/checkpoint\.pt does not exist: train the run first",
         _prepared(lambda d: (d / "empty").mkdir(),
                   _cli(lambda d: [*BL, "mql", "evaluate", d / "empty", "--size", "tiny"]))),
    Case("bl-locked", "a second process training into one run folder (baselines CLI)",
         "python -m icrl.baselines macaw train --histories good.h5 --run-dir mrun  (locked)",
         r"error: .*mrun is in use by another process \(pid \d+ holds .*mrun/\.lock\)",
         _held("mrun", "baselines",
               _cli(lambda d: [*BL, "macaw", "train", "--histories", d / "good.h5",
                               "--steps", "2", "--run-dir", d / "mrun"]))),
    Case("bl-interrupt", "Ctrl-C during training (baselines CLI)",
         "python -m icrl.baselines macaw train --config macaw.json --histories good.h5 "
         "--run-dir mrun",
         r"interrupted: the last checkpoint in .*mrun is kept; rerun the same command to resume",
         _prepared(lambda d: (d / "macaw.json").write_text(json.dumps(MACAW_TINY)),
                   _interrupted(lambda d: [*BL, "macaw", "train", "--config", d / "macaw.json",
                                           "--histories", d / "good.h5", "--no-progress",
                                           "--run-dir", d / "mrun"],
                                "mrun/checkpoint.pt"))),
    # issue 20: apps/reproduce.py -- validation before work, one error boundary, a lock on --out
    Case("repro-out-file", "--out is an existing file (apps)",
         "apps/reproduce.py --out good.h5",
         r"^error: --out .*good\.h5 is a file; give a directory \(new or a run to resume\)$",
         _cli(lambda d: [*REPRO, "--out", d / "good.h5"])),
    Case("repro-stage-config", "a stage setting that one family's stage refuses (apps)",
         "apps/reproduce.py --families '[\"PusherGoal\"]' --histories.gradient_steps 5",
         r"^error: invalid stage config: PusherGoal, stage histories: --histories\.gradient_steps: "
         r"PusherGoal's source algorithm \(ppo\) has no field 'gradient_steps'",
         _cli(lambda d: [*REPRO, "--families", '["PusherGoal"]', "--histories.gradient_steps",
                         "5", "--out", d / "rep"])),
    Case("repro-locked", "a second reproduce.py into one --out (apps)",
         "apps/reproduce.py --out rep  (rep in use by another run)",
         r"^error: .*rep is in use by another reproduce\.py \(pid \d+\); wait for it to finish, "
         r"or give another --out",
         _repro_held("rep", _cli(lambda d: [*REPRO, "--out", d / "rep"]))),
    Case("repro-disk-full", "disk full during a run (apps)",
         "apps/reproduce.py --out rep_full  (writes limited to 64 KiB)",
         r"^error: .*rep_full/stages/histories-ReacherGoal-.*\.tmp: File too large; nothing "
         r"finished was lost: fix it and rerun the same command to resume",
         _cli(lambda d: [*REPRO, "--out", d / "rep_full"], limit_bytes=64 * 1024)),
    Case("repro-interrupt", "Ctrl-C during a run (apps)",
         "apps/reproduce.py --out rep_int --histories.workers 0  (Ctrl-C in the histories stage)",
         r"interrupted; finished stages are kept in .*rep_int: rerun the same command to resume",
         _interrupted(lambda d: [*REPRO, "--out", d / "rep_int", "--histories.workers", "0"],
                      "rep_int/config.json")),
]
# fmt: on


# --- fixtures: the files the cases read -----------------------------------------------------


def make_inputs(d: Path) -> None:
    """A tiny real histories file and its damaged variants, a trained run, and bad files."""
    from icrl.ad import EvalConfig, TrainConfig, evaluate, train
    from icrl.histories import GenerateConfig, generate

    gen = GenerateConfig.model_validate(
        {"family": "ReacherGoal", "steps_per_task": 200, "n_envs": 2, "k": 2, "tasks": 2,
         "workers": 0, "progress": False,
         "algorithm": {"kind": "sac", "hidden_sizes": [16], "batch_size": 16,
                       "warmup_steps": 40}}
    )  # fmt: skip
    (d / "cfg.json").write_text(gen.model_dump_json())
    good = generate(gen, d / "good.h5")
    data = good.read_bytes()
    (d / "cut.h5").write_bytes(data[: len(data) // 3])
    (d / "junk.h5").write_bytes(b"not an hdf5 file " * 64)
    (d / "junk.pt").write_bytes(b"not a checkpoint " * 64)
    for name in ("v99", "nan", "dims"):
        shutil.copy(good, d / f"{name}.h5")
    with h5py.File(d / "v99.h5", "a") as f:
        f.attrs["schema_version"] = 99
    with h5py.File(d / "nan.h5", "a") as f:
        for task in ("task_000", "task_001"):
            action = f[f"{task}/transitions/action"]
            bad = action[()]
            bad[3, 0] = np.nan
            action[...] = bad
    with h5py.File(d / "dims.h5", "a") as f:  # a whole file, as if from another env
        for task in ("task_000", "task_001"):
            for key in ("obs", "next_obs"):
                x = f[f"{task}/transitions/{key}"][()][:, :5]
                del f[f"{task}/transitions/{key}"]
                f[f"{task}/transitions/{key}"] = x
            f[task].attrs["obs_dim"] = 5
    model = {"backbone": "mamba", "d_model": 16, "n_layers": 1, "embed_dim": 8, "d_ff": 32}
    cfg = {"model": model, "data": {"paths": [str(good)], "context": "full"}, "batch_size": 2,
           "max_steps": 2, "checkpoint_every": 1, "tensorboard": False, "progress": False,
           "device": "cpu"}  # fmt: skip
    (d / "ad.json").write_text(TrainConfig.model_validate(cfg).model_dump_json())
    train(TrainConfig.model_validate(cfg), d / "run")
    dims = {**cfg, "data": {"paths": [str(d / "dims.h5")], "context": "full"}}
    (d / "ad_dims.json").write_text(TrainConfig.model_validate(dims).model_dump_json())
    # Training now refuses such histories (case h5-dims); a checkpoint made elsewhere, or before
    # that check existed, still reaches the evaluator (case ckpt-env).
    with mock.patch("icrl.ad._data._check_env_dims"):
        train(TrainConfig.model_validate(dims), d / "run_dims")
    ev = EvalConfig(n_tasks=1, episodes=1, asynchronous=False, reference_episodes=0,
                    progress=False, device="cpu")  # fmt: skip
    evaluate(ev, [d / "run"], d / "done")
    (d / "ro").mkdir()


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[bool]:
    """Make `path` read-only for this process's children; yields False where that is impossible.

    As an ordinary user a mode of 0o555 is enough; root ignores modes, so it needs a read-only
    bind mount (which a container without CAP_SYS_ADMIN refuses).
    """
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield True
        finally:
            path.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(path), str(path)],
                             capture_output=True).returncode == 0  # fmt: skip
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", str(path)], check=True)


def _snapshot(d: Path) -> dict[str, str]:
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


def check(case: Case, d: Path) -> tuple[int | None, str]:
    """Run one case in `d`; assert its exit code, message and that nothing on disk changed."""
    if case.needs == "no-cuda":
        import torch

        if torch.cuda.is_available():
            pytest.skip("CUDA is present here: the kernels may be installable")
    before = _snapshot(d)
    with read_only(d / "ro") if case.needs == "ro" else contextlib.nullcontext(True) as ok:
        if not ok:
            pytest.skip("cannot make a read-only directory here (root without mount rights)")
        code, message = case.run(d)
    if code is not None:
        ok_code = code == 0 if case.succeeds else code != 0
        assert ok_code, f"{case.id}: exit code {code}; stderr:\n{message}"
    assert re.search(case.expect, message, re.S), f"{case.id}: {message!r}"
    after = _snapshot(d)
    for name, digest in before.items():
        assert after.get(name) == digest, f"{case.id}: {name} was changed or deleted"
    return code, message


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("catalogue")
    make_inputs(d)
    return d


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_with_a_clear_message(case: Case, inputs: Path) -> None:
    work = inputs.parent / f"{inputs.name}-{case.id}"
    shutil.copytree(inputs, work, symlinks=True)
    check(case, work)


def test_catalogue_doc_lists_every_case() -> None:
    doc = (ROOT / "docs/reliability.md").read_text()
    missing = [c.id for c in CASES if f"`{c.id}`" not in doc]
    assert not missing, f"docs/reliability.md lacks {missing}; regenerate it (see its header)"
    assert len(CASES) >= 20


def _table() -> str:
    """Run every case and return the catalogue's markdown table with the messages seen."""
    rows = ["| id | bad input | command / call | exit | message (as printed) |",
            "|---|---|---|---|---|"]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "inputs"
        base.mkdir()
        make_inputs(base)
        for case in CASES:
            work = Path(tmp) / case.id
            shutil.copytree(base, work, symlinks=True)
            try:
                code, message = check(case, work)
            except BaseException as err:  # a skip or failure is shown in the row
                code, message = "?", f"NOT CHECKED HERE: {err}"
            text = message.replace(str(work) + "/", "").replace("|", "\\|").replace("\n", "<br>")
            exit_ = "raises" if code is None else code
            rows.append(f"| `{case.id}` | {case.what} | `{case.how}` | {exit_} | {text} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(_table())
