"""Presets of the reproduce pipeline, per env family: tiny (CPU), small (one GPU), paper.

Each function turns a ``ReproduceConfig`` into the resolved config of one stage, as the package's
own config object: the preset's values first, then every field the user set.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from icrl.ad import (
    Context,
    ContextDataset,
    EpisodesContext,
    EvalConfig,
    FullContext,
    TrainConfig,
    parse_context,
)
from icrl.ad import preset as ad_preset
from icrl.baselines import MacawConfig, MacawEvalConfig, MacawTrainConfig, MQLConfig, mql_preset
from icrl.histories import PRESETS as SOURCE_PRESETS
from icrl.histories import GenerateConfig
from icrl.histories.runtime import describe_validation_error

from ._config import ReproduceConfig

# tiny: a source run short enough for a 2-core CPU (the histories are barely learning runs).
_TINY_STEPS = {"ReacherGoal": 1_100, "PusherGoal": 2_000, "HalfCheetahVel": 2_100, "AntDir": 2_100}
# small: meant for one GPU machine (16 cores) in 25 minutes per family (issue 18; the first GPU
# window measures it).
_SMALL_TASKS = {"ReacherGoal": 35, "PusherGoal": 20, "HalfCheetahVel": 15, "AntDir": 15}
# k of `small` where the paper's would keep too few episodes to learn in context from. Both
# locomotion families have 200-step episodes (paper, Sec. 4; metaenvs.episode_length), so
# `small`'s 60,400 HalfCheetahVel steps are 302 episodes a task, of which the paper's k = 8
# keeps about 37 (7.4k tokens, as long as ReacherGoal's 152 x 50); its 40,400 AntDir steps are
# at least 202 episodes (more where episodes end early), of which the paper's k = 10 would keep
# about 20, hardly more than Fig. 2's 16-episode context: k = 5 keeps at least 40. (Until
# session 14 this assumed 1,000-step episodes and kept every 2nd / every episode: 151
# HalfCheetahVel episodes, a 30k-token context and 4x the baselines' evaluation steps, which
# kept the family over its 25 minutes.)
_SMALL_K = {"AntDir": 5}
_SMALL_STEPS = {
    "ReacherGoal": 30_400,
    "PusherGoal": 100_000,
    "HalfCheetahVel": 60_400,
    "AntDir": 40_400,
}


def seeds(cfg: ReproduceConfig) -> list[int]:
    """Training seeds of every method (tiny: 2 to stay within minutes; otherwise 3)."""
    return cfg.seeds or ([0, 1] if cfg.preset == "tiny" else [0, 1, 2])


def contexts(cfg: ReproduceConfig) -> list[Context]:
    """AD-Mamba's training contexts; the first is Fig. 1's. Beyond `tiny`, Fig. 2 sets the full
    history beside two shorter contexts, the last 16 and the last 4 episodes (the paper's range,
    "from a few episodes to entire (sub-sampled) learning trajectories")."""
    if cfg.contexts:
        return cfg.contexts
    if cfg.preset == "tiny":
        return [FullContext(), EpisodesContext(n_episodes=2)]
    return [FullContext(), EpisodesContext(n_episodes=16), EpisodesContext(n_episodes=4)]


def backbone_contexts(cfg: ReproduceConfig, backbone: str) -> list[Context]:
    """The contexts one backbone trains: AD-Mamba every one (Fig. 2 compares them), the
    transformer Fig. 1's only."""
    return contexts(cfg) if backbone == "mamba" else contexts(cfg)[:1]


# small: the source of the ICRL results (docs/results/ReacherGoal/icrl-record): one SAC update per
# transition (5 per vector step of 5 envs) and an initial temperature of 0.1, instead of the
# paper's 0.2 and 1.
_STRONG_SAC = {"gradient_steps": 5, "init_alpha": 0.1}


