"""The AD trainer: MSE on actions (paper Eq. 6), AdamW, warm-up + cosine, exact resume, DDP."""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from icrl.histories import runtime
from icrl.histories.runtime import atomic_write

from ._checkpoint import (
    DATA_RECORD,
    CheckpointError,
    checkpoint_path,
    current_config_form,
    list_checkpoints,
    load_checkpoint,
    load_weights,
    record_data,
    run_diff,
    save_checkpoint,
)
from ._config import TrainConfig, device_type_error
from ._data import ContextDataset, StepBatchSampler, collate_contexts
from ._lock import LOCK_NAME, DirLock
from ._model import ADModel, NormStats

__all__ = ["NonFiniteLossError", "RunDirError", "TrainResult", "train"]


class NonFiniteLossError(RuntimeError):
    """The loss or gradient became NaN/inf; the run stopped and kept its last good checkpoint."""


class RunDirError(ValueError):
    """The run directory holds a different run; the message says what to do."""


@dataclass(frozen=True)
class TrainResult:
    """Where a finished (or stopped) run left its outputs."""

    run_dir: Path
    step: int
    checkpoint: Path
    loss: float


@dataclass(frozen=True)
class _Dist:
    rank: int
    world: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_spec: str) -> _Dist:
    """Join the torchrun process group when WORLD_SIZE > 1 (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return _Dist(0, 1, 0)
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device_spec != "cpu"
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    """ "auto" -> CUDA (the local rank's GPU) when available, else CPU.

    Raises ValueError for a device that is not "auto", "cpu", "cuda[:N]" or "mps", or that this
    machine does not have (rather than failing later inside torch): icrl.ad's device kinds, then
    icrl.histories.runtime.resolve_device.
    """
    problem = device_type_error(spec)
    if problem:
        raise ValueError(problem)
    return runtime.resolve_device(spec, local_rank=local_rank)


def _prepare_run_dir(run_dir: Path, cfg: TrainConfig) -> bool:
    """Create the run directory and its config.json, or check that it holds this same run;
    True if config.json differs in MOVABLE_FIELDS or only in its form (an older icrl.ad's):
    it is rewritten once the data is checked."""
    resolved = cfg.model_dump(mode="json")
    path = run_dir / "config.json"
    if path.exists():
        saved = json.loads(path.read_text())
        diff = sorted(run_diff(current_config_form(saved), resolved))
        if diff:
            raise RunDirError(
                f"{run_dir} holds a run with a different config (fields {diff}); "
                "use a new run directory, or the same config to resume"
            )
        return saved != resolved
    if run_dir.exists() and any(p.name != LOCK_NAME for p in run_dir.iterdir()):
        raise RunDirError(
            f"{run_dir} is not empty and has no config.json; refusing to write a run into it"
        )
    atomic_write(path, json.dumps(resolved, indent=2))
    return False


def _record_run(run_dir: Path, cfg: TrainConfig, norm: NormStats, moved: bool) -> None:
    """After the resume check passed: config.json names where the files are now (a moved run)
    and data.json holds the data's fingerprint (written once; older runs get it now)."""
    if moved:
        atomic_write(run_dir / "config.json", json.dumps(cfg.model_dump(mode="json"), indent=2))
    if not (run_dir / DATA_RECORD).is_file():
        record_data(run_dir, norm.to_dict())


def _resume_checkpoint(
    run_dir: Path, config: TrainConfig, norm: NormStats, device: torch.device, main: bool
) -> dict[str, Any] | None:
    """The newest readable checkpoint of this run, or None for a fresh run.

    An unreadable newer checkpoint (truncated by a copy or a full disk) is skipped with a warning
    naming it, so that it does not block resuming from an older good one; it is overwritten when
    training reaches its step again. A checkpoint written by another config is refused: it is not
    damaged but misplaced, and resuming from it would mix two runs.
    """
    found = list_checkpoints(run_dir)
    resolved = config.model_dump(mode="json")
    skipped: list[str] = []
    for _, path in reversed(found):
        try:
            ckpt = load_checkpoint(path, map_location=device)
        except CheckpointError as err:
            skipped.append(str(err))
            if main:
                print(f"warning: {err}; skipping it", file=sys.stderr)
            continue
        diff = sorted(run_diff(resolved, current_config_form(ckpt.get("config"))))
        if not diff and ckpt.get("norm") != norm.to_dict():
            # Same config but other data: the histories were replaced, not just moved.
            diff = ["the histories' content (their normalisation statistics)"]
        if diff:
            raise RunDirError(
                f"checkpoint {path} was written by another run than {run_dir}/config.json (fields "
                f"{diff} differ); move it out of {run_dir / 'checkpoints'} to resume this run"
            )
        if skipped and main:
            print(f"warning: resuming from {path} (step {ckpt['step']})", file=sys.stderr)
        return ckpt
    if skipped:
        raise RunDirError(
            f"no checkpoint of {run_dir} can be read ({skipped[0]}); remove "
            f"{run_dir / 'checkpoints'} to train from scratch"
        )
    return None


def _lr_lambda(total: int, warmup: int, min_ratio: float):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices only; biases, norms and parameters marked _no_weight_decay are not decayed."""
    decay, plain = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim < 2 or getattr(p, "_no_weight_decay", False)
        (plain if skip else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": plain, "weight_decay": 0.0},
    ]


def _rng_state() -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def token_noise_scale(
    model: ADModel, config: TrainConfig, device: torch.device
) -> torch.Tensor | None:
    """Per-feature σ of the training token noise: `token_noise_std` everywhere, combined in
    quadrature with `action_token_noise_std` on the previous-action slots (raw action units:
    actions are not normalised); None when both are 0 (decided once here: a test of the tensor
    in every step would wait for the GPU)."""
    if config.token_noise_std == 0 and config.action_token_noise_std == 0:
        return None
    scale = torch.full((model.layout.width,), config.token_noise_std, device=device)
    both = (config.token_noise_std**2 + config.action_token_noise_std**2) ** 0.5
    scale[model.layout.slices["prev_action"]] = both
    return scale


def _noise(
    shape: torch.Size,
    std: torch.Tensor | None,
    seed: int,
    step: int,
    offset: int,
    device: torch.device,
) -> torch.Tensor | None:
    """Token noise of per-feature σ `std` (None: no noise), each context's a pure function of
    (seed, step, its index in the global batch): exact under resume, and the same whether the
    batch is on one process or split over ranks."""
    if std is None:
        return None
    out = torch.empty(shape, device=device)
    g = torch.Generator(device=device)
    for j in range(shape[0]):
        g.manual_seed(int(np.random.SeedSequence([seed, step, offset + j, 2]).generate_state(1)[0]))
        out[j] = torch.randn(shape[1:], generator=g, device=device)
    return out * std


def _masked_mean(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (per_token * mask).sum() / mask.sum().clamp_min(1)


def action_losses(
    mean: torch.Tensor,
    log_std: torch.Tensor | None,
    target: torch.Tensor,
    mask: torch.Tensor,
    target_var: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(training loss, MSE of the mean) over the masked tokens.

    The loss is the MSE itself for an MSE head, and the Gaussian negative log-likelihood per
    action dimension (without the constant log √(2π)) for a Gaussian head. With `target_var`
    (action_target "denoised": `target` is the executed action's mean, this its variance) both
    are averaged over the executed action's noise: the squared error becomes
    (mean - target)² + target_var, its expectation, so the MSE stays comparable with runs on
    executed actions.
    """
    sq = (mean.float() - target) ** 2
    if target_var is not None:
        sq = sq + target_var
    mse = _masked_mean(sq.mean(-1), mask)
    if log_std is None:
        return mse, mse
    nll = 0.5 * sq * torch.exp(-2.0 * log_std) + log_std
    return _masked_mean(nll.mean(-1), mask), mse


class _Metrics:
    """metrics.jsonl (+ TensorBoard) on rank 0; on resume, drops records past the resumed step."""

    def __init__(self, run_dir: Path, start_step: int, tensorboard: bool) -> None:
        self.path = run_dir / "metrics.jsonl"
        if self.path.exists():
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if line and json.loads(line)["step"] <= start_step
            ]
            atomic_write(self.path, "".join(line + "\n" for line in kept))
        self._file = self.path.open("a")
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(run_dir / "tb"), purge_step=start_step + 1)

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, int | float):
                    self._tb.add_scalar(f"train/{k}", v, record["step"])

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def _batches(
    dataset: ContextDataset, sampler: StepBatchSampler, workers: int, device: torch.device
) -> Iterable[dict[str, Any]]:
    """The training batches in the sampler's order: cut and padded on the CPU by DataLoader
    workers (`workers` > 0), or, with none, on the training device from histories copied there
    once. Workers pass each padded batch through shared memory (small HalfCheetahVel: 8 x 7.6k
    tokens x 60 features, ~15 MB), which costs more than cutting it in place
    (benchmarks/batches.py)."""
    if workers > 0:
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collate_contexts,
            num_workers=workers,
            pin_memory=device.type == "cuda",
            persistent_workers=False,
        )
    held = dataset.held_on(device)
    return (collate_contexts([held[key] for key in keys]) for keys in sampler)


