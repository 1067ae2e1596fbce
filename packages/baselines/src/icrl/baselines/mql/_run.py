"""MQL meta-training (with checkpoint/resume) and evaluation by adaptation on test tasks."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from icrl.baselines._common import (
    load_torch,
    run_dir_lock,
    run_seed_jobs,
)
from icrl.baselines._results import (
    EpisodeResult,
    read_results_csv,
    results_to_csv_text,
    write_results,
    write_results_csv,
)
from icrl.baselines.mql._adapt import mql_adapt
from icrl.baselines.mql._agent import MQLAgent
from icrl.baselines.mql._buffer import MultiTaskReplay
from icrl.baselines.mql._config import MQLConfig
from icrl.baselines.mql._graph import make_updater
from icrl.baselines.mql._rollout import run_episodes
from icrl.histories.runtime import (
    atomic_write,
    config_changes,
    describe_changes,
    resolve_device,
)

METHOD = "MQL"
CKPT, REPLAY, CONFIG, METRICS = "checkpoint.pt", "replay.npz", "config.json", "metrics.csv"
METRIC_FIELDS = ("env_steps", "episodes", "updates", "train_return", "critic_loss", "wall_s")
# Fields that may differ when resuming or evaluating a run: they do not change what was trained.
_FREE_FIELDS = {
    "device",
    "cuda_graphs",
    "total_env_steps",
    "checkpoint_every",
    "rollout_device",
    "n_test_tasks",
    "adapt_rounds",
    "adapt_every",
    "adapt_lr",
    "csc_c",
    "beta_clip",
    "snap_iters",
    "main_snap_iters",
    "sample_mult",
    "prox_coef",
    "use_ess_prox",
}

EnvFactory = Callable[[], gym.Env]


def _metaenv_factory(family: str) -> EnvFactory:
    from icrl.metaenvs import make_env

    return lambda: make_env(family)


def _train_tasks(cfg: MQLConfig) -> list[Any]:
    from icrl.metaenvs import train_tasks

    return list(train_tasks(cfg.family, cfg.n_train_tasks))


def _test_tasks(cfg: MQLConfig) -> list[Any]:
    from icrl.metaenvs import test_tasks

    return list(test_tasks(cfg.family, cfg.n_test_tasks))


def _episode_seed(seed: int, episode: int) -> int:
    # every reset is seeded from (run seed, episode counter): resume replays the same episodes
    return int(np.random.SeedSequence([seed, episode]).generate_state(1)[0])


def _dims(env: gym.Env) -> tuple[int, int]:
    return int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))


def _check_compatible(saved: dict[str, Any], cfg: MQLConfig, where: Path) -> None:
    current = cfg.model_dump(mode="json")
    # only the current config's fields count: one that MQLConfig no longer has is ignored
    saved = {k: saved.get(k) for k in current}
    diff = config_changes(saved, current, may_change=_FREE_FIELDS)
    if diff:
        detail = describe_changes(diff, "{field}: {old!r} on disk vs {new!r}", sep=", ")
        raise ValueError(
            f"{where} holds an MQL run with another config ({detail}); use a new run "
            f"directory or the config that wrote it"
        )


def _append_metrics(path: Path, rows: list[dict[str, float]]) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
        if new:
            writer.writeheader()
        writer.writerows(rows)
        f.flush()


def load_checkpoint(
    run_dir: Path, cfg: MQLConfig, env: gym.Env, n_tasks: int
) -> tuple[MQLAgent, MultiTaskReplay, dict[str, Any]]:
    """Agent, replay and counters of the run in `run_dir` (fresh ones when it has none)."""
    obs_dim, act_dim = _dims(env)
    agent = MQLAgent(obs_dim, act_dim, cfg, resolve_device(cfg.device))
    replay = MultiTaskReplay(
        cfg.replay_size, obs_dim, act_dim, cfg.hist_len, n_tasks, cfg.snapshot_size
    )
    path = run_dir / CKPT
    if not path.exists():
        return agent, replay, {"env_steps": 0, "episodes": 0, "update_credit": 0.0, "wall_s": 0.0}
    state = load_torch(path, map_location="cpu")
    _check_compatible(state["config"], cfg, path)
    agent.load_state_dict(state["agent"])
    replay.load(run_dir / REPLAY)
    if replay.written != state["counters"]["replay_written"]:
        raise ValueError(
            f"{run_dir / REPLAY} holds {replay.written} transitions but {path} expects "
            f"{state['counters']['replay_written']}: the two files are from different saves"
        )
    torch.set_rng_state(state["torch_rng"])
    if torch.cuda.is_available() and state.get("cuda_rng") is not None:
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    counters = dict(state["counters"])
    counters["rng_state"] = state["np_rng"]
    return agent, replay, counters


def _save_checkpoint(
    run_dir: Path,
    cfg: MQLConfig,
    agent: MQLAgent,
    replay: MultiTaskReplay,
    rng: np.random.Generator,
    counters: dict[str, Any],
) -> None:
    # replay first: a crash between the two writes leaves a checkpoint that refuses to load
    # with a mismatched replay rather than silently resuming from inconsistent state
    replay.save(run_dir / REPLAY)
    atomic_write(
        run_dir / CKPT,
        lambda p: torch.save(
            {
                "config": cfg.model_dump(mode="json"),
                "agent": agent.state_dict(),
                "counters": {**counters, "replay_written": replay.written},
                "np_rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
            p,
        ),
    )


def train_mql(
    cfg: MQLConfig,
    run_dir: str | Path,
    *,
    progress: bool = True,
    env_factory: EnvFactory | None = None,
    tasks: Sequence[Any] | None = None,
) -> Path:
    """Meta-train MQL on the train tasks of ``cfg.family``; return the checkpoint path.

    Each iteration runs ``envs_per_iter`` episodes side by side, each on a train task drawn
    with replacement (uniform random actions during the first ``burn_in`` steps, then the
    actor plus Gaussian noise), stores them in one shared replay buffer and makes
    ``utd_ratio`` TD3 updates per new env step. A rerun on the same `run_dir` resumes from the
    last checkpoint (model, optimisers, replay buffer, RNG); a finished run returns at once.
    `env_factory` and `tasks` replace ``icrl.metaenvs`` (for other gymnasium envs).
    """
    run_dir = Path(run_dir)
    resolve_device(cfg.device)  # a bad device is refused before the run folder is written
    with run_dir_lock(run_dir):
        return _train_locked(cfg, run_dir, progress, env_factory, tasks)


def _train_locked(
    cfg: MQLConfig,
    run_dir: Path,
    progress: bool,
    env_factory: EnvFactory | None,
    tasks: Sequence[Any] | None,
) -> Path:
    """The body of `train_mql`, run while holding the run folder's lock."""
    if (run_dir / CONFIG).exists():
        _check_compatible(json.loads((run_dir / CONFIG).read_text()), cfg, run_dir / CONFIG)
    else:
        atomic_write(run_dir / CONFIG, cfg.model_dump_json(indent=2), overwrite=False)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    tasks = list(tasks) if tasks is not None else _train_tasks(cfg)
    factory = env_factory or _metaenv_factory(cfg.family)
    envs = [factory() for _ in range(cfg.envs_per_iter)]
    agent, replay, counters = load_checkpoint(run_dir, cfg, envs[0], len(tasks))
    if "rng_state" in counters:
        rng.bit_generator.state = counters.pop("rng_state")
    steps = int(counters["env_steps"])
    if steps >= cfg.total_env_steps:
        return run_dir / CKPT
    update = make_updater(agent, cfg.cuda_graphs)
    next_ckpt = (steps // cfg.checkpoint_every + 1) * cfg.checkpoint_every
    pending: list[dict[str, float]] = []
    t0 = time.perf_counter() - float(counters["wall_s"])
    bar = tqdm(
        total=cfg.total_env_steps,
        initial=steps,
        disable=not progress,
        unit="step",
        desc=f"MQL {cfg.family} seed {cfg.seed}",
        dynamic_ncols=True,
    )
    with bar:
        while steps < cfg.total_env_steps:
            task_ids = rng.integers(0, len(tasks), size=cfg.envs_per_iter)
            mode = "random" if steps < cfg.burn_in else "noisy"
            episodes = run_episodes(
                envs,
                [tasks[i] for i in task_ids],
                agent,
                mode,
                rng,
                cfg.hist_len,
                cfg.expl_noise,
                seeds=[
                    _episode_seed(cfg.seed, counters["episodes"] + i)
                    for i in range(cfg.envs_per_iter)
                ],
            )
            for t, ep in zip(task_ids, episodes, strict=True):
                replay.add_episode(ep.obs, ep.act, ep.rew, ep.next_obs, ep.terminated, int(t))
            new = sum(len(ep) for ep in episodes)
            steps += new
            counters["episodes"] += len(episodes)
            loss_sum, n_updates = None, 0
            if steps >= cfg.burn_in and len(replay) >= cfg.batch_size:
                counters["update_credit"] += cfg.utd_ratio * new
                n_updates = int(counters["update_credit"])
                counters["update_credit"] -= n_updates
                for _ in range(n_updates):
                    idx = replay.sample_indices(cfg.batch_size, rng)
                    loss = update(replay.batch_arrays(idx))
                    loss_sum = loss if loss_sum is None else loss_sum + loss
            train_return = float(np.mean([ep.ret for ep in episodes]))
            pending.append(
                {
                    "env_steps": steps,
                    "episodes": counters["episodes"],
                    "updates": agent.updates,
                    "train_return": train_return,
                    "critic_loss": float(loss_sum) / n_updates if n_updates else float("nan"),
                    "wall_s": time.perf_counter() - t0,
                }
            )
            bar.update(new)
            bar.set_postfix(ret=f"{train_return:.1f}", updates=agent.updates)
            if steps >= next_ckpt or steps >= cfg.total_env_steps:
                counters.update(env_steps=steps, wall_s=time.perf_counter() - t0)
                _save_checkpoint(run_dir, cfg, agent, replay, rng, counters)
                _append_metrics(run_dir / METRICS, pending)
                pending = []
                next_ckpt = (steps // cfg.checkpoint_every + 1) * cfg.checkpoint_every
    return run_dir / CKPT


def evaluate_mql(
    cfg: MQLConfig,
    run_dir: str | Path,
    *,
    progress: bool = True,
    env_factory: EnvFactory | None = None,
    train_task_count: int | None = None,
    tasks: Sequence[Any] | None = None,
) -> list[EpisodeResult]:
    """Adapt the meta-trained MQL of `run_dir` to each test task; rows in AD's result format.

    Protocol, per test task (all episodes deterministic, the policy's mean action):
    episode 0 is the meta-policy before adaptation and becomes the new task's data; for each
    round r = 1..adapt_rounds, a fresh copy of the meta-trained networks is adapted on all the
    new-task data so far (propensity weights, Phase A, Phase B), then runs episode r, which is
    added to the data; with ``adapt_every = m > 1`` only rounds 1, 1 + m, 1 + 2m, ... adapt, and
    the others run the last adapted policy. Returns one :class:`EpisodeResult` per episode
    (method "MQL"); its task is the index in ``metaenvs.test_tasks(family, n_test_tasks)`` (or
    in `tasks`).
    """
    run_dir = Path(run_dir)
    if not (run_dir / CKPT).exists():
        raise ValueError(
            f"{run_dir / CKPT} does not exist: train the run first (`python -m icrl.baselines "
            f"mql train {run_dir}`, or train_mql)"
        )
    factory = env_factory or _metaenv_factory(cfg.family)
    env = factory()
    n_train = train_task_count if train_task_count is not None else len(_train_tasks(cfg))
    meta, replay, counters = load_checkpoint(run_dir, cfg, env, n_train)
    if counters["env_steps"] < cfg.total_env_steps:
        raise ValueError(
            f"{run_dir} trained {counters['env_steps']} of {cfg.total_env_steps} env steps: "
            f"finish it with train_mql first"
        )
    test = list(tasks) if tasks is not None else _test_tasks(cfg)
    ep_len = env.spec.max_episode_steps if env.spec and env.spec.max_episode_steps else 1000
    rng = np.random.default_rng([cfg.seed, 7])
    obs_dim, act_dim = _dims(env)
    act_device = torch.device("cpu") if cfg.rollout_device == "cpu" else meta.device
    meta_policy = meta.policy_on(act_device)  # the un-adapted episodes' (one copy per run)
    rows: list[EpisodeResult] = []
    bar = tqdm(
        total=len(test) * (cfg.adapt_rounds + 1),
        disable=not progress,
        unit="ep",
        desc=f"MQL adapt {cfg.family} seed {cfg.seed}",
    )
    with bar:
        for ti, task in enumerate(test):
            new = MultiTaskReplay(
                (cfg.adapt_rounds + 1) * ep_len, obs_dim, act_dim, cfg.hist_len, 1, 1
            )
            policy = meta_policy
            for r in range(cfg.adapt_rounds + 1):
                if r > 0 and (r - 1) % cfg.adapt_every == 0:
                    agent, _ = mql_adapt(meta, new, replay, rng)
                    policy = agent.policy_on(act_device)
                seed = 2_000_003 * (cfg.seed + 1) + 1009 * ti if r == 0 else None
                (ep,) = run_episodes(
                    [env],
                    [task],
                    policy,
                    "deterministic",
                    rng,
                    cfg.hist_len,
                    seeds=None if seed is None else [seed],
                )
                new.add_episode(ep.obs, ep.act, ep.rew, ep.next_obs, ep.terminated, 0)
                rows.append(EpisodeResult(METHOD, cfg.seed, ti, r, ep.ret))
                bar.update(1)
    return rows


def _train_and_evaluate(cfg: MQLConfig, run_dir: Path, *, progress: bool) -> None:
    """One seed of `run_mql`: train (resuming), evaluate, keep its ``returns.csv``."""
    train_mql(cfg, run_dir, progress=progress)
    write_results_csv(evaluate_mql(cfg, run_dir, progress=progress), run_dir / "returns.csv")


def run_mql(
    cfg: MQLConfig,
    out_dir: str | Path,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    progress: bool = True,
    processes: int = 1,
) -> tuple[Path, Path]:
    """Train and evaluate MQL for each seed; write ``returns.csv`` and ``curves.png``.

    Seed ``s`` runs in ``out_dir/seed_s`` (``cfg.seed`` replaced by ``s``) and keeps its own
    ``returns.csv`` there, so a rerun resumes training and skips evaluated seeds. With
    ``processes > 1`` the unfinished seeds run side by side in that many processes (no progress
    bars then: they would interleave); a seed's results do not depend on it. Returns the paths
    of the combined CSV and PNG in `out_dir`; a rerun whose results are unchanged leaves them
    as they are, other existing results are never overwritten.
    """
    out_dir = Path(out_dir)
    seeds = list(dict.fromkeys(seeds))  # a repeated seed is the same run: train it once
    todo = [
        (MQLConfig.model_validate({**cfg.model_dump(), "seed": int(s)}), out_dir / f"seed_{s}")
        for s in seeds
        if not (out_dir / f"seed_{s}" / "returns.csv").exists()
    ]
    run_seed_jobs(_train_and_evaluate, todo, processes, progress=progress)
    rows: list[EpisodeResult] = []
    for s in seeds:
        rows += read_results_csv(out_dir / f"seed_{s}" / "returns.csv")
    csv_path, png_path = out_dir / "returns.csv", out_dir / "curves.png"
    if (
        csv_path.exists()
        and png_path.exists()
        and csv_path.read_text() == results_to_csv_text(rows)
    ):
        return csv_path, png_path
    return write_results(rows, out_dir, title=f"MQL on {cfg.family}, {len(seeds)} seed(s)")
