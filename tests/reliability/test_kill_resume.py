"""Kill -9 at progress points, rerun, and compare with an uninterrupted run (issue 12).

Each job (history generation, AD training, `apps/reproduce.py`) is started as a subprocess and
killed with SIGKILL (its whole process group) as soon as its committed on-disk progress (task
parts, checkpoints, stage records) reaches the next of `KILLS` seeded, strictly increasing
targets; it is then started again, and so on, and finally run to completion. In the killed starts
the job's last piece of work never finishes (`hold`: a patch run before the job's own code): the
last task runs but does not return, training stops after checkpoint `limit`, the evaluation runs
but does not record. So every kill lands however fast or slow the machine is: no kill races the
job's end. The final start runs unheld, all of its work real. The final outputs must equal, byte
for byte or array for array, those of one uninterrupted run with the same seeds; after every kill,
whatever the run left that a reader would take as finished must be whole, and no committed
progress may be lost by a restart.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from icrl.ad import latest_checkpoint
from icrl.ad._checkpoint import load_checkpoint
from icrl.histories import GenerateConfig, HistoryFile

ROOT = Path(__file__).resolve().parents[2]
KILLS = 10
POLL_S = 0.02  # how often the on-disk progress of a running child is read
# One intra-op thread in every child: 2 shared cores, and bitwise-equal float reductions.
# Numba off: Tianshou's replay buffer JIT-compiles its index helpers (~15 s) in every process
# that builds one, i.e. on every restart of a history generation; pure Python gives the same
# histories at this size in a fraction of the time.
ENV = {
    **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TQDM_DISABLE": "1",
    "NUMBA_DISABLE_JIT": "1",
}

TINY_HISTORIES = {
    "family": "ReacherGoal",
    "algorithm": {"kind": "sac", "hidden_sizes": [16], "batch_size": 16, "warmup_steps": 40},
    "steps_per_task": 240,
    "n_envs": 2,
    "k": 2,
    "tasks": 12,  # 12 commits (one per task) to kill at, the last one left alone
    "workers": 0,
    "progress": False,
}


def _run(cmd: list[str], timeout: float = 600) -> None:
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stderr[-3000:]}"


def seeded_targets(candidates: Sequence[int], seed: int, kills: int = KILLS) -> list[int]:
    """`kills` distinct progress values drawn (seeded) from `candidates`, in increasing order."""
    rng = np.random.default_rng(seed)
    return sorted(int(t) for t in rng.choice(list(candidates), size=kills, replace=False))


@dataclass(frozen=True)
class Kill:
    """One landed kill: the progress it waited for, the progress the dead job left on disk,
    and how long after its start the job was killed."""

    target: int
    left: int
    after_s: float


# `python -c _RUN_HELD PATCH -m MODULE ARGS...` or `... PATCH SCRIPT ARGS...`: run PATCH, then
# the job as `python -m MODULE ARGS...` or `python SCRIPT ARGS...` would. The jobs here run their
# held work in this one process (workers 0, one seed, CPU), so a patch here reaches it.
_RUN_HELD = """
import runpy, sys
exec(sys.argv[1])
job = sys.argv[2:]
if job[0] == "-m":
    sys.argv = [job[1], *job[2:]]
    runpy.run_module(job[1], run_name="__main__", alter_sys=True)
else:
    sys.argv = job
    runpy.run_path(job[0], run_name="__main__")
