"""`python -m icrl.ad diagnose` end to end on a tiny PointGoal run, its errors, and prompting."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

import icrl.ad._diagnose as diag
from icrl.ad import DiagnoseConfig, train
from icrl.ad._cli import main


@pytest.fixture(scope="module")
def pointgoal(tmp_path_factory, sac, short_run) -> tuple[Path, Path]:
    """(histories, run dir): 2 PointGoal tasks of a tiny SAC run (20 kept episodes each, schema 2
    with mean_action) and a tiny Gaussian-head Mamba trained on them for a few steps."""
    root = tmp_path_factory.mktemp("diag")
    hist = sac(root / "pg.h5", "PointGoal", steps=400, k=1, warmup=100, backend="batched")
    tc = short_run([hist], 6, {"n_layers": 2, "action_head": "gaussian"})
    train(tc, root / "run")
    return hist, root / "run"


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def test_diagnose_cli_writes_every_part(tmp_path, pointgoal, capsys) -> None:
    hist, run = pointgoal
    out = tmp_path / "diag"
    sets = ["device=cpu", "n_tasks=2", "prompt_episodes=[0,2]", "episodes=2", "split_tasks=1",
            "reference_episodes=0"]  # fmt: skip
    args = ["diagnose", "--checkpoint", str(run), "--histories", str(hist), "--out-dir", str(out)]
    args += [x for s in sets for x in ("--set", s)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "tasks this model was trained on" in printed  # the held-out file holds training tasks
    for part in diag.DIAGNOSE_PARTS:
        assert (out / f"{part}.png").stat().st_size > 1000
    md = (out / "diagnose.md").read_text()
    assert "## 1. Teacher-forced" in md and "## 5. Sampled vs mean" in md and "WARNING" in md

    cols, tf = _rows(out / "teacher_forced.csv")
    assert tuple(cols) == diag.TEACHER_COLUMNS
    assert [int(r["bin"]) for r in tf] == [0, 1, 2, 3]  # 20 kept episodes in bins of 5
    assert sum(int(r["tokens"]) for r in tf) == 2 * 400
    assert float(tf[0]["warmup_frac"]) == 1.0 and float(tf[-1]["warmup_frac"]) == 0.0
    for r in tf:  # schema 2 gives the floor; a Gaussian head gives its std
        assert all(np.isfinite(float(r[c])) for c in cols[4:])
        assert float(r["mse_mu_action"]) > 0 and float(r["pred_std"]) > 0

    cols, abl = _rows(out / "reward_ablation.csv")
    assert tuple(cols) == diag.TEACHER_COLUMNS
    by = {c: [float(r["mse_model_action"]) for r in abl if r["rewards"] == c]
          for c in ("none", "zero", "shuffle")}  # fmt: skip
    assert by["none"] == [float(r["mse_model_action"]) for r in tf]
    assert not np.allclose(by["zero"], by["none"]) and not np.allclose(by["shuffle"], by["none"])

    cols, pr = _rows(out / "prompted.csv")
    assert tuple(cols) == diag.PROMPT_COLUMNS
    assert {(r["prompt_episodes"], r["task"]) for r in pr} == {
        (m, t) for m in ("0", "2") for t in ("task_000", "task_001")
    }
    assert len(pr) == 2 * 2 * 2 and all(r["prompt_return"] == "nan" for r in pr[:4])
    assert np.isfinite(float(pr[-1]["prompt_return"]))

    cols, sp = _rows(out / "train_vs_test.csv")
    assert tuple(cols) == diag.SPLIT_COLUMNS
    assert [r["split"] for r in sp] == ["train", "train", "test", "test"]
    cols, sa = _rows(out / "sampling.csv")
    assert tuple(cols) == diag.SAMPLING_COLUMNS
    # The sampled from-scratch rollout is the prompted m=0 one (same seed, reused).
    sampled = [r["return"] for r in sa if r["mode"] == "sampled"]
    assert sampled == [r["return"] for r in pr if r["prompt_episodes"] == "0"]


def test_diagnose_errors_name_the_input(tmp_path, pointgoal, capsys) -> None:
    hist, run = pointgoal
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("")
    base = ["diagnose", "--checkpoint", str(run), "--histories", str(hist)]
    assert main([*base, "--out-dir", str(busy)]) == 2
    assert f"output directory {busy} exists and is not empty" in capsys.readouterr().err
    assert main([*base, "--out-dir", str(tmp_path / "a"), "--set", "n_taskz=2"]) == 2
    assert "n_taskz: Extra inputs are not permitted" in capsys.readouterr().err
    assert main([*base, "--out-dir", str(tmp_path / "a"), "--set", 'parts=["nope"]']) == 2
    assert "invalid DiagnoseConfig" in capsys.readouterr().err
    missing = tmp_path / "none.h5"
    assert main(["diagnose", "--checkpoint", str(run), "--histories", str(missing),
                 "--out-dir", str(tmp_path / "b")]) == 2  # fmt: skip
    assert f"histories file {missing} does not exist" in capsys.readouterr().err
    assert main(["diagnose", "--checkpoint", str(tmp_path), "--histories", str(hist),
                 "--out-dir", str(tmp_path / "c")]) == 2  # fmt: skip
    assert "holds no checkpoints" in capsys.readouterr().err
    assert not any((tmp_path / d).exists() for d in ("a", "b", "c"))


@pytest.mark.parametrize("where", ["first", "last"])
def test_prompted_rollout_continues_the_recorded_history(pointgoal, monkeypatch, where) -> None:
    """Prompt tokens fed through `step`, then the rollout, give the actions that one forward pass
    over [prompt, rollout tokens] gives; the first online token carries the prompt's last
    transition, exactly as the recorded history's next token does."""
    hist, run = pointgoal
    cfg = DiagnoseConfig(device="cpu", episodes=1, sample=False)
    held = diag._load(cfg, run, hist)
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    actor = diag._model_actor

    def recording(*args, **kwargs):
        act = actor(*args, **kwargs)

        def f(feats):
            out = act(feats)
            seen.append((feats.copy(), out.copy()))
            return out

        return f

    monkeypatch.setattr(diag, "_model_actor", recording)
    layout = held.model.layout
    prompts = [diag._prompt(h, 3, where, False, layout) for h in held.histories]
    diag._returns(held, held.tasks, prompts, cfg, sample=False)
    feats = np.stack([f for f, _ in seen], axis=1)
    acts = np.stack([a for _, a in seen], axis=1)
    plen = len(prompts[0][0])
    assert feats.shape[1] == plen + 20  # one PointGoal episode after the prompt
    np.testing.assert_array_equal(feats[:, :plen], np.stack([p[0] for p in prompts]))
    with torch.inference_mode():
        mean, _ = held.model.split(held.model(torch.from_numpy(feats)))
    np.testing.assert_allclose(mean.numpy(), acts, atol=1e-5)
    sl = layout.slices
    prev = slice(sl["prev_obs"].start, sl["prev_next_obs"].stop)
    h = held.histories[0]
    if where == "first":  # the recorded token after the prompt: reset obs + last transition
        ref, _ = diag.history_tokens(h, 0, plen + 1)
        np.testing.assert_array_equal(feats[0, plen, prev], ref[-1, prev])
        assert feats[0, plen, sl["flags"]].tolist() == ref[-1, sl["flags"]].tolist() == [1, 0]
    else:
        np.testing.assert_array_equal(feats[0, plen, sl["prev_action"]], h.action[-1])
