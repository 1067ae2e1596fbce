"""MACAW's test-time protocol, written as per-episode returns like AD's in-context evaluation.

For each trained run (one seed) and each canonical test task:

- episode 0 is the un-adapted meta-policy;
- ``adaptation='online'`` (default): before episode ``e ≥ 1`` the meta-parameters are adapted
  afresh (``adapt_steps`` value steps, then policy steps, with the learned rates) on a batch of at
  most ``adapt_batch_size`` transitions drawn from the ``e`` episodes collected so far on the task;
- ``adaptation='offline'`` (the official ``eval_macaw(ft='offline')``): the tasks are those of
  ``test_histories`` (histories of held-out tasks); adapt once on a random batch of a task's own
  learning history (every ``transition_skip``-th row) and run episodes ``1..`` with that policy.

Every evaluated episode samples actions ``clip(μ + σ ε, −1, 1)`` with ``σ = explore_sigma`` (the
official evaluation uses the mean action, ``σ = 0``): online adaptation needs exploration, since on
its own noiseless actions the AWR gradient vanishes.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from icrl.baselines._common import run_seed_jobs
from icrl.baselines._eval import Episode, run_episode
from icrl.baselines._results import EpisodeResult, write_results
from icrl.baselines.macaw._algo import Macaw, Params
from icrl.baselines.macaw._config import MacawConfig, MacawEvalConfig, MacawTrainConfig
from icrl.baselines.macaw._data import (
    MacawBuffer,
    build_macaw_buffer,
    sample_batch,
)
from icrl.baselines.macaw._train import history_buffer, load_macaw, macaw_meta, train_macaw


def _acting_copy(model: Macaw, device: torch.device, where: str) -> tuple[Macaw, torch.device]:
    """The model that picks the episodes' actions, and its device: `model` itself, or (with
    ``rollout_device="cpu"`` beside a GPU) a CPU copy, given each episode's parameters."""
    if where == "model" or device.type == "cpu":
        return model, device
    return copy.deepcopy(model).to("cpu").requires_grad_(False), torch.device("cpu")


def _policy_fn(
    model: Macaw,
    params: Params | None,
    low: np.ndarray,
    high: np.ndarray,
    sigma: float,
    rng: np.random.Generator,
    device: torch.device,
):
    mid, half = (high + low) / 2, (high - low) / 2

    def act(obs: np.ndarray) -> np.ndarray:
        o = torch.as_tensor(np.asarray(obs, np.float32), device=device).unsqueeze(0)
        mu = model.act(params, o)[0].cpu().numpy().astype(np.float64)
        a = np.clip(mu + sigma * rng.standard_normal(mu.shape), -1.0, 1.0) if sigma > 0 else mu
        return mid + half * a

    return act


def _episode_buffer(
    ep: Episode, cfg: MacawConfig, low: np.ndarray, high: np.ndarray
) -> MacawBuffer:
    return build_macaw_buffer(
        ep.obs,
        ep.action,
        ep.reward,
        ep.next_obs,
        ep.terminated,
        ep.truncated,
        None,
        gamma=cfg.gamma,
        skip=1,
        action_low=low,
        action_high=high,
        official_terminal_bootstrap=cfg.official_terminal_bootstrap,
        source="online episode",
    )


def offline_test_data(
    path: Path,
    n: int,
    cfg: MacawConfig,
    low: np.ndarray,
    high: np.ndarray,
    train_tasks: Sequence[Any],
    *,
    allow_train_tasks: bool = False,
) -> tuple[list[Any], list[MacawBuffer]]:
    """The first `n` tasks of a histories file and their buffers (every `transition_skip`-th row).

    Refuses tasks the run was trained on unless `allow_train_tasks` (smoke tests only).
    """
    from icrl.histories import HistoryFile

    hf = HistoryFile(Path(path))
    names = list(hf.tasks)[:n]
    if not names:
        raise ValueError(f"{path}: no tasks to adapt on")
    tasks, buffers = [], []
    for name in names:
        h = hf.history(name)
        if h.task in train_tasks and not allow_train_tasks:
            raise ValueError(
                f"{path}:{name} holds a task the run was trained on ({h.task}); offline "
                "evaluation needs histories of held-out tasks"
            )
        tasks.append(h.task)
        buffers.append(history_buffer(h, cfg, low, high, f"{path}:{name}"))
    return tasks, buffers


def evaluate_task(
    model: Macaw,
    env: Any,
    cfg: MacawEvalConfig,
    low: np.ndarray,
    high: np.ndarray,
    rng: np.random.Generator,
    *,
    env_seed: int,
    offline_buffer: MacawBuffer | None = None,
) -> list[float]:
    """Returns of ``cfg.episodes`` episodes on one task under the configured protocol."""
    device = next(model.parameters()).device
    algo = model.cfg
    params: Params | None = None
    actor, act_device = _acting_copy(model, device, cfg.rollout_device)
    collected: list[MacawBuffer] = []
    returns = []
    for e in range(cfg.episodes):
        if e > 0 and cfg.adaptation == "online":
            data = MacawBuffer.concat(collected)
            batch = sample_batch(data, cfg.adapt_batch_size, rng).to(device)
            _, params = model.adapt(batch, cfg.adapt_steps)
        elif e == 1 and cfg.adaptation == "offline":
            if offline_buffer is None:
                raise ValueError("adaptation='offline' needs the test task's offline buffer")
            batch = sample_batch(offline_buffer, cfg.adapt_batch_size, rng).to(device)
            _, params = model.adapt(batch, cfg.adapt_steps)
        acting = model.policy_params() if params is None else params
        acting = {k: v.detach().to(act_device) for k, v in acting.items()}
        policy = _policy_fn(actor, acting, low, high, cfg.explore_sigma, rng, act_device)
        ep = run_episode(env, policy, seed=env_seed if e == 0 else None)
        returns.append(ep.ret)
        if cfg.adaptation == "online":
            collected.append(_episode_buffer(ep, algo, low, high))
    return returns


