"""In-context evaluation: the trained model acts on unseen test tasks with no gradient step.

Every test task runs in its own sub-env of one vector env; each env step is one batched model
`step` (Mamba state / KV cache), so a rollout of E episodes costs E * episode_length model steps.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from tqdm.auto import tqdm

from icrl.histories.runtime import atomic_write
from icrl.metaenvs import episode_length, make_vector_env, reference_returns, test_tasks
from icrl.metaenvs.rollout import Step, run_episodes

from ._checkpoint import CheckpointError, load_model
from ._config import EvalConfig, SampleNoise
from ._lock import DirLock
from ._model import ADModel
from ._results import (
    check_out_dir,
    method_summary,
    plot_curves,
    reference_summary,
    write_results,
)
from ._tokens import RewardAblation, TokenBuilder
from ._train import resolve_device

__all__ = ["EvalResult", "evaluate", "rollout", "source_curve"]

# action (B, act_dim) for obs tokens (B, F)
Policy = Callable[[np.ndarray], np.ndarray]


def sampling_noise(
    shape: tuple[int, ...], kind: SampleNoise, gen: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Zero-mean, unit-variance noise that a sampled Gaussian head scales by its std: "gaussian"
    (the head's own likelihood) or "uniform" on [-sqrt(3), sqrt(3)] (same two moments, the shape
    of uniform noise-distilled histories: a head fitted to (1 - eps) mu + eps u, u ~ U[-1, 1],
    predicts mean (1 - eps) mu and std eps / sqrt(3), so its mean plus this noise redraws that
    blend, where a Gaussian of the same std gives actions of another shape)."""
    if kind == "uniform":
        return (torch.rand(shape, generator=gen, device=device) * 2 - 1) * math.sqrt(3.0)
    return torch.randn(shape, generator=gen, device=device)


@dataclass
class EvalResult:
    """Per-episode returns (tasks × seeds × episodes) and the files written."""

    method: str
    seeds: list[int]
    tasks: list[dict[str, Any]]
    returns: np.ndarray
    references: dict[str, float] = field(default_factory=dict)
    source: np.ndarray | None = None
    files: dict[str, Path] = field(default_factory=dict)


def _check_dims(envs, meta: dict[str, Any], family: str) -> None:
    obs_dim = envs.single_observation_space.shape[0]
    act_dim = envs.single_action_space.shape[0]
    want = (meta["data"]["obs_dim"], meta["data"]["act_dim"])
    if (obs_dim, act_dim) != want or meta["data"]["family"] != family:
        raise CheckpointError(
            f"checkpoint {meta['path']} was trained on {meta['data']['family']} with "
            f"(obs_dim, act_dim)={want}, but the evaluation env {family} has "
            f"({obs_dim}, {act_dim}); evaluate it on the family it was trained on"
        )


def rollout(
    model: ADModel | Sequence[ADModel] | None,
    envs,
    episodes: int,
    *,
    seed: int,
    device: torch.device,
    bf16: bool = False,
    policy: Policy | None = None,
    progress: bool = False,
    on_token: Callable[[np.ndarray], None] | None = None,
    cuda_graph: bool = False,
    max_tokens: int | None = None,
    sample: bool = False,
    reward_ablation: RewardAblation = "none",
    std_scale: float = 1.0,
    noise: SampleNoise = "gaussian",
) -> np.ndarray:
    """Run `episodes` episodes in every sub-env of `envs` (autoreset disabled); returns (n, E).

    The model receives one token per env step through `TokenBuilder` and acts with `step`;
    `sample` draws the action from a Gaussian head (generator seeded by `seed`) instead of taking
    its mean, with its std multiplied by `std_scale` and noise of the shape `noise`
    (`sampling_noise`); `reward_ablation="zero"` hides every reward
    from the model's context; `policy` replaces the model (reference policies). `on_token` sees
    every token.
    `cuda_graph` (CUDA only) replays the backbone's step as one CUDA graph; `max_tokens` bounds
    the env steps per sub-env (episodes x episode length; sizes the transformer's KV cache).
    """
    n = envs.num_envs
    obs_dim = envs.single_observation_space.shape[0]
    act_dim = envs.single_action_space.shape[0]
    builder = TokenBuilder(n, obs_dim, act_dim, reward_ablation)
    models = [] if model is None else [model] if isinstance(model, ADModel) else list(model)
    if models and n % len(models):
        raise ValueError(f"{n} sub-envs cannot be split evenly over {len(models)} models")
    width = n // max(len(models), 1)
    act = None
    if models:
        actors = [_model_actor(m, width, device, bf16, cuda_graph, max_tokens, sample, seed,
                               std_scale, noise) for m in models]  # fmt: skip
        act = actors[0] if len(actors) == 1 else _split_actor(actors, width)

    def act_on_tokens(obs: np.ndarray, rows: np.ndarray, start: np.ndarray) -> np.ndarray:
        feats = builder.token(obs, start)
        if on_token is not None:
            on_token(feats)
        return policy(feats) if policy is not None else act(feats)

    def record(step: Step) -> None:
        builder.record(step.action, step.reward, step.next_obs)

    bar = tqdm(total=n * episodes, disable=not progress, desc="in-context episodes", leave=False)
    with torch.inference_mode():
        # Each model's slice gets the env seeds it would get alone (seed + i for its i-th sub-env).
        run = run_episodes(
            envs,
            act_on_tokens,
            episodes,
            seeds=[seed + i % width for i in range(n)],
            on_step=record,
            on_episode=lambda i, e, ret: bar.update(1),
        )
    bar.close()
    return run.returns


