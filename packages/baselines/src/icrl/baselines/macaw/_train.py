"""MACAW meta-training on learning histories: buffers, run folder, checkpoint/resume, progress."""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from icrl.baselines._common import (
    load_torch,
    run_dir_lock,
)
from icrl.baselines.macaw._algo import Macaw, make_optimizers, meta_step
from icrl.baselines.macaw._config import MacawConfig, MacawTrainConfig
from icrl.baselines.macaw._data import MacawBuffer, buffer_from_history
from icrl.histories.runtime import (
    atomic_write,
    config_changes,
    describe_changes,
    resolve_device,
)

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
METRICS = "metrics.csv"


@dataclass(frozen=True)
class TaskData:
    """Train buffers and what evaluation needs to know about them."""

    buffers: list[MacawBuffer]
    names: list[str]
    family: str
    action_low: np.ndarray
    action_high: np.ndarray
    task_values: list[dict[str, Any]] = field(default_factory=list)
    """The tasks as ``task.to_dict()`` (so evaluation can refuse train tasks)."""


def history_buffer(
    h: Any, cfg: MacawConfig, low: np.ndarray, high: np.ndarray, source: str
) -> MacawBuffer:
    """A task's MACAW buffer, with the data settings of `cfg` (discount, skip, bootstrap)."""
    return buffer_from_history(
        h,
        gamma=cfg.gamma,
        skip=cfg.transition_skip,
        action_low=low,
        action_high=high,
        official_terminal_bootstrap=cfg.official_terminal_bootstrap,
        source=source,
    )


def env_action_bounds(family: str) -> tuple[np.ndarray, np.ndarray]:
    """The action box of a family's env (histories store actions as sent to the env)."""
    from icrl.baselines._eval import action_bounds
    from icrl.metaenvs import make_env

    env = make_env(family)
    try:
        return action_bounds(env)
    finally:
        env.close()


def load_task_buffers(path: Path, tasks: tuple[str, ...] | None, cfg: MacawConfig) -> TaskData:
    """Build one MACAW buffer per task of a histories file (every `transition_skip`-th row)."""
    from icrl.histories import HistoryFile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"histories file {path} does not exist; generate it first")
    hf = HistoryFile(path)
    names = list(hf.tasks) if tasks is None else list(tasks)
    missing = sorted(set(names) - set(hf.tasks))
    if missing:
        raise ValueError(f"{path}: tasks {missing} are not in the file (it has {list(hf.tasks)})")
    if not names:
        raise ValueError(f"{path}: no tasks to train on")
    histories = [hf.history(n) for n in names]
    families = {h.family for h in histories}
    if len(families) != 1:
        raise ValueError(f"{path}: tasks mix env families {sorted(families)}; use one family")
    family = families.pop()
    low, high = env_action_bounds(family)
    buffers = [
        history_buffer(h, cfg, low, high, f"{path}:{name}")
        for name, h in zip(names, histories, strict=True)
    ]
    values = [h.task.to_dict() for h in histories]
    return TaskData(buffers, names, family, low, high, values)


def _write_metrics(run_dir: Path, metrics: list[dict[str, float]]) -> None:
    if not metrics:
        return
    buf = io.StringIO()
    # every row's fields, in order: rows resumed from a checkpoint written before a field was
    # added (wall_s) lack it and are written with it empty
    fields = list(dict.fromkeys(k for row in metrics for k in row))
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(metrics)
    # The run's own metrics file is rewritten at each checkpoint (it mirrors the checkpoint).
    atomic_write(run_dir / METRICS, buf.getvalue())


# Fields that may change when a run is resumed (more steps, another device, other logging).
_RESUMABLE = ("steps", "device", "checkpoint_every", "log_every")


def _check_run_config(run_dir: Path, cfg: MacawTrainConfig) -> None:
    path = run_dir / CONFIG
    if path.exists():
        saved = MacawTrainConfig.model_validate_json(path.read_text())
        diff = config_changes(
            saved.model_dump(mode="json"), cfg.model_dump(mode="json"), may_change=_RESUMABLE
        )
        if diff:
            detail = describe_changes(diff, "{field}: {old!r} on disk vs {new!r}", sep=", ")
            raise ValueError(
                f"{run_dir} holds a run with a different config ({path}: {detail}); resume with "
                f"the same config (only {', '.join(_RESUMABLE)} may change) or choose a new "
                "run_dir"
            )
        if saved == cfg:
            return
    atomic_write(path, cfg.model_dump_json(indent=2))


def train_macaw(
    cfg: MacawTrainConfig, *, data: TaskData | None = None, progress: bool = True
) -> Path:
    """Meta-train MACAW for ``cfg.steps`` steps into ``cfg.run_dir``; returns the checkpoint path.

    The train buffers come from ``cfg.histories`` unless `data` is given (buffers built with
    `build_macaw_buffer` from in-memory arrays). A run folder that already holds a checkpoint of
    the same config is resumed exactly (model, optimisers and RNG state); a finished run returns
    at once.
    """
    run_dir = Path(cfg.run_dir)
    # The device and the data are checked before the run folder is written: a wrong histories
    # path must not leave a config.json that refuses the corrected rerun as "another config".
    device = resolve_device(cfg.device)
    if data is None:
        if cfg.histories is None:
            raise ValueError("MacawTrainConfig.histories is None and no in-memory data was given")
        data = load_task_buffers(cfg.histories, cfg.tasks, cfg.algo)
    with run_dir_lock(run_dir):
        _check_run_config(run_dir, cfg)
        return _train_locked(cfg, run_dir, data, device, progress)