def evaluate_macaw(
    runs: Sequence[Path],
    cfg: MacawEvalConfig,
    out_dir: Path | None = None,
    *,
    progress: bool = True,
    processes: int = 1,
) -> list[EpisodeResult]:
    """Evaluate trained runs (one per seed) on the canonical test tasks.

    Writes ``returns.csv`` (``method,seed,task,episode,return``; ``seed`` is the run's training
    seed, ``task`` the index in ``test_tasks(family, n_test_tasks)``, or in ``test_histories``
    for offline adaptation) and ``curves.png`` into `out_dir` when given; returns the rows. With
    ``processes > 1`` the runs are evaluated side by side in that many spawned processes
    (`run_seed_jobs`); a run's rows do not depend on it.
    """
    if not runs:
        raise ValueError("evaluate_macaw needs at least one trained run")
    if cfg.adaptation == "offline" and cfg.test_histories is None:
        raise ValueError("adaptation='offline' needs test_histories (a file with the test tasks)")
    # before any rollout: a mixed set would otherwise be refused only after every evaluation
    families = {macaw_meta(Path(r))["family"] for r in runs}
    if len(families) != 1:
        raise ValueError(
            f"the runs {list(map(str, runs))} were trained on {sorted(families)}; "
            "evaluate one family's runs at a time"
        )
    if cfg.family is not None and families != {cfg.family}:
        raise ValueError(
            f"the runs {list(map(str, runs))} were trained on {families.pop()}, asked to "
            f"evaluate on {cfg.family}; drop the family setting or pass runs of {cfg.family}"
        )
    per_run = run_seed_jobs(
        _evaluate_run, [(Path(r), cfg) for r in runs], processes, progress=progress
    )
    rows = [row for run_rows in per_run for row in run_rows]
    if out_dir is not None:
        title = f"{cfg.method} on {families.pop()} ({cfg.adaptation})"
        write_results(rows, Path(out_dir), title=title)
    return rows


def _evaluate_run(run: Path, cfg: MacawEvalConfig, *, progress: bool = True) -> list[EpisodeResult]:
    """The rows of one trained run on the test tasks: `evaluate_macaw` for one seed."""
    from icrl.metaenvs import make_env, task_from_dict, test_tasks

    model, meta = load_macaw(run, cfg.device)
    family = meta["family"]  # evaluate_macaw checked cfg.family against it before any rollout
    low, high = np.asarray(meta["action_low"]), np.asarray(meta["action_high"])
    if cfg.adaptation == "offline":
        train_tasks = [task_from_dict(t) for t in meta["task_values"]]
        tasks, offline = offline_test_data(
            cfg.test_histories,
            cfg.n_test_tasks,
            model.cfg,
            low,
            high,
            train_tasks,
            allow_train_tasks=cfg.allow_train_tasks,
        )
    else:
        tasks = test_tasks(family, cfg.n_test_tasks)
        offline = [None] * len(tasks)
    seed = int(meta["seed"])
    rng = np.random.default_rng([cfg.seed, seed])
    rows: list[EpisodeResult] = []
    bar = tqdm(tasks, desc=f"MACAW eval seed {seed}", disable=not progress)
    for ti, task in enumerate(bar):
        env = make_env(family, task)
        try:
            rets = evaluate_task(
                model,
                env,
                cfg,
                low,
                high,
                rng,
                env_seed=cfg.seed * 1_000_003 + seed * 1009 + ti,
                offline_buffer=offline[ti],
            )
        finally:
            env.close()
        rows += [EpisodeResult(cfg.method, seed, ti, e, r) for e, r in enumerate(rets)]
    return rows


def run_macaw(
    train: MacawTrainConfig,
    evaluation: MacawEvalConfig,
    out_dir: Path,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    progress: bool = True,
    processes: int = 1,
) -> Path:
    """Train one run per seed into ``out_dir/seed_<s>`` (resuming any finished or partial run),
    evaluate them all into ``out_dir/eval``; returns the results CSV path.

    ``train.run_dir`` and ``train.seed`` are replaced per seed. With ``processes > 1`` the seeds
    train, and then are evaluated, side by side in that many processes (without progress bars:
    they would interleave); a seed's run and returns do not depend on it.
    """
    out_dir = Path(out_dir)
    seeds = list(dict.fromkeys(seeds))  # a repeated seed is the same run: train it once
    cfgs = [
        train.model_copy(update={"run_dir": out_dir / f"seed_{s}", "seed": int(s)}) for s in seeds
    ]
    run_seed_jobs(train_macaw, [(c,) for c in cfgs], processes, progress=progress)
    runs = [c.run_dir for c in cfgs]
    evaluate_macaw(runs, evaluation, out_dir / "eval", progress=progress, processes=processes)
    return out_dir / "eval" / "returns.csv"
