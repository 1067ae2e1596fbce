"""The trainer: overfitting, exact resume, non-finite loss, run-directory safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

from icrl.ad import (
    CheckpointError,
    ContextDataset,
    FullContext,
    NonFiniteLossError,
    RunDirError,
    WindowContext,
    latest_checkpoint,
    load_model,
    train,
)
from icrl.ad._checkpoint import load_checkpoint


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("backbone", ["mamba", "transformer"])
def test_overfits_a_small_recorded_history(tmp_path, record, tiny, backbone) -> None:
    ds = ContextDataset.from_histories({"a": record(episodes=2)}, context=FullContext())
    cfg = tiny(
        model__backbone=backbone,
        model__d_model=32,
        max_steps=120,
        batch_size=1,
        token_noise_std=0.0,
        optim__lr=5e-3,
        optim__warmup_steps=10,
        optim__min_lr_ratio=0.02,
        checkpoint_every=1000,
        log_every=1,
    )
    result = train(cfg, tmp_path / "run", dataset=ds)
    losses = [m["loss"] for m in _metrics(tmp_path / "run")]
    assert losses[0] > 0.02, losses[:5]
    assert result.loss < 1e-3 and result.loss < losses[0] / 50, losses[-5:]


def test_resume_is_exact(tmp_path, record, tiny) -> None:
    hs = {f"t{i}": record(episodes=3, seed=i, task_index=i) for i in range(2)}
    cfg = tiny(data__context="window", data__window=60, max_steps=12, checkpoint_every=4)

    def ds():
        return ContextDataset.from_histories(hs, context=WindowContext(window=60), seed=cfg.seed)

    full = train(cfg, tmp_path / "full", dataset=ds())
    part = train(cfg, tmp_path / "part", dataset=ds(), stop_after=6)
    assert part.step == 6
    resumed = train(cfg, tmp_path / "part", dataset=ds())
    assert resumed.step == 12
    a = load_checkpoint(full.checkpoint)
    b = load_checkpoint(resumed.checkpoint)
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert [m["loss"] for m in _metrics(tmp_path / "full")] == [
        m["loss"] for m in _metrics(tmp_path / "part")
    ]
    # keep_checkpoints=3 prunes older ones
    assert len(list((tmp_path / "full" / "checkpoints").iterdir())) == 3


# The CLI, with the run held after its first checkpoint is written until it is killed (saying so
# in RUN_DIR.held): the kill then lands mid-run on any machine (killed once a checkpoint showed
# up, a fast run could finish its 40 tiny steps first). Mid-step kills at random points:
# tests/reliability/test_kill_resume.
_STOPS_AFTER_ITS_FIRST_CHECKPOINT = (
    "import sys, time, icrl.ad._train as t\n"
    "real = t.save_checkpoint\n"
    "def save_checkpoint(path, payload):\n"
    "    real(path, payload)\n"
    "    open(sys.argv[sys.argv.index('--run-dir') + 1] + '.held', 'w').close()\n"
    "    while True: time.sleep(1)\n"
    "t.save_checkpoint = save_checkpoint\n"
    "from icrl.ad._cli import main\n"
    "sys.exit(main(sys.argv[1:]))"
)


def test_killed_subprocess_resumes_exactly(tmp_path, histories_file, tiny) -> None:
    cfg = tiny([histories_file], data__context="window", data__window=50, max_steps=40,
               checkpoint_every=5)  # fmt: skip
    (tmp_path / "cfg.json").write_text(cfg.model_dump_json())
    ref = train(cfg, tmp_path / "ref")
    run = tmp_path / "killed"
    cmd = [sys.executable, "-c", _STOPS_AFTER_ITS_FIRST_CHECKPOINT, "train", "--config",
           str(tmp_path / "cfg.json"), "--run-dir", str(run)]  # fmt: skip
    # One intra-op thread, like this process (conftest), so the float reductions agree bitwise.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    err = tmp_path / "stderr.txt"
    with err.open("w") as fh:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=fh, env=env)
    try:
        deadline = time.monotonic() + 300  # only fails a hung run; never picks the moment
        while not run.with_name(run.name + ".held").exists():
            assert proc.poll() is None, f"ended before its hold: {err.read_text()}"
            assert time.monotonic() < deadline, "no hold after a checkpoint within 300 s"
            time.sleep(0.05)
    finally:
        if proc.poll() is None:  # (a child that already ended is reaped: its pid may be reused)
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    step = load_checkpoint(latest_checkpoint(run))["step"]
    assert step == 5
    resumed = train(cfg, run)
    a, b = load_checkpoint(ref.checkpoint), load_checkpoint(resumed.checkpoint)
    assert b["step"] == 40
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    for k in a["optimizer"]["state"]:
        assert torch.equal(
            a["optimizer"]["state"][k]["exp_avg"], b["optimizer"]["state"][k]["exp_avg"]
        )
    assert [m["step"] for m in _metrics(run)] == list(range(1, 41))


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, record, tiny) -> None:
    good, bad = record(episodes=2), record(episodes=2, seed=1, task_index=1)
    bad.action[10] = np.nan
    # Reading refuses such data (test_non_finite_data_is_refused_on_read); a loss can still go
    # non-finite in training (a diverging run), which this guard catches.
    with mock.patch("icrl.ad._data._check_finite"):
        ds = ContextDataset.from_histories({"good": good, "bad": bad}, context=FullContext())
    cfg = tiny(batch_size=1, max_steps=20, checkpoint_every=1)
    with pytest.raises(NonFiniteLossError, match=r"at step \d+ .*bad@0") as err:
        train(cfg, tmp_path / "run", dataset=ds)
    step = int(str(err.value).split("at step ")[1].split()[0])
    last = latest_checkpoint(tmp_path / "run")
    if step == 0:
        assert last is None
    else:
        ckpt = load_checkpoint(last)
        assert ckpt["step"] == step
        assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
        assert str(last) in str(err.value)


def test_run_dir_with_another_config_is_refused(tmp_path, record, tiny) -> None:
    ds = ContextDataset.from_histories({"a": record(episodes=1)}, context=FullContext())
    train(tiny(max_steps=2), tmp_path / "run", dataset=ds)
    with pytest.raises(RunDirError, match=r"different config \(fields \['optim.lr'\]\)"):
        train(tiny(max_steps=2, optim__lr=1.0), tmp_path / "run", dataset=ds)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("keep me")
    with pytest.raises(RunDirError, match="not empty"):
        train(tiny(max_steps=2), tmp_path / "other", dataset=ds)


def test_a_run_that_fails_on_its_data_leaves_no_run_dir_behind(
    tmp_path, histories_file, tiny
) -> None:
    """A wrong histories path fails before the run directory exists, so the corrected rerun in
    the same directory is not refused as "a different config"."""
    run = tmp_path / "run"
    with pytest.raises(FileNotFoundError, match=r"missing\.h5"):
        train(tiny([tmp_path / "missing.h5"], max_steps=1), run)
    assert not run.exists() or not any(run.iterdir())
    result = train(tiny([histories_file], max_steps=1), run)
    assert result.step == 1


def test_checkpoint_carries_normalisation_and_rebuilds_the_model(tmp_path, record, tiny) -> None:
    h = record(episodes=2)
    ds = ContextDataset.from_histories({"a": h}, context=FullContext())
    res = train(tiny(max_steps=3), tmp_path / "run", dataset=ds)
    model, meta = load_model(tmp_path / "run")
    both = np.concatenate([h.obs, h.next_obs])
    np.testing.assert_allclose(model.norm_stats().obs_mean, both.mean(0), rtol=1e-4, atol=1e-5)
    assert meta["data"]["obs_dim"] == 8 and meta["step"] == 3
    assert json.loads((tmp_path / "run" / "config.json").read_text())["max_steps"] == 3
    assert res.checkpoint == latest_checkpoint(tmp_path / "run")


def test_a_moved_run_and_histories_resume_exactly_and_replaced_data_is_refused(
    tmp_path, histories_file, tiny
) -> None:
    """A run carried to another machine: its directory and its histories file both at new paths.
    It resumes to the uninterrupted result; a *different* file at the histories' path does not."""
    import shutil

    here = tmp_path / "here"
    here.mkdir()
    h5 = shutil.copy(histories_file, here / "h.h5")
    kw = {"data__context": "window", "data__window": 50, "max_steps": 12, "checkpoint_every": 4}
    ref = train(tiny([h5], **kw), tmp_path / "ref")
    assert train(tiny([h5], **kw), here / "run", stop_after=8).step == 8
    there = tmp_path / "there"
    shutil.move(here, there)
    resumed = train(tiny([there / "h.h5"], progress=True, **kw), there / "run")
    assert resumed.step == 12 and load_model(resumed.checkpoint)[0] is not None
    a, b = load_checkpoint(ref.checkpoint), load_checkpoint(resumed.checkpoint)
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    saved = json.loads((there / "run" / "config.json").read_text())
    assert saved["data"]["paths"] == [str(there / "h.h5")]

    import h5py

    changed = Path(shutil.copy(there / "h.h5", tmp_path / "changed.h5"))
    with h5py.File(changed, "r+") as f:  # other histories: other rewards
        f["task_000/transitions/reward"][:] -= 1.0
    other = tmp_path / "other"
    assert train(tiny([there / "h.h5"], **kw), other, stop_after=4).step == 4
    with pytest.raises(RunDirError, match="content"):  # "moved" onto other data: refused
        train(tiny([changed], **kw), other)
    paths = json.loads((other / "config.json").read_text())["data"]["paths"]
    assert paths == [str(there / "h.h5")]  # and the refused attempt left config.json alone

    # Evaluating the moved run directory accepts its own checkpoints ...
    assert load_model(there / "run")[1]["step"] == 12
    # ... but not one trained with the same config on other histories.
    foreign = train(tiny([changed], **kw), tmp_path / "foreign")
    shutil.copy(foreign.checkpoint, there / "run" / "checkpoints" / "step_000000099.pt")
    with pytest.raises(CheckpointError, match="other histories"):
        load_model(there / "run")


