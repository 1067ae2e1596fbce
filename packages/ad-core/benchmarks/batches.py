"""Training batches cut by DataLoader workers on the CPU vs on the training device, and what that
does to a whole AD training step.

`train` builds each batch one of two ways (`data.num_workers`): N > 0 worker processes cut and
pad the contexts on the CPU and hand each padded batch to the training process through shared
memory (then a host-to-device copy); 0 copies every history to the training device once and
cuts each batch there, in the training process. Both give the same batches
(tests/test_ddp_and_data.py). This prints, for histories of a family's real shapes (random
values: speed does not depend on them), ms a batch both ways and, with `--train-steps`, ms a
training step of the family's preset model both ways, and the ratios.

    uv run packages/ad-core/benchmarks/batches.py --family HalfCheetahVel --size small
    uv run packages/ad-core/benchmarks/batches.py --device cpu --train-steps 0
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from icrl.ad import ContextDataset, TrainConfig, preset_dict, train
from icrl.ad._data import StepBatchSampler
from icrl.ad._train import _batches, resolve_device
from icrl.histories import History
from icrl.metaenvs import episode_length, make_env, train_tasks


def _histories(family: str, tasks: int, episodes: int) -> dict[str, History]:
    """`tasks` histories of `episodes` full-length episodes with the family's dimensions."""
    env = make_env(family)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    env.close()
    length = episode_length(family)
    n = episodes * length
    rng = np.random.default_rng(0)
    out = {}
    for i, task in enumerate(train_tasks(family)[:tasks]):
        out[f"task_{i}"] = History(
            obs=rng.normal(size=(n, obs_dim)).astype(np.float32),
            action=rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32),
            reward=rng.normal(size=n).astype(np.float32),
            next_obs=rng.normal(size=(n, obs_dim)).astype(np.float32),
            terminated=np.zeros(n, bool),
            truncated=np.tile(np.arange(length) == length - 1, episodes),
            episode=np.repeat(np.arange(episodes), length),
            step=np.tile(np.arange(length, dtype=np.int32), episodes),
            warmup=np.zeros(n, bool),
            task=task,
            family=family,
            name=f"task_{i}",
        )
    return out


def _batch_ms(ds: ContextDataset, args, device: torch.device, workers: int) -> float:
    """ms a batch over `args.batches` batches after one warm-up, each ready on `device`."""
    sampler = StepBatchSampler(ds.items_per_epoch, args.batch_size, 0, 0, args.batches + 1)
    it = iter(_batches(ds, sampler, workers, device))  # train's own two ways
    next(it)
    start = time.perf_counter()
    for b in it:
        # on the device and ready, as the training step needs it (no-ops for a held batch)
        on = [v.to(device, non_blocking=True) for v in b.values() if torch.is_tensor(v)]
        on[0].sum().item()
    return (time.perf_counter() - start) / args.batches * 1e3


def _step_ms(ds: ContextDataset, args, workers: int) -> float:
    """ms a training step of the preset model: a run of 5 + `args.train_steps` steps less one of
    5 (train's start-up and first steps, which include allocating and kernel selection), after
    one discarded run that warms the process up."""
    base = preset_dict(args.family, args.backbone, args.size)
    base.pop("epochs", None)
    base["data"] = {**base["data"], "paths": ["in-memory"], "num_workers": workers}
    base.update(device=args.device, progress=False, tensorboard=False, checkpoint_every=10**6)

    def run(steps: int) -> float:
        cfg = TrainConfig.model_validate({**base, "max_steps": steps})
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            train(cfg, Path(tmp) / "run", dataset=ds)
            return time.perf_counter() - start

    run(5)
    short = run(5)
    return (run(5 + args.train_steps) - short) / args.train_steps * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", default="HalfCheetahVel")
    ap.add_argument("--tasks", type=int, default=15, help="histories (small HalfCheetahVel: 15)")
    ap.add_argument("--episodes", type=int, default=38,
                    help="kept episodes a history (small HalfCheetahVel: 38)")  # fmt: skip
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--batches", type=int, default=100, help="batches timed")
    ap.add_argument("--workers", type=int, default=2, help="the CPU path's DataLoader workers")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--backbone", default="mamba", choices=["mamba", "transformer"])
    ap.add_argument("--size", default="small", choices=["tiny", "small", "paper"])
    ap.add_argument("--train-steps", type=int, default=200,
                    help="training steps timed each way (0: batches only)")  # fmt: skip
    args = ap.parse_args()
    device = resolve_device(args.device)
    ds = ContextDataset.from_histories(_histories(args.family, args.tasks, args.episodes))
    print(f"{args.family}: {args.tasks} histories x {ds.info.context_len} tokens, batch "
          f"{args.batch_size}, device {device}, {os.cpu_count()} CPUs, torch threads "
          f"{torch.get_num_threads()}")  # fmt: skip
    cpu = _batch_ms(ds, args, device, args.workers)
    held = _batch_ms(ds, args, device, 0)
    print(f"batch, {args.workers} DataLoader workers: {cpu:8.2f} ms")
    print(f"batch, cut on {device.type}:           {held:8.2f} ms   ({cpu / held:.1f}x)")
    if args.train_steps:
        a = _step_ms(ds, args, args.workers)
        b = _step_ms(ds, args, 0)
        print(f"{args.size} {args.backbone} training step, {args.workers} workers: {a:8.2f} ms")
        print(f"{args.size} {args.backbone} training step, cut on {device.type}: {b:8.2f} ms"
              f"   ({a / b:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