"""


def kill_chain(
    cmd: list[str],
    progress: Callable[[], int],
    targets: Sequence[int],
    limit: int,
    after_kill: Callable[[], None],
    hold: str,
    jitter: float = 0.0,
    seed: int = 0,
    timeout: float = 300,
) -> list[Kill]:
    """Start `cmd`, SIGKILL it once `progress()` reaches the next target, check, restart, ...

    `progress()` counts what the job has committed on disk; it must never go down, not even
    across a kill and restart (committed work is kept). Each start is killed (its whole process
    group) as soon as progress >= its target, plus up to `jitter` seconds (seeded) that end
    early once progress moves past the target, so a kill never needs the job to be slow. A
    start that would begin at or past its target (the previous kill overshot) aims one step
    past where it begins instead; no aim may exceed `limit`, the last progress point that
    leaves the job real work to do. The killed starts run `hold` (Python source) first, which
    makes the work past `limit` last until the kill; a job that finishes before its target
    fails the test all the same. After the last kill the job runs to completion, unheld.
    """
    held = [cmd[0], "-c", _RUN_HELD, hold, *cmd[1:]]
    assert list(targets) == sorted(set(targets)) and targets[-1] <= limit, targets
    rng = np.random.default_rng(seed)
    kills: list[Kill] = []
    last = progress()
    for target in targets:
        aim = max(target, last + 1)
        assert aim <= limit, (
            f"the next kill would wait for progress {aim}, past the last safe point {limit}: "
            f"earlier kills overshot their targets {list(targets)} ({kills})"
        )
        delay = float(rng.uniform(0.0, jitter))
        proc = subprocess.Popen(
            held,
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        start, reached = time.monotonic(), None
        try:
            while True:
                now = progress()
                assert now >= last, f"progress went back from {last} to {now}: work was lost"
                last = now
                clock = time.monotonic()
                if reached is None and now >= aim:
                    reached = clock
                if reached is not None and (clock - reached >= delay or now > aim):
                    break
                if proc.poll() is not None:
                    pytest.fail(
                        f"{cmd} exited (code {proc.returncode}) at progress {now} before reaching "
                        f"the kill target {aim}: the targets {list(targets)} are badly chosen"
                    )
                if clock - start > timeout:
                    pytest.fail(f"{cmd} made no progress to {aim} in {timeout} s (at {now})")
                time.sleep(POLL_S)
            os.killpg(proc.pid, signal.SIGKILL)  # the job and any worker processes
            after = time.monotonic() - start
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        assert proc.returncode == -signal.SIGKILL, (
            f"{cmd} exited on its own (code {proc.returncode}) before the kill at progress {aim}"
        )
        left = progress()
        assert left >= last, f"progress went back from {last} to {left}: work was lost"
        last = left
        kills.append(Kill(aim, left, after))
        after_kill()
    _run(cmd)
    assert progress() >= last
    return kills


def report(job: str, kills: list[Kill], end: int, took: float) -> None:
    """Print how many kills landed and where (shown by `pytest -s` or `-rA`)."""
    left = [k.left for k in kills]
    after = ", ".join(f"{k.after_s:.1f}" for k in kills)
    print(
        f"\n{job}: {len(kills)} kills landed, at progress {left} of {end} "
        f"(targets {[k.target for k in kills]}; killed {after} s after start); {took:.0f} s"
    )


# --- history generation ---------------------------------------------------------------------

_HOLD_TASK = """
import time
import icrl.histories._generate as g
real = g.run_task
def run_task(config, index, task, *a, **k):
    record = real(config, index, task, *a, **k)  # the work is real; its commit waits
    while index == {index}:
        time.sleep(1)
    return record
g.run_task = run_task
"""


@pytest.fixture(scope="module")
def histories_ref(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(config JSON, uninterrupted output) of a tiny 12-task SAC generation."""
    d = tmp_path_factory.mktemp("hist_ref")
    cfg = d / "cfg.json"
    cfg.write_text(GenerateConfig.model_validate(TINY_HISTORIES).model_dump_json())
    out = d / "ref.h5"
    _run([sys.executable, "-m", "icrl.histories", "generate", "--config", str(cfg),
          "--out", str(out), "--no-progress"])  # fmt: skip
    return cfg, out


def _h5_items(path: Path) -> dict[str, object]:
    """Every dataset (as an array) and attribute of an HDF5 file, by path."""
    items: dict[str, object] = {}
    with h5py.File(path, "r") as f:

        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset):
                items[name] = obj[()]
            for key, value in obj.attrs.items():
                items[f"{name}@{key}"] = value

        for key, value in f.attrs.items():
            items[f"@{key}"] = value
        f.visititems(visit)
    return items


def _assert_same_h5(a: Path, b: Path) -> None:
    ia, ib = _h5_items(a), _h5_items(b)
    assert ia.keys() == ib.keys()
    for key in ia:
        if key.endswith(("@created", "@wall_time_s", "@library_versions")) or "time" in key:
            continue  # wall clocks differ between any two runs
        np.testing.assert_array_equal(np.asarray(ia[key]), np.asarray(ib[key]), err_msg=key)