def test_a_run_written_in_the_older_config_form_resumes(tmp_path, record, tiny) -> None:
    from icrl.ad._checkpoint import checkpoint_path, save_checkpoint

    # Before ADConfig held the seqmodels config, a model section listed both backbones' fields.
    old_model = {"backbone": "mamba", "d_model": 32, "n_layers": 2, "embed_dim": 8, "n_heads": 4,
                 "d_ff": 64, "d_state": 16, "d_conv": 4, "expand": 2, "max_len": None,
                 "kernel_backend": "auto", "action_head": "mse"}  # fmt: skip
    cfg = tiny(max_steps=4, checkpoint_every=2)
    ds = ContextDataset.from_histories({"a": record(episodes=2)}, context=FullContext())
    run = tmp_path / "run"
    assert train(cfg, run, dataset=ds, stop_after=2).step == 2
    saved = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**saved, "model": old_model}))
    ckpt = load_checkpoint(checkpoint_path(run, 2))
    ckpt["config"]["model"] = old_model
    save_checkpoint(
        checkpoint_path(run, 2), {k: v for k, v in ckpt.items() if k not in ("format", "path")}
    )
    assert train(cfg, run, dataset=ds).step == 4
    assert json.loads((run / "config.json").read_text()) == cfg.model_dump(mode="json")
    assert load_model(run)[1]["step"] == 4


