"""Batched backend: stream recording, env pool, replay, files the reader cannot tell apart."""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np
import pytest
import torch

from icrl.histories import GenerateConfig, HistoryFile, HistoryRecorder, generate
from icrl.histories._envs import train_tasks
from icrl.histories.batched import EnvPool, StreamRecorder, TaskReplay


def _random_stream(rng: np.random.Generator, t: int, v: int, n: int) -> dict[str, np.ndarray]:
    shape = (v, t * n)
    return {
        "obs": rng.normal(size=(*shape, 3)).astype(np.float32),
        "action": rng.normal(size=(*shape, 2)).astype(np.float32),
        "mean_action": rng.normal(size=(*shape, 2)).astype(np.float32),
        "reward": rng.normal(size=shape),
        "next_obs": rng.normal(size=(*shape, 3)).astype(np.float32),
        "terminated": rng.random(shape) < 0.04,
        "truncated": rng.random(shape) < 0.08,
        "warm": np.arange(v) < 7,
    }


@pytest.mark.parametrize("k", [1, 3])
def test_stream_recorder_matches_history_recorder(k: int) -> None:
    """Cutting the recorded stream afterwards gives exactly HistoryRecorder's arrays."""
    t, v, n = 3, 120, 4
    s = _random_stream(np.random.default_rng(k), t, v, n)
    stream = StreamRecorder(t, v, n, 3, 2)
    refs = [HistoryRecorder(n, k, 3, 2) for _ in range(t)]
    fields = ("obs", "action", "reward", "next_obs", "terminated", "truncated")
    for i in range(v):
        mean = s["mean_action"][i]
        stream.record(*(s[f][i] for f in fields), warmup=bool(s["warm"][i]), mean_action=mean)
        for task, ref in enumerate(refs):
            ref.warmup = bool(s["warm"][i])
            rows = slice(task * n, (task + 1) * n)
            ref.record_step(*(s[f][i][rows] for f in fields), mean_action=mean[rows])
    for task, ref in enumerate(refs):
        trans, eps, unfinished = stream.task_history(task, k)
        want_trans, want_eps = ref.result()
        assert set(trans) == set(want_trans) and "mean_action" in trans
        assert len(eps["return"]) > 10
        assert unfinished == ref.unfinished_transitions()
        for name, want in [*want_trans.items(), *want_eps.items()]:
            got = trans.get(name, eps.get(name))
            assert got.dtype == want.dtype, name
            np.testing.assert_array_equal(got, want, err_msg=name)


def test_env_pool_workers_match_in_process() -> None:
    """Worker processes step exactly like the in-process pool; episode ends reset at once."""
    tasks = [t for t in train_tasks("ReacherGoal", 2) for _ in range(2)]
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (60, 4, 2)).astype(np.float32)
    out = []
    for workers in (0, 2):
        with EnvPool("ReacherGoal", tasks, [1, 2, 3, 4], workers) as pool:
            rows = [pool.reset().copy()]
            for i in range(60):
                sh = pool.step(None if i < 3 else actions[i])
                rows.append(np.concatenate([sh.next_obs, sh.obs, sh.rew[:, None], sh.act], 1))
                if i == 49:  # ReacherGoal episodes are 50 steps
                    assert sh.truncated.all()
                    assert not np.allclose(sh.obs, sh.next_obs)
            out.append(np.stack(rows[1:]))
    np.testing.assert_array_equal(out[0], out[1])


def test_replay_samples_only_stored_rows() -> None:
    replay = TaskReplay(2, 10, 1, 1, "cpu")
    rows = torch.zeros(2, 2, 5)
    rows[1] += 1
    for step in range(3):
        rows[..., 0] = step  # obs holds the step index
        replay.add(rows.clone())
    batch = replay.sample(500)
    assert set(batch.obs.unique().tolist()) == {0.0, 1.0, 2.0}
    assert torch.all(batch.rew[1] == 1) and torch.all(batch.rew[0] == 0)