def test_history_generation_killed_ten_times_equals_uninterrupted(
    histories_ref: tuple[Path, Path], tmp_path: Path
) -> None:
    cfg, ref = histories_ref
    out = tmp_path / "killed.h5"
    parts = out.with_name(out.name + ".parts")

    def after_kill() -> None:
        # No partial artefact reads as complete: the final file only exists when whole, and
        # every committed task part is a readable, finished task.
        if out.exists():
            assert len(HistoryFile(out).tasks) == TINY_HISTORIES["tasks"]
        for part in parts.glob("task_*.h5"):
            HistoryFile(part).history(part.stem)

    tasks = TINY_HISTORIES["tasks"]

    def progress() -> int:
        # Committed tasks (a part is renamed into place whole); tasks + 1 once merged.
        return tasks + 1 if out.exists() else len(list(parts.glob("task_*.h5")))

    # Kill points: just after the k-th task part is committed, for 10 of k = 1..tasks-1 (each
    # leaves at least one whole task and the merge to do).
    targets = seeded_targets(range(1, tasks), seed=12)
    cmd = [sys.executable, "-m", "icrl.histories", "generate", "--config", str(cfg),
           "--out", str(out), "--no-progress"]  # fmt: skip
    start = time.monotonic()
    # The last task runs but never returns: no target can be overrun into the job's end.
    hold = _HOLD_TASK.format(index=tasks - 1)
    kills = kill_chain(cmd, progress, targets, limit=tasks - 1, after_kill=after_kill, hold=hold)
    report("history generation", kills, tasks + 1, time.monotonic() - start)
    assert len(kills) == KILLS, f"{len(kills)} kills landed, not {KILLS}"
    assert progress() == tasks + 1
    assert not parts.exists() and not list(tmp_path.glob("*.tmp"))
    _assert_same_h5(ref, out)


# --- AD training ------------------------------------------------------------------------------


AD_STEPS, AD_CHECKPOINT_EVERY = 400, 10
_HOLD_AFTER_CHECKPOINT = """
import time
import icrl.ad._train as t
real = t.save_checkpoint
def save_checkpoint(path, payload):
    real(path, payload)
    while payload["step"] >= {step}:
        time.sleep(1)
t.save_checkpoint = save_checkpoint
"""


def _ad_config(histories: Path, path: Path) -> Path:
    cfg = {
        "model": {"backbone": "mamba", "d_model": 16, "n_layers": 1, "embed_dim": 8, "d_ff": 32},
        "data": {"paths": [str(histories)], "context": "window", "window": 40},
        "optim": {"lr": 3e-3, "warmup_steps": 5, "weight_decay": 1e-4},
        "batch_size": 2,
        "max_steps": AD_STEPS,
        "checkpoint_every": AD_CHECKPOINT_EVERY,
        "log_every": 1,
        "tensorboard": False,
        "progress": False,
        "device": "cpu",
    }
    path.write_text(json.dumps(cfg))
    return path


def _checkpoint_step(path: Path) -> int:
    return int(path.stem.removeprefix("step_"))


def _losses(run: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows]


def test_ad_training_killed_ten_times_equals_uninterrupted(
    histories_ref: tuple[Path, Path], tmp_path: Path
) -> None:
    cfg = _ad_config(histories_ref[1], tmp_path / "ad.json")
    ref, run = tmp_path / "ref", tmp_path / "killed"
    _run([sys.executable, "-m", "icrl.ad", "train", "--config", str(cfg), "--run-dir", str(ref)])

    def after_kill() -> None:
        # The newest checkpoint is always whole (a torn one would not load).
        if (newest := latest_checkpoint(run)) is not None:
            load_checkpoint(newest)

    cmd = [sys.executable, "-m", "icrl.ad", "train", "--config", str(cfg), "--run-dir", str(run)]

    def progress() -> int:
        # Checkpoints committed: the newest one's step / checkpoint_every (older ones are pruned).
        newest = latest_checkpoint(run)
        return 0 if newest is None else _checkpoint_step(newest) // AD_CHECKPOINT_EVERY

    # Kill points: 10 of the even checkpoint counts 2..30 of 40 (two checkpoints apart, so a
    # kill whose jitter runs into the next checkpoint cannot reach the next target), each plus
    # up to 0.2 s (seeded, cut short by the next checkpoint): mid-step as well as mid-save.
    end = AD_STEPS // AD_CHECKPOINT_EVERY
    targets = [2 * t for t in seeded_targets(range(1, 16), seed=7)]
    start = time.monotonic()
    # Held after checkpoint end - 5 is written: a kill's jitter never runs into the job's end.
    hold = _HOLD_AFTER_CHECKPOINT.format(step=(end - 5) * AD_CHECKPOINT_EVERY)
    kills = kill_chain(
        cmd, progress, targets, limit=end - 5, after_kill=after_kill, hold=hold, jitter=0.2, seed=7
    )
    report("AD training", kills, end, time.monotonic() - start)
    assert len(kills) == KILLS, f"{len(kills)} kills landed, not {KILLS}"
    a, b = load_checkpoint(ref), load_checkpoint(run)
    assert a["step"] == b["step"] == AD_STEPS
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert _losses(ref) == _losses(run)


# --- apps/reproduce.py ----------------------------------------------------------------------