def _split_actor(actors: Sequence[Policy], width: int) -> Policy:
    """Several models as one policy: model j acts on sub-envs [j*width, (j+1)*width)."""

    def act(feats: np.ndarray) -> np.ndarray:
        return np.concatenate([a(feats[j * width : (j + 1) * width]) for j, a in enumerate(actors)])

    return act


def _model_actor(
    model: ADModel,
    n: int,
    device: torch.device,
    bf16: bool,
    cuda_graph: bool,
    max_tokens: int | None,
    sample: bool = False,
    seed: int = 0,
    std_scale: float = 1.0,
    noise: SampleNoise = "gaussian",
) -> Policy:
    """The model as a policy over token batches, eager or with a CUDA-graph backbone step."""
    use_bf16 = bf16 and device.type == "cuda"
    if sample and not model.gaussian:
        raise ValueError("sample=True needs a model with a Gaussian action head")
    if std_scale != 1.0 and not sample:
        raise ValueError(
            f"std_scale={std_scale} scales the sampling noise of a Gaussian head, but this model "
            "acts with its mean (an MSE head, or sample=false)"
        )
    if noise != "gaussian" and not sample:
        raise ValueError(
            f"noise={noise!r} shapes the sampling noise of a Gaussian head, but this model acts "
            "with its mean (an MSE head, or sample=false)"
        )
    gen = torch.Generator(device=device).manual_seed(seed)

    def action(out: torch.Tensor) -> np.ndarray:
        mean, log_std = model.split(out.float())
        if sample and log_std is not None:
            draw = sampling_noise(tuple(mean.shape), noise, gen, mean.device)
            mean = mean + draw * (log_std.exp() * std_scale)
        return mean.cpu().numpy()

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else nullcontext()

    if cuda_graph and device.type == "cuda":
        graph_step = model.graph_stepper(n, max_tokens, torch.bfloat16 if use_bf16 else None)
        steps = 0

        def act(feats: np.ndarray) -> np.ndarray:
            nonlocal steps
            if max_tokens is not None and steps >= max_tokens:
                raise RuntimeError(
                    f"rollout: more than max_tokens={max_tokens} steps per sub-env; pass the "
                    "episodes x episode length bound (the CUDA graph's KV cache is that long)"
                )
            steps += 1
            with autocast():
                out = graph_step(torch.from_numpy(feats).to(device))
            return action(out)

        return act
    state = model.init_state(n, device=device)

    def act(feats: np.ndarray) -> np.ndarray:
        with autocast():
            out, _ = model.step(torch.from_numpy(feats).to(device), state)
        return action(out)

    return act


def source_curve(path: Path, episodes: int | None = None) -> tuple[np.ndarray, str]:
    """The source algorithm's learning curve on the in-context episode axis, and its name.

    In-context episode j is matched with the j-th *kept* episode of each training history: the
    model saw that episode at position j of its context. Its value is the mean return of the block
    of source episodes that the kept one stands for (from it to the next kept one, i.e. k episodes
    under k-downsampling), averaged over the file's training tasks. `episodes=None`: the whole
    curve, as many episodes as the longest history keeps.
    """
    from icrl.histories import HistoryFile

    hf = HistoryFile(path)
    algo, histories = "source", []
    for name in hf.tasks:
        meta = hf.meta(name)
        algo = str(meta.get("algorithm", meta.get("algo", algo)))
        rets, _ = hf.episode_returns(name)
        histories.append((rets, np.unique(np.asarray(hf.history(name).episode))))
    if episodes is None:
        episodes = max((len(kept) for _, kept in histories), default=0)
    rows = []
    for rets, kept in histories:
        bounds = np.append(kept, kept[-1] + (np.diff(kept).max() if len(kept) > 1 else 1))
        row = np.full(episodes, np.nan)
        for j in range(min(episodes, len(kept))):
            block = rets[bounds[j] : min(bounds[j + 1], len(rets))]
            row[j] = block.mean() if len(block) else np.nan
        rows.append(row)
    if not rows:
        return np.full(episodes, np.nan), algo
    table = np.stack(rows)
    # Episodes past every history's end stay NaN (np.nanmean would warn on those columns).
    count = np.isfinite(table).sum(axis=0)
    total = np.nansum(table, axis=0)
    curve = np.divide(total, count, out=np.full(episodes, np.nan), where=count > 0)
    return curve, algo


