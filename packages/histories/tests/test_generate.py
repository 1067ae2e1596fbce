"""Real (tiny) Tianshou runs: recording, ordering, downsampling, resume after kill -9, refusals."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from icrl.histories import ConfigMismatchError, GenerateConfig, HistoryFile, generate, run_task
from icrl.histories._generate import parts_dir


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, make_config: Any) -> tuple[Path, Any]:
    """An uninterrupted, in-process run of 3 tiny SAC tasks."""
    config = make_config(tasks=3)
    path = tmp_path_factory.mktemp("ref") / "ref.h5"
    generate(config, path)
    return path, config


def _same_files(a: Path, b: Path) -> None:
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        assert sorted(fa) == sorted(fb)
        assert dict(fa.attrs) == dict(fb.attrs)
        for name in fa:
            assert dict(fa[name].attrs) == dict(fb[name].attrs), name
            for sub in ("transitions", "episodes"):
                for key in fa[name][sub]:
                    x, y = fa[name][sub][key][()], fb[name][sub][key][()]
                    assert np.array_equal(x, y), f"{name}/{sub}/{key}"


def test_generate_records_the_whole_run(reference: tuple[Path, Any], policy_mean: Any) -> None:
    path, config = reference
    assert not parts_dir(path).exists()
    hf = HistoryFile(path)
    assert hf.tasks == ["task_000", "task_001", "task_002"]
    assert hf.attrs["family"] == "ReacherGoal" and hf.attrs["env_id"] == "icrl/ReacherGoal-v0"
    tasks = set()
    for name in hf.tasks:
        meta = hf.meta(name)
        tasks.add(json.dumps(meta["task"], sort_keys=True))
        assert meta["backend"] == "tianshou" and meta["algorithm"] == "sac"
        assert meta["library_versions"]["tianshou"] == "2.0.1"
        # 240 env steps over 2 envs: 120 steps each, 2 finished 50-step episodes per env
        assert meta["n_transitions_total"] == 240
        eps = hf.episodes(name)
        assert eps["length"].tolist() == [50, 50, 50, 50]
        assert eps["env_index"].tolist() == [0, 1, 0, 1]  # same finishing step: by env index
        assert eps["end_vstep"].tolist() == [49, 49, 99, 99]
        assert meta["n_unfinished_transitions"] == 40
        # 40 random warm-up steps = the first 20 steps of each env's first episode
        assert eps["warmup_steps"].tolist() == [20, 20, 0, 0]
        assert eps["kept"].tolist() == [True, False, True, False]  # k = 2
        h = hf.history(name)
        assert len(h) == 100 and sorted(set(h.episode.tolist())) == [0, 2]
        assert h.warmup.tolist() == [True] * 20 + [False] * 80
        assert np.array_equal(h.step, np.tile(np.arange(50), 2))
        assert h.truncated.tolist() == ([False] * 49 + [True]) * 2 and not h.terminated.any()
        same = h.episode[1:] == h.episode[:-1]
        assert np.array_equal(h.next_obs[:-1][same], h.obs[1:][same])
        assert np.all(np.abs(h.action) <= 1.0)
        # the policy's deterministic action beside the executed one: in the box; in warm-up the
        # untrained policy's; afterwards the (trained) policy's mean, which the samples scatter
        # around
        assert h.mean_action.shape == h.action.shape and np.all(np.abs(h.mean_action) <= 1.0)
        index = meta["task_index"]
        want = policy_mean(config, index, h.obs[h.warmup])
        np.testing.assert_allclose(h.mean_action[h.warmup], want, atol=1e-5, rtol=0)
        learning = ~h.warmup
        noise = ((h.action - h.mean_action)[learning] ** 2).sum(1)
        differs = np.any(h.action[learning] != h.mean_action[learning], axis=1)
        assert noise.mean() > 1e-3 and differs.mean() > 0.9  # (tanh saturates to +-1 at times)
        assert np.isclose(hf.exploration_noise(name), noise.mean(dtype=np.float64), rtol=1e-5)
        returns, _ = hf.episode_returns(name)
        assert np.isclose(returns[0], h.reward[:50].sum(dtype=np.float64), atol=1e-4)
        assert np.isclose(returns[2], h.reward[50:].sum(dtype=np.float64), atol=1e-4)
    assert len(tasks) == 3


def test_rerun_is_a_no_op_and_other_settings_are_refused(reference: tuple[Path, Any]) -> None:
    path, config = reference
    before = path.stat().st_mtime_ns
    assert generate(config.model_copy(update={"workers": 3}), path) == path
    assert path.stat().st_mtime_ns == before
    with pytest.raises(ConfigMismatchError, match=r"k: existing 2, requested 3"):
        generate(config.model_copy(update={"k": 3}), path)
    with pytest.raises(ConfigMismatchError, match=r"algorithm\.lr: existing 0\.001"):
        algo = config.algorithm.model_copy(update={"lr": 3e-4})
        generate(config.model_copy(update={"algorithm": algo}), path)
    assert path.stat().st_mtime_ns == before


def test_unfinished_run_with_other_settings_is_refused(
    reference: tuple[Path, Any], tmp_path: Path, make_config: Any
) -> None:
    out = tmp_path / "x.h5"
    parts = parts_dir(out)
    parts.mkdir()
    (parts / "config.json").write_text(json.dumps(make_config(seed=5).identity()))
    # one finished task of that run
    with h5py.File(parts / "task_000.h5", "w") as f, h5py.File(reference[0], "r") as src:
        src.copy(src["task_000"], f, name="task_000")
        f.attrs.update(src.attrs)
    with pytest.raises(ConfigMismatchError, match=r"seed: existing 5, requested 0.*1 finished"):
        generate(make_config(), out)
    assert not out.exists()


# The CLI, held once its driver has committed the first finished task until it is killed, saying
# so in OUT.held: the kill then lands mid-run on any machine (killed once a task showed up, a
# fast run could finish its last task first). The helpers' source runs are real.
_HELD_AFTER_FIRST_COMMIT = (
    "import sys, time, icrl.histories._generate as g\n"
    "real = g.write_task_file\n"
    "def write_task_file(*a, **k):\n"
    "    real(*a, **k)\n"
    "    open(sys.argv[sys.argv.index('--out') + 1] + '.held', 'w').close()\n"
    "    while True: time.sleep(1)\n"
    "g.write_task_file = write_task_file\n"
    "from icrl.histories.__main__ import main\n"
    "sys.exit(main(sys.argv[1:]))"
)


def test_resume_after_kill_equals_uninterrupted_run(
    reference: tuple[Path, Any], tmp_path: Path
) -> None:
    ref_path, config = reference
    out = tmp_path / "resumed.h5"
    cfg = tmp_path / "cfg.json"
    cfg.write_text(config.model_dump_json())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["TQDM_DISABLE"] = "1"
    cmd = [sys.executable, "-c", _HELD_AFTER_FIRST_COMMIT, "generate", "--config", str(cfg)]
    cmd += ["--out", str(out), "--workers", "2", "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    parts = parts_dir(out)
    try:
        deadline = time.monotonic() + 240
        while not out.with_name(out.name + ".held").exists():
            assert proc.poll() is None, "the run ended before its hold after the first commit"
            assert time.monotonic() < deadline, "no hold after the first commit within 240 s"
            time.sleep(0.05)
    finally:
        # the run and its worker processes, mid-flight (a run that ended early may leave none:
        # the assertion above then says why, not this kill)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not out.exists()
    done = sorted(p.name for p in parts.glob("task_*.h5"))
    assert len(done) == 1
    generate(config, out)  # resume in-process
    assert not parts.exists()
    _same_files(ref_path, out)


@pytest.mark.parametrize(
    "algorithm",
    [
        {"kind": "ppo", "hidden_sizes": [16], "steps_per_env": 50, "batch_size": 32},
        {"kind": "droq", "hidden_sizes": [16], "batch_size": 16, "warmup_steps": 40},
    ],
    ids=["ppo", "droq"],
)
def test_ppo_and_droq_record_every_step(make_config: Any, algorithm: dict[str, Any]) -> None:
    steps = 240 if "warmup_steps" in algorithm else 200
    config = make_config(algorithm=algorithm, steps_per_task=steps, k=1)
    from icrl.metaenvs import train_tasks

    record = run_task(config, 0, train_tasks("ReacherGoal", 1)[0])
    assert record.attrs["n_transitions_total"] == config.steps_per_task
    eps = record.episodes
    finished = int(eps["length"].sum())
    assert finished + record.attrs["n_unfinished_transitions"] == config.steps_per_task
    assert len(record.transitions["reward"]) == finished  # k = 1 keeps every episode
    warm = record.transitions["warmup"].sum()
    assert warm == (40 if algorithm["kind"] == "droq" else 0)
    act, mean = record.transitions["action"], record.transitions["mean_action"]
    assert mean.shape == act.shape and mean.dtype == np.float32 and np.all(np.abs(mean) <= 1.0)
    assert ((act - mean) ** 2).sum(1).mean() > 1e-3
    assert record.attrs["hyperparameters"]["kind"] == algorithm["kind"]


def test_droq_keeps_dropout_in_its_target_critics() -> None:
    import gymnasium as gym
    import torch
    from tianshou.data import Batch

    from icrl.histories import DroQConfig, TaskSpec
    from icrl.histories._learners import _build_droq

    obs_space = gym.spaces.Box(-1, 1, (3,))
    act_space = gym.spaces.Box(-1, 1, (2,))
    algo = DroQConfig(hidden_sizes=(32,), dropout=0.5)
    spec = TaskSpec("ReacherGoal", None, 0, 0, 10, 1, algo)
    droq, _ = _build_droq(algo, spec, obs_space, act_space)
    obs = Batch(obs=torch.randn(64, 3))
    act = Batch(act=torch.rand(64, 2) * 2 - 1, log_prob=torch.zeros(64, 1))
    a = droq._target_q_compute_value(obs, act)
    b = droq._target_q_compute_value(obs, act)
    assert a.shape == (64, 1) and not torch.allclose(a, b)  # dropout sampled anew
    assert not droq.critic_old.module.training  # and switched back off afterwards


def test_cli_help_and_info(reference: tuple[Path, Any], capsys: pytest.CaptureFixture[str]) -> None:
    from icrl.histories.__main__ import main

    with pytest.raises(SystemExit) as exit_:
        main(["generate", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--workers" in out and "resumes" in out and "ReacherGoal SAC 1e5" in out
    assert main(["info", str(reference[0])]) == 0
    assert "task_002" in capsys.readouterr().out
    assert main(["generate", "--family", "ReacherGoal", "--out", "x.h5", "--steps", "7"]) == 2
    assert "steps_per_task" in capsys.readouterr().err


def test_info_into_a_closed_pipe_is_quiet(reference: tuple[Path, Any]) -> None:
    """`info FILE | head -n 0`: the reader goes away before the first line; that is not an error."""
    import subprocess
    import sys

    cmd = f"{sys.executable} -m icrl.histories info {reference[0]} | head -n 0"
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout == ""


def test_a_broken_pipe_in_generate_is_a_failure(monkeypatch, capsys) -> None:
    """Only `info` takes a closed pipe as the reader's choice; in `generate`: a dead worker."""
    from icrl.histories import __main__ as cli

    def dead_worker(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "_run", dead_worker)
    assert cli.main(["generate", "--family", "ReacherGoal", "--out", "x.h5"]) == 2
    assert "Broken pipe" in capsys.readouterr().err


