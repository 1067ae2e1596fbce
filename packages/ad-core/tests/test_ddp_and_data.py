"""DDP on 2 CPU processes (gloo, torchrun) and the data pipeline under DataLoader workers."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import torch
from torch.utils.data import DataLoader

from icrl.ad import ContextDataset, WindowContext, train
from icrl.ad._checkpoint import load_checkpoint
from icrl.ad._data import StepBatchSampler, collate_contexts
from icrl.ad._train import _batches


def test_ddp_two_cpu_processes_match_one_process(tmp_path, histories_file, tiny) -> None:
    cfg = tiny([histories_file], data__context="window", data__window=40, batch_size=4,
               max_steps=6, checkpoint_every=3)  # fmt: skip
    (tmp_path / "cfg.json").write_text(cfg.model_dump_json())
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "icrl.ad", "train", "--config", str(tmp_path / "cfg.json"),
        "--run-dir", str(tmp_path / "ddp"),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = train(cfg, tmp_path / "single")
    a = load_checkpoint(tmp_path / "ddp")
    b = load_checkpoint(single.checkpoint)
    assert a["step"] == b["step"] == 6
    # Each rank holds half of the same global batch; DDP averages the gradients, so the result
    # equals one process on the whole batch up to float summation order.
    for k, v in b["model"].items():
        torch.testing.assert_close(a["model"][k], v, rtol=1e-4, atol=1e-5, msg=k)


def test_sampler_is_deterministic_and_ranks_split_the_batch() -> None:
    s = StepBatchSampler(n_items=5, batch_size=4, seed=1, start_step=0, stop_step=6)
    assert s.batches_per_epoch == 2
    ranks = [StepBatchSampler(5, 4, 1, 0, 6, rank=r, world=2) for r in range(2)]
    for step in range(6):
        assert ranks[0].keys(step) + ranks[1].keys(step) == s.global_keys(step)
    epoch0 = s.global_keys(0) + s.global_keys(1)
    assert {i for _, i in epoch0} == set(range(5))  # an epoch covers every item
    resumed = StepBatchSampler(5, 4, 1, start_step=3, stop_step=6)
    assert list(resumed) == list(s)[3:]


def test_dataloader_workers_give_the_same_batches(histories_file) -> None:
    ds = ContextDataset.from_files([histories_file], context=WindowContext(window=30), seed=2)
    assert ds.info.family == "ReacherGoal" and ds.info.n_tasks == 2

    def batches(workers: int) -> list[dict]:
        sampler = StepBatchSampler(ds.items_per_epoch, 3, 2, 0, 4)
        loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate_contexts,
                            num_workers=workers)  # fmt: skip
        return list(loader)

    for a, b in zip(batches(0), batches(2), strict=True):
        assert a["task"] == b["task"] and a["start"] == b["start"]
        np.testing.assert_array_equal(a["features"].numpy(), b["features"].numpy())
        assert a["mask"].all()


def test_batches_cut_in_the_training_process_equal_the_workers(histories_file) -> None:
    ds = ContextDataset.from_files([histories_file], context=WindowContext(window=30), seed=2)
    cpu = torch.device("cpu")

    def batches(workers: int) -> list[dict]:
        return list(_batches(ds, StepBatchSampler(ds.items_per_epoch, 3, 2, 0, 5), workers, cpu))

    held, loaded = batches(0), batches(2)
    assert len(held) == len(loaded) == 5
    for a, b in zip(held, loaded, strict=True):
        assert a["task"] == b["task"] and a["start"] == b["start"]
        for k in ("features", "targets", "mask"):
            assert torch.equal(a[k], b[k]), k


def test_training_without_workers_equals_training_with_them(tmp_path, histories_file,
                                                            tiny) -> None:  # fmt: skip
    def weights(workers: int) -> dict:
        cfg = tiny([histories_file], data__num_workers=workers, max_steps=4, checkpoint_every=4)
        return load_checkpoint(train(cfg, tmp_path / f"w{workers}").checkpoint)["model"]

    held, loaded = weights(0), weights(2)
    for k, v in loaded.items():
        assert torch.equal(held[k], v), k