_METHODS = {"mamba": "AD-Mamba", "transformer": "AD-Transformer"}


def _method_name(cfg: EvalConfig, metas: Sequence[dict[str, Any]]) -> str:
    """The results' method label: EvalConfig.method, else the checkpoints' common backbone.

    Checkpoints of different backbones are refused rather than labelled all alike: their
    returns would be pooled into one curve (and one mean) under one wrong name.
    """
    if cfg.method:
        return cfg.method
    backbones = {m["path"]: m["config"]["model"]["backbone"] for m in metas}
    if len(set(backbones.values())) > 1:
        listed = ", ".join(f"{path}: {bb}" for path, bb in backbones.items())
        raise ValueError(
            f"the checkpoints are of different backbones ({listed}); evaluate each backbone "
            "into its own --out-dir, or set method=NAME to pool them under one label on purpose"
        )
    return _METHODS[next(iter(backbones.values()))]


def _source(
    config: EvalConfig, meta: dict[str, Any], family: str
) -> tuple[Path, np.ndarray | None, str]:
    """The source algorithm's whole curve and name, read before any rollout.

    An explicit `histories` must exist and be of the checkpoints' family; the checkpoint's own
    training file is optional (the curve is left out when it is not on this machine). A
    truncated or corrupt file is refused either way: found after the rollouts, it would discard
    them.
    """
    from icrl.histories import HistoryFile

    path = config.histories or Path(meta["config"]["data"]["paths"][0])
    if not path.is_file():
        if config.histories is None:
            return path, None, "source"
        raise ValueError(
            f"histories={path} (the source curve's file) does not exist; give the checkpoints' "
            "training histories, or leave histories unset"
        )
    with HistoryFile(path) as hf:
        found = hf.attrs.get("family")
    if found is not None and found != family:
        raise ValueError(
            f"histories {path} are of family {found}, but the checkpoints were trained on "
            f"{family}; give {family}'s training histories for the source curve"
        )
    whole, algo = source_curve(path)
    return path, whole, algo


def evaluate(config: EvalConfig, checkpoints: Sequence[Path] | Path, out_dir: Path) -> EvalResult:
    """Evaluate one trained model per training seed in context on the family's test tasks.

    Writes `returns.csv` (method,seed,task,episode,return), `returns.npz` and `curves.png` into
    `out_dir` (which must not already hold results) and returns them.
    """
    paths = [Path(checkpoints)] if isinstance(checkpoints, str | Path) else list(checkpoints)
    if not paths:
        raise ValueError("evaluate needs at least one checkpoint (one per training seed)")
    out_dir = Path(out_dir)
    # Everything the results need is checked before the rollouts (hours at paper scale): the
    # output directory, the device, the checkpoints and the source curve's histories.
    check_out_dir(out_dir)
    device = resolve_device(config.device)
    loaded = [load_model(p, device) for p in paths]
    metas = [m for _, m in loaded]
    family = metas[0]["data"]["family"]
    seeds = [int(m["config"]["seed"]) for m in metas]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"checkpoints {list(map(str, paths))} repeat training seeds {seeds}")
    episodes = config.episodes or max(int(m["data"]["context_episodes"]) for m in metas)
    for m in metas:
        _check_fits(m, family, episodes)
    method = _method_name(config, metas)
    source_path, whole, algo = _source(config, metas[0], family)

    with DirLock(out_dir, "evaluating"):
        check_out_dir(out_dir)  # again, under the lock: another evaluation may have finished
        returns, tasks, references = _rollouts(config, loaded, family, episodes, device)
        source = None
        if whole is not None:
            # The whole curve for the references, its first `episodes` (NaN past the longest
            # history) for the plot.
            source = np.full(episodes, np.nan)
            source[: min(episodes, len(whole))] = whole[:episodes]
        task_dicts = [t.to_dict() for t in tasks]
        files = write_results(out_dir, method, seeds, task_dicts, returns)
        summary = {
            method: method_summary(returns),
            "references": reference_summary(whole, references),
            # the recorded returns: the learning run's stochastic ones, or a noise-distilled
            # file's episodes (its final policy with annealed noise)
            "source_curve": f"{algo}, returns recorded in the training tasks' histories "
            f"({source_path.name}), k-downsampled axis",
        }
        files["summary"] = out_dir / "summary.json"
        atomic_write(files["summary"], json.dumps(summary, indent=2))
        curve = {f"source ({algo}, k-downsampled axis)": source} if source is not None else None
        files["png"] = plot_curves(
            {method: returns},
            out_dir / "curves.png",
            source=curve,
            references=references,
            title=f"{family}: in-context returns on {len(tasks)} test tasks × {len(seeds)} seeds",
        )
    return EvalResult(method, seeds, task_dicts, returns, references, source, files)


