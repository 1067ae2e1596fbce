"""Presets of the reproduce pipeline, per env family: tiny (CPU), small (one GPU), paper.

Each function turns a ``ReproduceConfig`` into the resolved config of one stage, as the package's
own config object: the preset's values first, then every field the user set.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from icrl.ad import EvalConfig, TrainConfig
from icrl.ad import preset as ad_preset
from icrl.baselines import MacawConfig, MacawEvalConfig, MacawTrainConfig, MQLConfig, mql_preset
from icrl.histories import PRESETS as SOURCE_PRESETS
from icrl.histories import GenerateConfig

from ._config import ReproduceConfig, parse_context

# tiny: a source run short enough for a 2-core CPU (the histories are barely learning runs).
_TINY_STEPS = {"ReacherGoal": 1_100, "PusherGoal": 2_000, "HalfCheetahVel": 2_100, "AntDir": 2_100}
# small: sized for one GPU machine (16 cores) in well under an hour per family.
_SMALL_TASKS = {"ReacherGoal": 35, "PusherGoal": 20, "HalfCheetahVel": 15, "AntDir": 15}
_SMALL_STEPS = {
    "ReacherGoal": 30_400,
    "PusherGoal": 100_000,
    "HalfCheetahVel": 60_400,
    "AntDir": 40_400,
}


def seeds(cfg: ReproduceConfig) -> list[int]:
    """Training seeds of every method (tiny: 2 to stay within minutes; otherwise 3)."""
    return cfg.seeds or ([0, 1] if cfg.preset == "tiny" else [0, 1, 2])


def contexts(cfg: ReproduceConfig) -> list[str]:
    """AD-Mamba's training contexts; the first is Fig. 1's."""
    return cfg.contexts or ["full", "episodes:2" if cfg.preset == "tiny" else "episodes:4"]


def _algorithm(family: str, cfg: ReproduceConfig) -> dict[str, Any]:
    algo = SOURCE_PRESETS[family].algorithm.model_dump()
    if cfg.preset == "tiny":
        algo["hidden_sizes"] = (32, 32)
        if algo["kind"] == "ppo":
            algo["steps_per_env"] = 100
        else:
            algo.update(batch_size=64, warmup_steps=100)
    opts = cfg.histories
    if opts.hidden_sizes is not None:
        algo["hidden_sizes"] = opts.hidden_sizes
    if opts.batch_size is not None:
        algo["batch_size"] = opts.batch_size
    return algo


def histories_config(family: str, cfg: ReproduceConfig) -> GenerateConfig:
    """The source-RL generation config of one family."""
    data: dict[str, Any] = {"family": family, "algorithm": _algorithm(family, cfg), "seed": 0}
    if cfg.preset == "tiny":
        data.update(tasks=4, steps_per_task=_TINY_STEPS[family], k=4, workers=2)
    elif cfg.preset == "small":
        data.update(tasks=_SMALL_TASKS[family], steps_per_task=_SMALL_STEPS[family])
        data["workers"] = os.cpu_count() or 1
    else:
        data["workers"] = os.cpu_count() or 1
    opts = cfg.histories.model_dump(exclude={"hidden_sizes", "batch_size"}, exclude_none=True)
    data.update(opts)
    data["progress"] = cfg.progress
    return GenerateConfig.model_validate(data)


def ad_config(
    family: str, backbone: str, context: str, seed: int, histories: Path, cfg: ReproduceConfig
) -> TrainConfig:
    """One AD training run's config (icrl.ad preset + context + seed + user overrides)."""
    o = cfg.ad
    pairs = {f"data.{k}": v for k, v in parse_context(context).items()}
    pairs.update(seed=seed, progress=cfg.progress)
    if cfg.preset == "tiny":
        pairs["max_steps"] = 40  # plumbing only: keeps the whole tiny run within minutes
    named = {
        "max_steps": o.max_steps,
        "epochs": o.epochs,
        "batch_size": o.batch_size,
        "optim.lr": o.lr,
        "model.d_model": o.d_model,
        "model.n_layers": o.n_layers,
        "device": o.device,
    }
    pairs.update({k: v for k, v in named.items() if v is not None})
    overrides = [f"{k}={_json(v)}" for k, v in pairs.items()] + list(o.overrides)
    return ad_preset(family, backbone, cfg.preset, histories=histories, overrides=overrides)


def _json(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int | float) else f'"{value}"'


def eval_config(histories: Path, episodes: int | None, cfg: ReproduceConfig) -> EvalConfig:
    """In-context evaluation config, shared by every AD model of a family."""
    o = cfg.evaluate
    return EvalConfig(
        n_tasks=o.n_tasks or (3 if cfg.preset == "tiny" else 10),
        episodes=o.episodes or episodes,
        device=o.device or "auto",
        histories=histories,
        reference_episodes=1 if cfg.preset == "tiny" else 3,
        asynchronous=cfg.preset != "tiny",
        progress=cfg.progress,
    )


def macaw_configs(
    family: str, histories: Path, run_dir: Path, episodes: int, cfg: ReproduceConfig
) -> tuple[MacawTrainConfig, MacawEvalConfig]:
    """MACAW's training (offline, on the histories) and evaluation configs."""
    if cfg.preset == "tiny":
        algo = MacawConfig(
            hidden_sizes=(32, 32), latent_dim=8, advantage_head=(8,), batch_size=64,
            inner_batch_size=64, task_batch_size=2, transition_skip=1,
        )  # fmt: skip
        steps = 100
    else:
        algo, steps = MacawConfig(), (20_000 if cfg.preset == "small" else 500_000)
    train = MacawTrainConfig(
        histories=histories,
        run_dir=run_dir,
        algo=algo,
        steps=cfg.macaw.steps or steps,
        checkpoint_every=max(50, (cfg.macaw.steps or steps) // 10),
        device=_device(cfg.ad.device),
    )
    evaluation = MacawEvalConfig(
        family=family,
        n_test_tasks=cfg.evaluate.n_tasks or (3 if cfg.preset == "tiny" else 10),
        episodes=episodes,
        device=_device(cfg.evaluate.device),
    )
    return train, evaluation


def mql_config(family: str, episodes: int, cfg: ReproduceConfig) -> MQLConfig:
    """MQL's config: its preset at this size, evaluated on the same test tasks and episodes."""
    over: dict[str, Any] = {
        "n_test_tasks": cfg.evaluate.n_tasks or (3 if cfg.preset == "tiny" else 10),
        "adapt_rounds": max(episodes - 1, 1),
        "device": _device(cfg.ad.device),
    }
    if cfg.preset == "tiny":
        over.update(total_env_steps=1_200, burn_in=400)
    if cfg.mql.total_env_steps is not None:
        over["total_env_steps"] = cfg.mql.total_env_steps
    return mql_preset(family, cfg.preset, **over)


def _device(device: str | None) -> str:
    if device in (None, "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