def _algorithm(family: str, cfg: ReproduceConfig) -> dict[str, Any]:
    algo = SOURCE_PRESETS[family].algorithm.model_dump()
    if cfg.preset == "tiny":
        algo["hidden_sizes"] = (32, 32)
        if algo["kind"] == "ppo":
            algo["steps_per_env"] = 100
        else:
            algo.update(batch_size=64, warmup_steps=100)
    elif cfg.preset == "small" and algo["kind"] == "sac":
        algo.update(_STRONG_SAC)
    opts = cfg.histories
    for name in ("hidden_sizes", "batch_size", "gradient_steps", "init_alpha"):
        value = getattr(opts, name)
        if value is None:
            continue
        if name not in algo:
            raise ValueError(
                f"--histories.{name}: {family}'s source algorithm ({algo['kind']}) has no field "
                f"{name!r}; drop the flag or run without {family}"
            )
        algo[name] = value
    return algo


def histories_backend(cfg: ReproduceConfig) -> tuple[str, str]:
    """The (backend, device) of the histories stage: batched on the GPU where there is one."""
    backend = cfg.histories.backend
    if backend == "auto":
        backend = "batched" if _cuda() else "tianshou"
    device = cfg.histories.device or ("cuda" if backend == "batched" and _cuda() else "cpu")
    return backend, device


def _workers(backend: str) -> int:
    cores = os.cpu_count() or 1
    # batched: env workers, plus the driver process that runs every learner on the device.
    return max(cores - 1, 1) if backend == "batched" else cores


def histories_config(family: str, cfg: ReproduceConfig) -> GenerateConfig:
    """The source-RL generation config of one family."""
    backend, device = histories_backend(cfg)
    data: dict[str, Any] = {
        "family": family,
        "algorithm": _algorithm(family, cfg),
        "seed": 0,
        "backend": backend,
        "device": device,
        "workers": _workers(backend),
    }
    if cfg.preset == "tiny":
        data.update(tasks=4, steps_per_task=_TINY_STEPS[family], k=4, workers=2)
    elif cfg.preset == "small":
        data.update(tasks=_SMALL_TASKS[family], steps_per_task=_SMALL_STEPS[family])
        if family in _SMALL_K:
            data["k"] = _SMALL_K[family]
    opts = cfg.histories.model_dump(
        include={"tasks", "steps_per_task", "k", "n_envs", "workers"}, exclude_none=True
    )
    data.update(opts)
    data["progress"] = cfg.progress
    noise = cfg.histories.noise_distillation
    if noise is not None:
        if backend != "batched":  # GenerateConfig refuses it too, naming its own CLI's flag
            why = " (auto: this machine has no CUDA)" if cfg.histories.backend == "auto" else ""
            raise ValueError(
                f"--histories.noise_distillation needs the batched backend, and this run's is "
                f"{backend}{why}; pass --histories.backend batched (it runs on a CPU too)"
            )
        data["noise_distillation"] = noise  # the typed value, every field of it
    return GenerateConfig.model_validate(data)


def ad_config(
    family: str, backbone: str, context: Context, seed: int, histories: Path, cfg: ReproduceConfig
) -> TrainConfig:
    """One AD training run's config: icrl.ad's preset, updated with typed values (context, seed,
    the --ad fields), then the user's --ad.overrides strings."""
    o = cfg.ad
    update: dict[str, Any] = {"data": {"context": context}, "seed": seed, "progress": cfg.progress}
    update |= _given(
        max_steps=o.max_steps, epochs=o.epochs, batch_size=o.batch_size, device=o.device
    )
    if o.lr is not None:
        update["optim"] = {"lr": o.lr}
    if model := _given(d_model=o.d_model, n_layers=o.n_layers):
        update["model"] = model  # the backbone's fields, in ADConfig's dict form
    tc = ad_preset(
        family, backbone, cfg.preset, histories=histories, update=update, overrides=o.overrides
    )
    user_batch = o.batch_size is not None or any(
        ov.split("=", 1)[0].strip() == "batch_size" for ov in o.overrides
    )
    if not user_batch and histories.is_file() and not isinstance(context, FullContext):
        tasks = tuple(tc.data.tasks) if tc.data.tasks is not None else None
        full, cut = _contexts_per_epoch(str(histories), tasks, str(context))
        tc = tc.model_copy(update={"batch_size": context_batch(tc.batch_size, full, cut)})
    return tc