def _rollouts(
    config: EvalConfig,
    loaded: Sequence[tuple[ADModel, dict[str, Any]]],
    family: str,
    episodes: int,
    device: torch.device,
) -> tuple[np.ndarray, list[Any], dict[str, float]]:
    """Every checkpoint's in-context returns (tasks × seeds × episodes) on the family's test
    tasks, the tasks, and the reference policies' mean returns."""
    tasks = test_tasks(family, config.n_tasks)
    # One rollout acts with one rule (sample or mean; with sample=None "iff Gaussian", so by the
    # head) and shows its context's rewards one way (one TokenBuilder): checkpoints that differ
    # in either are rolled out in separate groups, each returning to its own seed's place.
    keys = [
        (m.gaussian if config.sample is None else config.sample, _reward_ablation(config, meta))
        for m, meta in loaded
    ]
    if config.batch_seeds:
        groups = [[i for i, k in enumerate(keys) if k == key] for key in dict.fromkeys(keys)]
    else:
        groups = [[i] for i in range(len(loaded))]
    per_seed: list[np.ndarray] = [np.empty(0)] * len(loaded)
    envs = None
    try:
        for group in groups:
            sample, ablation = keys[group[0]]
            if envs is None or envs.num_envs != len(tasks) * len(group):
                if envs is not None:
                    envs.close()
                envs = make_vector_env(family, tasks * len(group),
                                       asynchronous=config.asynchronous,
                                       autoreset_mode=AutoresetMode.DISABLED)  # fmt: skip
                for _, m in loaded:
                    _check_dims(envs, m, family)
            r = rollout(
                [loaded[i][0] for i in group], envs, episodes, seed=config.seed, device=device,
                bf16=config.bf16, progress=config.progress, cuda_graph=config.cuda_graph,
                max_tokens=episodes * episode_length(family), sample=sample,
                reward_ablation=ablation, std_scale=config.std_scale, noise=config.sample_noise,
            )  # fmt: skip
            for i, ri in zip(group, r.reshape(len(group), len(tasks), episodes), strict=True):
                per_seed[i] = ri
    finally:
        if envs is not None:
            envs.close()
    returns = np.stack(per_seed, axis=1)  # tasks × seeds × episodes
    references = {}
    if config.reference_episodes:
        for policy in ("zero", "random"):
            r = reference_returns(
                family, tasks, policy, episodes=config.reference_episodes, seed=config.seed
            )
            references[policy] = float(r.mean())
    return returns, list(tasks), references


def trained_reward_ablation(meta: dict[str, Any]) -> RewardAblation:
    """A checkpoint's own training setting, data.reward_ablation ("none" in checkpoints written
    before the field existed)."""
    return meta["config"]["data"].get("reward_ablation", "none")


def _reward_ablation(config: EvalConfig, meta: dict[str, Any]) -> RewardAblation:
    """What a checkpoint's context shows of rewards: EvalConfig.reward_ablation when set, else
    the checkpoint's own training setting (a blinded model stays blinded)."""
    if config.reward_ablation is not None:
        return config.reward_ablation
    return trained_reward_ablation(meta)


def _check_fits(meta: dict[str, Any], family: str, episodes: int) -> None:
    if meta["data"]["family"] != family:
        raise CheckpointError(
            f"checkpoint {meta['path']} was trained on {meta['data']['family']}, another "
            f"checkpoint on {family}; evaluate one family at a time"
        )
    max_len = meta.get("max_len")
    need = episodes * int(meta["data"]["episode_length"])
    if max_len is not None and need > max_len:
        raise CheckpointError(
            f"{episodes} episodes need up to {need} tokens but the transformer in "
            f"{meta['path']} has max_len={max_len}; lower EvalConfig.episodes to "
            f"{max_len // int(meta['data']['episode_length'])} or train with a larger model.max_len"
        )