def train(
    config: TrainConfig,
    run_dir: Path,
    *,
    stop_after: int | None = None,
    dataset: ContextDataset | None = None,
) -> TrainResult:
    """Train an AD model; resumes exactly from the newest checkpoint in `run_dir` if there is one.

    Under `torchrun --nproc-per-node N`, each process calls this and the batch is split over ranks.
    `stop_after` stops (with a checkpoint) once that many steps are done in total, as if killed.
    `dataset` replaces reading `config.data.paths` (histories already in memory, e.g.
    `ContextDataset.from_histories`); its context settings must match `config.data`.
    """
    run_dir = Path(run_dir)
    ddp = _init_distributed(config.device)
    device = resolve_device(config.device, ddp.local_rank)
    d = config.data
    if dataset is None:
        dataset = ContextDataset.from_files(
            d.paths, d.tasks, context=d.context, seed=config.seed,
            action_target=config.action_target,
        )  # fmt: skip
    elif (dataset.context, dataset.seed, dataset.action_target) != (
        d.context, config.seed, config.action_target
    ):  # fmt: skip
        raise ValueError(
            f"the dataset's (context, seed, action_target) = ({dataset.context}, "
            f"{dataset.seed}, {dataset.action_target!r}) differ from the config's ({d.context}, "
            f"{config.seed}, {config.action_target!r})"
        )
    norm = dataset.norm
    info = dataset.info
    max_len = None
    if config.model.kind == "transformer":
        # Room for the evaluator's default rollout too (whole episodes covering the context).
        max_len = config.model.max_len or max(
            info.context_len, info.context_episodes * info.episode_length
        )

    torch.manual_seed(config.seed)
    model = ADModel(config.model, info.obs_dim, info.act_dim, norm, max_len).to(device)
    optim = torch.optim.AdamW(
        _param_groups(model, config.optim.weight_decay),
        lr=config.optim.lr,
        betas=config.optim.betas,
        eps=config.optim.eps,
    )
    per_epoch = math.ceil(dataset.items_per_epoch / config.batch_size)
    total = config.max_steps or max(1, math.ceil(config.epochs * per_epoch))
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, _lr_lambda(total, config.optim.warmup_steps, config.optim.min_lr_ratio)
    )

    # One writer per run directory: a second process training into it is refused (the lock
    # is released on exit, also on a kill). Rank 0 is the only writer under DDP.
    with DirLock(run_dir, "training") if ddp.main else nullcontext():
        # Only now, with the data read and the model built: a bad path or mismatched histories must
        # not leave a run directory whose config.json would refuse the corrected rerun.
        moved = _prepare_run_dir(run_dir, config) if ddp.main else False
        if ddp.world > 1:
            dist.barrier()
        start, last_path = 0, None
        ckpt = _resume_checkpoint(run_dir, config, norm, device, ddp.main)
        if ddp.main:
            _record_run(run_dir, config, norm, moved)
        if ckpt is not None:
            load_weights(model, ckpt)
            optim.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            _set_rng_state(ckpt["rng"])
            start, last_path = ckpt["step"], Path(ckpt["path"])
        stop = total if stop_after is None else min(total, stop_after)

        net = DistributedDataParallel(model) if ddp.world > 1 else model
        sampler = StepBatchSampler(
            dataset.items_per_epoch,
            config.batch_size,
            config.seed,
            start,
            stop,
            ddp.rank,
            ddp.world,
        )
        loader = _batches(dataset, sampler, d.num_workers, device)
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if config.bf16 and device.type == "cuda"
            else nullcontext()
        )
        meta = {
            "config": config.model_dump(mode="json"),
            "data": asdict(info),
            "norm": norm.to_dict(),
            "max_len": max_len,
            "sources": [str(p) for p in d.paths],
        }

        def save(step: int) -> Path:
            path = checkpoint_path(run_dir, step)
            if ddp.main:
                payload = {
                    **meta,
                    "step": step,
                    "epoch": step / per_epoch,
                    "model": model.state_dict(),
                    "optimizer": optim.state_dict(),
                    "scheduler": sched.state_dict(),
                    "rng": _rng_state(),
                }
                save_checkpoint(path, payload)
                # Prune among the steps up to this one: an unreadable newer checkpoint skipped on
                # resume must not count as one of the kept ones (it is overwritten later).
                done = [p for s, p in list_checkpoints(run_dir) if s <= step]
                for old in done[: -config.keep_checkpoints]:
                    old.unlink()
            if ddp.world > 1:
                dist.barrier()
            return path

        metrics = _Metrics(run_dir, start, config.tensorboard) if ddp.main else None
        bar = tqdm(
            total=stop, initial=start, disable=not (ddp.main and config.progress), desc="train AD"
        )
        loss_value = float("nan")
        noise_scale = token_noise_scale(model, config, device)
        net.train()
        tic, tokens = time.perf_counter(), 0
        try:
            for step, batch in zip(range(start, stop), loader, strict=True):
                feats = batch["features"].to(device, non_blocking=True)
                if d.reward_ablation == "zero":
                    feats[..., model.layout.slices["prev_reward"]] = 0.0
                targets = batch["targets"].to(device, non_blocking=True)
                var = batch.get("target_var")
                var = None if var is None else var.to(device, non_blocking=True)
                mask = batch["mask"].to(device, non_blocking=True)
                offset = ddp.rank * (config.batch_size // ddp.world)  # first context's global index
                noise = _noise(feats.shape, noise_scale, config.seed, step, offset, device)
                with autocast:
                    out = net(feats, noise)
                loss, mse = action_losses(*model.split(out), targets, mask, var)
                optim.zero_grad(set_to_none=True)
                loss.backward()
                clip = config.optim.grad_clip or float("inf")
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                check = torch.stack([loss.detach(), grad_norm.detach().float(), mse.detach()])
                if ddp.world > 1:
                    dist.all_reduce(check)
                    check /= ddp.world
                loss_value, gn, mse_value = check.tolist()
                if not (math.isfinite(loss_value) and math.isfinite(gn)):
                    where = ", ".join(
                        f"{t}@{s}" for t, s in zip(batch["task"], batch["start"], strict=True)
                    )
                    what = "loss" if not math.isfinite(loss_value) else "gradient norm"
                    raise NonFiniteLossError(
                        f"non-finite {what} "
                        f"at step {step} (loss={loss_value}, grad_norm={gn}); batch on rank "
                        f"{ddp.rank}: contexts [{where}] (task@start); the last good checkpoint is "
                        f"{last_path or 'none (no checkpoint was written yet)'}"
                    )
                optim.step()
                sched.step()
                done = step + 1
                tokens += int(mask.sum()) * ddp.world
                bar.update(1)
                if metrics is not None and (done % config.log_every == 0 or done == stop):
                    elapsed = time.perf_counter() - tic
                    metrics.write(
                        {
                            "step": done,
                            "epoch": round(done / per_epoch, 4),
                            "loss": loss_value,
                            "mse": mse_value,
                            "grad_norm": gn,
                            "lr": sched.get_last_lr()[0],
                            "tokens_per_s": tokens / max(elapsed, 1e-9),
                        }
                    )
                    tic, tokens = time.perf_counter(), 0
                    bar.set_postfix(loss=f"{loss_value:.4g}")
                if done % config.checkpoint_every == 0 or done == stop:
                    last_path = save(done)
        finally:
            bar.close()
            if metrics is not None:
                metrics.close()
        if last_path is None or start >= stop:
            last_path = last_path or save(start)
        return TrainResult(run_dir, max(start, stop), Path(last_path), loss_value)
