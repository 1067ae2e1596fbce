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
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
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
         r"non-finite loss at step \d+ \(loss=nan.*contexts \[.*task_\d+@\d+.*last good checkpoint",
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
        assert code != 0, f"{case.id}: exit code 0; stderr:\n{message}"
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