def test_a_failing_task_is_named_and_finished_work_is_kept(
    tmp_path: Path, make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from icrl.histories import TaskFailedError, _envs

    def broken(family: str, task: Any) -> Any:
        raise RuntimeError("simulator exploded")

    monkeypatch.setattr(_envs, "make_env", broken)
    out = tmp_path / "f.h5"
    with pytest.raises(TaskFailedError, match=r"task_000 .*simulator exploded"):
        generate(make_config(), out)
    assert not out.exists()
    # No task had finished: the parts directory this run made is gone, so that a rerun with
    # corrected settings is not refused (test_reliability checks that a finished task is kept).
    assert not parts_dir(out).exists()


def test_a_damaged_committed_task_is_reported_and_redone(
    tmp_path: Path, make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from icrl.histories import TaskFailedError, _envs

    config = make_config()
    out = tmp_path / "d.h5"
    parts = parts_dir(out)
    parts.mkdir()
    (parts / "config.json").write_text(json.dumps(config.identity()))
    (parts / "task_000.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)  # truncated
    (parts / "task_001.h5.tmp").write_bytes(b"half-written")

    def stop(family: str, task: Any) -> Any:
        raise RuntimeError("stop here")

    monkeypatch.setattr(_envs, "make_env", stop)
    with (
        pytest.warns(UserWarning, match=r"task_000\.h5 is unreadable"),
        pytest.raises(TaskFailedError, match="task_000"),
    ):
        generate(config, out)
    assert not (parts / "task_000.h5").exists() and not (parts / "task_001.h5.tmp").exists()


def test_test_split_learns_on_the_canonical_test_tasks(tmp_path) -> None:
    from icrl.metaenvs import test_tasks

    cfg = GenerateConfig(
        family="PointGoal",
        tasks=2,
        split="test",
        steps_per_task=300,
        workers=0,
        backend="batched",
        progress=False,
    )
    hf = HistoryFile(generate(cfg, tmp_path / "held_out.h5"))
    got = [hf.meta(name)["task"] for name in hf.tasks]
    assert got == [t.to_dict() for t in test_tasks("PointGoal", 2)]


def test_progress_rate_starts_at_the_first_step(monkeypatch) -> None:
    """The ETA must not count the workers' start-up (seconds without a step: ETAs of hours)."""
    import time

    from icrl.histories._generate import _Progress

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    bar = _Progress(1000, 2, 0, enabled=True)
    created = bar.bar.start_t
    before_first_step = time.time()
    bar.steps(10)
    assert bar.bar.start_t >= before_first_step >= created and bar.bar.n == 10
    bar.steps(5)
    assert bar.bar.n == 15  # only the first step restarts the clock
    bar.close()