def test_generate_batched_file_reads_like_reference(
    tmp_path: Any, make_config: Any, policy_mean: Any
) -> None:
    """Same layout and attributes as the per-task backend's file, except `backend`."""
    files = {}
    for backend in ("tianshou", "batched"):
        cfg: GenerateConfig = make_config(backend=backend)
        files[backend] = generate(cfg, tmp_path / f"{backend}.h5")
        hf = HistoryFile(files[backend])
        for i, name in enumerate(hf.tasks):
            h = hf.history(name)
            # mean_action: in the box, the untrained policy's in warm-up, the samples' centre after
            assert h.mean_action is not None and np.all(np.abs(h.mean_action) <= 1.0)
            want = policy_mean(cfg, i, h.obs[h.warmup])
            np.testing.assert_allclose(h.mean_action[h.warmup], want, atol=1e-5, rtol=0)
            noise = hf.exploration_noise(name)
            assert noise is not None and noise > 1e-3
    ref, bat = HistoryFile(files["tianshou"]), HistoryFile(files["batched"])
    assert ref.tasks == bat.tasks
    for name in ref.tasks:
        a, b = ref.history(name), bat.history(name)
        assert type(a) is type(b)
        _, la = ref.episode_returns(name)
        rb, lb = bat.episode_returns(name)
        assert la.sum() == lb.sum() or abs(int(la.sum()) - int(lb.sum())) < 200
        assert len(rb) > 0 and np.isfinite(rb).all()
    with h5py.File(files["tianshou"]) as fa, h5py.File(files["batched"]) as fb:
        for name in fa:
            ga, gb = fa[name], fb[name]
            assert set(ga.attrs) == set(gb.attrs)
            assert gb.attrs["backend"] == "batched" and ga.attrs["backend"] == "tianshou"
            assert ga.attrs["task_seed"] == gb.attrs["task_seed"]
            for group in ("transitions", "episodes"):
                assert set(ga[group]) == set(gb[group])
                for ds in ga[group]:
                    assert ga[group][ds].dtype == gb[group][ds].dtype, ds
                    assert ga[group][ds].shape[1:] == gb[group][ds].shape[1:], ds


def test_generate_batched_is_deterministic_and_resumable(tmp_path: Any, make_config: Any) -> None:
    cfg = make_config(backend="batched", workers=2)
    first = generate(cfg, tmp_path / "a.h5")
    again = generate(make_config(backend="batched", workers=0), tmp_path / "b.h5")
    with h5py.File(first) as fa, h5py.File(again) as fb:
        for name in fa:
            for ds in fa[name]["transitions"]:
                np.testing.assert_array_equal(
                    fa[name]["transitions"][ds][()], fb[name]["transitions"][ds][()]
                )
    mtime = first.stat().st_mtime_ns
    generate(cfg, first)  # complete file: nothing to do
    assert first.stat().st_mtime_ns == mtime


def test_ppo_and_droq_generate(tmp_path: Any, make_config: Any) -> None:
    """Tiny batched PPO and DroQ runs write valid files with every episode of the stream."""
    ppo = {"kind": "ppo", "steps_per_env": 20, "hidden_sizes": [8], "batch_size": 16}
    droq = {"kind": "droq", "hidden_sizes": [8], "batch_size": 16, "warmup_steps": 40}
    for name, algo, steps in [("ppo", ppo, 200), ("droq", droq, 160)]:
        cfg = make_config(backend="batched", algorithm=algo, steps_per_task=steps)
        hf = HistoryFile(generate(cfg, tmp_path / f"{name}.h5"))
        for task in hf.tasks:
            returns, lengths = hf.episode_returns(task)
            assert lengths.sum() == 2 * (steps // 2 // 50 * 50) and np.isfinite(returns).all()
            h = hf.history(task)
            assert h.mean_action is not None and np.all(np.abs(h.mean_action) <= 1.0)
            assert h.mean_action.shape == h.action.shape
            assert ((h.action - h.mean_action) ** 2).sum(1).mean() > 1e-3


def test_tasks_split_over_devices_give_the_same_file_layout(
    tmp_path: Any, make_config: Any
) -> None:
    """Two device processes ("cpu,cpu": the multi-GPU path on CPU) each train and commit a share."""
    cfg = make_config(backend="batched", device="cpu,cpu", tasks=3)
    hf = HistoryFile(generate(cfg, tmp_path / "split.h5"))
    assert hf.tasks == ["task_000", "task_001", "task_002"]
    one = HistoryFile(generate(make_config(backend="batched", tasks=1), tmp_path / "one.h5"))
    # task 0 trained alone on one device equals task 0 of the split run (it was alone with
    # task 1 there, so only its initial weights are shared: compare the warm-up, which is the
    # same random-action stream for a given task seed)
    a, b = hf.history("task_000"), one.history("task_000")
    warm = np.asarray(a.warmup) & np.asarray(b.warmup)
    assert warm.any()
    np.testing.assert_array_equal(np.asarray(a.obs)[warm], np.asarray(b.obs)[warm])


def test_cli_backend_flag(tmp_path: Any) -> None:
    from icrl.histories.__main__ import main

    out = tmp_path / "cli.h5"
    args = ["generate", "--family", "ReacherGoal", "--out", str(out), "--tasks", "1"]
    args += ["--steps", "440", "--n-envs", "2", "--workers", "0", "--no-progress"]
    assert main([*args, "--backend", "batched", "--set", "hidden_sizes=[8]"]) == 0
    with h5py.File(out) as f:
        assert f["task_000"].attrs["backend"] == "batched"