def test_action_token_noise_perturbs_the_previous_actions_only(tmp_path, record, tiny) -> None:
    from icrl.ad._train import _noise, token_noise_scale

    ds = ContextDataset.from_histories({"a": record(episodes=2)}, context=FullContext())
    plain = tiny(max_steps=3, token_noise_std=0.01)
    noisy = tiny(max_steps=3, token_noise_std=0.01, action_token_noise_std=0.3)
    model, _ = load_model(train(plain, tmp_path / "plain", dataset=ds).checkpoint)
    scale = token_noise_scale(model, noisy, torch.device("cpu"))
    act = model.layout.slices["prev_action"]
    want = torch.full_like(scale, 0.01)
    want[act] = (0.01**2 + 0.3**2) ** 0.5
    torch.testing.assert_close(scale, want)
    drawn = _noise(torch.Size([64, 50, model.layout.width]), scale, 0, 0, 0, torch.device("cpu"))
    assert drawn is not None
    spread = drawn.reshape(-1, model.layout.width).std(0)
    torch.testing.assert_close(spread, want, rtol=0.05, atol=0.0)
    # wired into the loop: the same run with the action noise trains to other weights; at 0 it
    # draws exactly the noise it drew before the field existed (token_noise_std alone)
    assert train(noisy, tmp_path / "noisy", dataset=ds).loss != pytest.approx(
        train(plain, tmp_path / "again", dataset=ds).loss, rel=1e-9, abs=0.0
    )
    zero = token_noise_scale(model, plain, torch.device("cpu"))
    torch.testing.assert_close(zero, torch.full_like(scale, 0.01))
    none = tiny(max_steps=3, token_noise_std=0.0)
    assert token_noise_scale(model, none, torch.device("cpu")) is None
    assert _noise(drawn.shape, None, 0, 0, 0, torch.device("cpu")) is None


def test_an_old_run_resumed_after_a_field_was_added_still_evaluates(tmp_path, record, tiny) -> None:
    from icrl.ad._checkpoint import checkpoint_path, save_checkpoint

    # A finished run written before TrainConfig.action_token_noise_std existed: its config.json
    # and checkpoints lack the field. Training it again rewrites config.json in today's form
    # (no step left to run); its old checkpoints must still count as this run's.
    cfg = tiny(max_steps=4, checkpoint_every=2)
    ds = ContextDataset.from_histories({"a": record(episodes=2)}, context=FullContext())
    run = tmp_path / "run"
    train(cfg, run, dataset=ds)
    saved = json.loads((run / "config.json").read_text())
    del saved["action_token_noise_std"]
    (run / "config.json").write_text(json.dumps(saved))
    for step in (2, 4):
        ckpt = load_checkpoint(checkpoint_path(run, step))
        del ckpt["config"]["action_token_noise_std"]
        save_checkpoint(
            checkpoint_path(run, step),
            {k: v for k, v in ckpt.items() if k not in ("format", "path")},
        )
    assert train(cfg, run, dataset=ds).step == 4
    assert "action_token_noise_std" in json.loads((run / "config.json").read_text())
    assert load_model(run)[1]["step"] == 4