def context_batch(batch: int, full: int, cut: int) -> int:
    """The batch of a shorter context that takes the full history's steps per epoch.

    `full` and `cut` are the contexts one epoch holds (one per history for the full history;
    as many as tile each history for a shorter one). The result is a multiple of `batch` (so a
    DDP split stays even) that covers `cut` in as many steps, ceil(full / batch), as the full
    history takes: every context of Fig. 2 trains for the preset's steps on about the same tokens
    per step. With a fixed batch, "the last 4 episodes" of small ReacherGoal's 152 kept ones took
    33x the full history's steps, each on 1/38 of its tokens (the last 16 episodes: 4,400 steps,
    67 s a model on one H200, against 500 steps and 14 s for the full history)."""
    steps = -(-full // batch)
    return batch * -(-cut // (batch * steps))


@functools.lru_cache(maxsize=64)
def _contexts_per_epoch(
    histories: str, tasks: tuple[str, ...] | None, context: str
) -> tuple[int, int]:
    """Contexts one training epoch holds with the full history (one per history) and with
    `context` (icrl.ad's own count), read once per run and context."""
    data = ContextDataset.from_files(
        [Path(histories)], list(tasks) if tasks else None, context=parse_context(context)
    )
    return len(data.entries), data.items_per_epoch


def _given(**values: Any) -> dict[str, Any]:
    """The fields a user set (not None)."""
    return {k: v for k, v in values.items() if v is not None}


def eval_config(histories: Path, episodes: int | None, cfg: ReproduceConfig) -> EvalConfig:
    """In-context evaluation config, shared by every AD model of a family."""
    o = cfg.evaluate
    return EvalConfig(
        n_tasks=o.n_tasks or (3 if cfg.preset == "tiny" else 10),
        episodes=o.episodes or episodes,
        device=o.device or "auto",
        sample=o.sample,
        histories=histories,
        reference_episodes=1 if cfg.preset == "tiny" else 3,
        asynchronous=cfg.preset != "tiny",
        progress=cfg.progress,
    )


# MACAW meta-steps of `small` (paper: 500k). On one H200 a step takes 160 ms (1,000 in 160.4 s,
# metrics.csv's wall_s; apps/README.md), so 5k steps would take ~13 min a seed, half of a
# family's 25 minutes; 2k take ~5.3 min, ~10 passes over ReacherGoal's small histories (5 tasks x
# 256 transitions per step).
SMALL_MACAW_STEPS = 2_000


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
        algo, steps = MacawConfig(), (SMALL_MACAW_STEPS if cfg.preset == "small" else 500_000)
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


# MQL adaptations per test task beyond `tiny` (one costs ~3.5 s on an H100: 150 of them for
# each of 10 tasks and 3 seeds would take hours; its adapted return did not move over 5 rounds,
# packages/baselines/README.md): the other episodes play the last adapted policy.
MQL_ADAPTATIONS = 5
# MQL env steps of `small` (its baselines preset: 1/20 of the AD data, 350k for ReacherGoal,
# ~30 min for 3 seeds at the measured 80k in 419 s); 60k keeps it near 5 min of training.
SMALL_MQL_ENV_STEPS = 60_000


def mql_config(family: str, episodes: int, cfg: ReproduceConfig) -> MQLConfig:
    """MQL's config: its preset at this size, evaluated on the same test tasks and episodes."""
    rounds = max(episodes - 1, 1)
    over: dict[str, Any] = {
        "n_test_tasks": cfg.evaluate.n_tasks or (3 if cfg.preset == "tiny" else 10),
        "adapt_rounds": rounds,
        # tiny: every episode; otherwise at most MQL_ADAPTATIONS adaptations per test task
        "adapt_every": 1 if cfg.preset == "tiny" else -(-rounds // MQL_ADAPTATIONS),
        "device": _device(cfg.ad.device),
    }
    if cfg.preset == "small":
        over["total_env_steps"] = SMALL_MQL_ENV_STEPS
    if cfg.mql.total_env_steps is not None:
        over["total_env_steps"] = cfg.mql.total_env_steps
    return mql_preset(family, cfg.preset, **over)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _device(device: str | None) -> str:
    if device in (None, "auto"):
        return "cuda" if _cuda() else "cpu"
    return device


def show_preset(cfg: ReproduceConfig) -> str:
    """Every stage's resolved config of every family of `cfg`, as indented JSON text."""
    validate(cfg)
    placeholder = Path("<histories of this run>.h5")
    plan: dict[str, Any] = {"preset": cfg.preset, "seeds": seeds(cfg), "contexts": contexts(cfg)}
    for family in cfg.families:
        fam: dict[str, Any] = {"histories": histories_config(family, cfg).model_dump(mode="json")}
        for backbone in cfg.backbones:
            tc = ad_config(family, backbone, contexts(cfg)[0], seeds(cfg)[0], placeholder, cfg)
            fam[f"train {backbone} (first context, first seed)"] = tc.model_dump(mode="json")
        fam["evaluate"] = eval_config(placeholder, None, cfg).model_dump(mode="json")
        if cfg.macaw.enabled:
            train, ev = macaw_configs(family, placeholder, Path("<stage dir>"), 1, cfg)
            fam["macaw"] = {
                "train": train.model_dump(mode="json"),
                "eval": ev.model_dump(mode="json"),
            }
        if cfg.mql.enabled:
            fam["mql"] = mql_config(family, 1, cfg).model_dump(mode="json")
        plan[family] = fam
    note = (
        "# episodes = 1 below stands for 'as many as the first AD context covers' (known once"
        " trained)\n# a shorter context's batch_size is the smallest multiple of the one shown that"
        " takes the full history's steps per epoch (known once the histories exist)\n"
    )
    return note + json.dumps(plan, indent=2, default=str)


class StageConfigError(ValueError):
    """A stage's resolved config is invalid (found before any stage runs)."""


def validate(cfg: ReproduceConfig) -> None:
    """Resolve every stage's config of every family now, so a bad setting stops the run before
    its first expensive step instead of when its stage starts, hours later."""
    placeholder = Path("histories.h5")  # the real path exists only once the stage has run
    for family in cfg.families:
        checks: list[tuple[str, Any]] = [("histories", lambda f=family: histories_config(f, cfg))]
        for backbone in cfg.backbones:
            ctxs = backbone_contexts(cfg, backbone)
            checks += [
                (f"train {backbone} {c} seed {s}",
                 lambda f=family, b=backbone, c=c, s=s: ad_config(f, b, c, s, placeholder, cfg))
                for c in ctxs for s in seeds(cfg)
            ]  # fmt: skip
        checks.append(("evaluate", lambda: eval_config(placeholder, None, cfg)))
        if cfg.evaluate.sample:
            checks.append(("evaluate", lambda f=family: _check_gaussian_heads(f, placeholder, cfg)))
        if cfg.macaw.enabled:
            checks.append(
                ("macaw", lambda f=family: macaw_configs(f, placeholder, Path("."), 1, cfg))
            )
        if cfg.mql.enabled:
            checks.append(("mql", lambda f=family: mql_config(f, 1, cfg)))
        for stage, build in checks:
            try:
                build()
            except ValueError as err:  # pydantic's ValidationError is a ValueError
                raise StageConfigError(f"{family}, stage {stage}: {_one_line(err)}") from None


def _check_gaussian_heads(family: str, histories: Path, cfg: ReproduceConfig) -> None:
    """--evaluate.sample true needs every AD model to have a Gaussian head (icrl.ad refuses an
    MSE head only when the evaluation starts, after the training)."""
    for backbone in cfg.backbones:
        for context in backbone_contexts(cfg, backbone):
            tc = ad_config(family, backbone, context, seeds(cfg)[0], histories, cfg)
            if tc.model.action_head != "gaussian":
                raise ValueError(
                    f"--evaluate.sample true samples a Gaussian action head, and the {backbone} "
                    f"model's is {tc.model.action_head!r}; add --ad.overrides "
                    "'[\"model.action_head=gaussian\"]' or leave --evaluate.sample unset"
                )


def _one_line(err: ValueError) -> str:
    if isinstance(err, ValidationError):  # field path and message of each error
        return describe_validation_error(err, layout="line", top="config")
    return " ".join(str(err).split())