MICRO_TASKS, MICRO_STEPS, MICRO_CHECKPOINT_EVERY = 2, 100, 10
_HOLD_EVALUATION = """
import time
import icrl.apps._pipeline as p
real = p.evaluate
def evaluate(*a, **k):
    real(*a, **k)  # the rollouts are real; the stage's record waits
    while True:
        time.sleep(1)
p.evaluate = evaluate
"""
MICRO = [
    "--no-progress",
    "--histories.tasks", str(MICRO_TASKS),
    "--histories.steps_per_task", "240",
    "--histories.n_envs", "2",
    "--histories.hidden_sizes", "[16]",
    "--histories.batch_size", "16",
    "--histories.workers", "0",
    "--ad.max_steps", str(MICRO_STEPS),
    "--ad.overrides", f'["checkpoint_every={MICRO_CHECKPOINT_EVERY}"]',
    "--ad.d_model", "16",
    "--ad.n_layers", "1",
    "--seeds", "[0]",
    "--backbones", '["mamba"]',
    "--contexts", '["full"]',
    "--no-macaw.enabled",
    "--no-mql.enabled",
    "--evaluate.n_tasks", "2",
    "--evaluate.episodes", "3",
]  # fmt: skip


def _episode_rows(out: Path) -> dict[str, list[dict[str, str]]]:
    found = sorted((out / "stages").glob("*/eval/returns.csv"))
    assert found, f"no per-episode CSV under {out / 'stages'}"
    return {str(p.relative_to(out)): _csv_rows(p) for p in found}


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_reproduce_killed_ten_times_equals_uninterrupted(tmp_path: Path) -> None:
    script = [sys.executable, str(ROOT / "apps/reproduce.py"), *MICRO]
    ref, out = tmp_path / "ref", tmp_path / "killed"
    _run([*script, "--out", str(ref)])

    def after_kill() -> None:
        # A stage counts as finished once its stage.json exists; each such record is whole, and
        # a finished evaluation stage's per-episode CSV parses with every column filled.
        for record in (out / "stages").glob("*/stage.json"):
            json.loads(record.read_text())
            for path in record.parent.glob("eval/returns.csv"):
                rows = _csv_rows(path)
                assert rows and all(None not in row.values() for row in rows), path
        # Kills now also land mid-histories and mid-training: every committed task part is a
        # finished task, and the newest training checkpoint loads.
        for part in (out / "stages").glob("histories-*/histories.h5.parts/task_*.h5"):
            HistoryFile(part).history(part.stem)
        for run in (out / "stages").glob("train-*/run"):
            if (newest := latest_checkpoint(run)) is not None:
                load_checkpoint(newest)

    def progress() -> int:
        # Everything committed, over all stages: task parts (all of them once merged into the
        # stage's histories.h5), training checkpoints (the newest one's step / checkpoint_every),
        # and stage records.
        done = 0
        for stage in (out / "stages").glob("*"):
            done += (stage / "stage.json").exists()
            if (stage / "histories.h5").exists():
                done += MICRO_TASKS
            else:
                done += len(list(stage.glob("histories.h5.parts/task_*.h5")))
            if (newest := latest_checkpoint(stage / "run")) is not None:
                done += _checkpoint_step(newest) // MICRO_CHECKPOINT_EVERY
        return done

    # A whole run's progress: the task parts (1, 2), the histories stage (3), the checkpoints
    # (4..13), the training stage (14), the evaluation stage (15). Kill points: 10 of those
    # that real work follows: not 2 (the merge and the histories stage record follow within
    # milliseconds) nor 13 (the training stage record follows likewise). So kills land
    # mid-histories, at the start of and during training, and at the start of the evaluation
    # (14 leaves the evaluation and the report to do).
    ckpts = MICRO_STEPS // MICRO_CHECKPOINT_EVERY
    end = MICRO_TASKS + 1 + ckpts + 2
    points = [*range(1, MICRO_TASKS), MICRO_TASKS + 1, *range(MICRO_TASKS + 2, end - 2), end - 1]
    targets = seeded_targets(points, seed=3)
    start = time.monotonic()
    # The evaluation runs but never records: the last target (14) cannot be overrun.
    hold = _HOLD_EVALUATION
    kills = kill_chain(
        [*script, "--out", str(out)],
        progress,
        targets,
        limit=end - 1,
        after_kill=after_kill,
        hold=hold,
    )
    report("apps/reproduce.py", kills, end, time.monotonic() - start)
    assert len(kills) == KILLS, f"{len(kills)} kills landed, not {KILLS}"
    assert progress() == end
    assert _episode_rows(ref) == _episode_rows(out)
    assert (out / "report.md").is_file()