def _train_locked(
    cfg: MacawTrainConfig, run_dir: Path, data: TaskData, device: torch.device, progress: bool
) -> Path:
    """The body of `train_macaw`, run while holding the run folder's lock."""
    buffers = [b.to(device) for b in data.buffers]

    torch.manual_seed(cfg.seed)
    obs_dim, act_dim = buffers[0].obs.shape[1], buffers[0].action.shape[1]
    model = Macaw(obs_dim, act_dim, cfg.algo).to(device)
    optimizers = make_optimizers(model)
    rng = np.random.default_rng(cfg.seed)
    step, metrics = 0, []
    ckpt_path = run_dir / CHECKPOINT
    if ckpt_path.exists():
        ckpt = load_torch(ckpt_path, map_location=device)
        model.load_state_dict(ckpt["model"])
        for k, opt in optimizers.items():
            opt.load_state_dict(ckpt["optimizers"][k])
        rng.bit_generator.state = ckpt["rng"]
        torch.set_rng_state(ckpt["torch_rng"])
        step, metrics = ckpt["step"], ckpt["metrics"]

    meta = {
        "family": data.family,
        "tasks": data.names,
        "task_values": data.task_values,
        "obs_dim": obs_dim,
        "act_dim": act_dim,
        "action_low": data.action_low.tolist(),
        "action_high": data.action_high.tolist(),
        "seed": cfg.seed,
        "algo": cfg.algo.model_dump(mode="json"),
    }

    def save() -> None:
        state = {
            "step": step,
            "model": model.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
            "rng": rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "metrics": metrics,
            "meta": meta,
        }
        atomic_write(ckpt_path, lambda p: torch.save(state, p))
        _write_metrics(run_dir, metrics)

    bar = tqdm(total=cfg.steps, initial=step, desc="MACAW meta-train", disable=not progress)
    # training wall-clock, summed over resumes (as MQL's): what the meta-step costs on a machine
    # is read from here, apart from the evaluation that follows in the same stage
    t0 = time.perf_counter() - float(metrics[-1].get("wall_s", 0.0) if metrics else 0.0)
    while step < cfg.steps:
        stats = meta_step(model, optimizers, buffers, rng)
        step += 1
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            stats = {k: float(v) for k, v in stats.items()}  # the one wait for the device
            metrics.append({"step": step, **stats, **learned_rates(model),
                            "wall_s": time.perf_counter() - t0})  # fmt: skip
            bar.set_postfix(v=f"{stats['value_outer']:.3g}", pi=f"{stats['policy_outer']:.3g}")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            save()
    bar.close()
    if not ckpt_path.exists():
        save()
    return ckpt_path


def learned_rates(model: Macaw) -> dict[str, float]:
    """Mean learned inner rates and the advantage coefficient, after softplus."""
    sp = torch.nn.functional.softplus
    with torch.no_grad():
        return {
            "inner_value_lr": sp(torch.stack(list(model.value_lr_raw))).mean().item(),
            "inner_policy_lr": sp(torch.stack(list(model.policy_lr_raw))).mean().item(),
            "adv_coef": sp(model.adv_coef_raw).item(),
        }


def _read_checkpoint(path: Path, device: str) -> dict[str, Any]:
    path = Path(path)
    ckpt_path = path / CHECKPOINT if path.is_dir() else path
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"no MACAW checkpoint at {ckpt_path}; train the run first")
    return load_torch(ckpt_path, map_location=resolve_device(device))


def macaw_meta(path: Path) -> dict[str, Any]:
    """A trained run's metadata (family, dims, algo, seed, step) without building its model,
    which would draw from torch's global generator (icrl.apps reads it beside an AD training)."""
    ckpt = _read_checkpoint(path, "cpu")
    return {**ckpt["meta"], "step": ckpt["step"]}


def load_macaw(path: Path, device: str = "cpu") -> tuple[Macaw, dict[str, Any]]:
    """A trained model and its run metadata from a run folder or a checkpoint file."""
    ckpt = _read_checkpoint(path, device)
    meta = ckpt["meta"]
    model = Macaw(meta["obs_dim"], meta["act_dim"], MacawConfig(**meta["algo"]))
    model.load_state_dict(ckpt["model"])
    model.to(resolve_device(device)).eval()
    return model, {**meta, "step": ckpt["step"]}


def read_run_meta(run_dir: Path) -> dict[str, Any]:
    """The resolved training config of a run folder, as a dict."""
    return json.loads((Path(run_dir) / CONFIG).read_text())
