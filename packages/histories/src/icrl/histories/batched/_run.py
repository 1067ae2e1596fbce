"""The batched backend: the learners of many tasks trained at once, in one process per device.

One loop runs all tasks in lock-step, with the reference backend's per-task schedule. SAC/DroQ:
warm-up vector steps of uniform random actions, then per vector step one action of every sub-env
from the current policy, one env step of all sub-envs, the transitions into each task's replay
memory, and `gradient_steps` batched gradient steps. PPO: rollouts, then the batched PPO update
(`_ppo`). Networks and Adam states are stacked along a task dimension (`_sac`), replay memories
live on the device (`_replay`), sub-envs are stepped by worker processes over shared memory
(`_pool`), and the stream is recorded in preallocated arrays (`_record`). On CUDA the update step
is captured once as a CUDA graph.

What differs from the reference backend, by design: random numbers. Weights are initialised from a
per-task generator (so they do not depend on the other tasks), but mini-batch indices, policy noise
and dropout masks come from one device generator seeded from the run seed and the task set, so a
task's exact trajectory depends on the tasks it was batched with (its distribution does not).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from icrl.histories._backend import ProgressFn
from icrl.histories._config import (
    GAUSSIAN_NOISE_STD,
    AlgorithmConfig,
    DroQConfig,
    NoiseDistillation,
    PPOConfig,
    SACConfig,
)
from icrl.histories._learners import env_seeds
from icrl.histories.batched._pool import EnvPool, _Shared
from icrl.histories.batched._ppo import BatchedPPO, flat
from icrl.histories.batched._record import StreamRecorder
from icrl.histories.batched._replay import TaskReplay
from icrl.histories.batched._sac import BatchedSAC


@dataclass
class TaskResult:
    """What one task of a batched run produced (the caller writes it as a TaskRecord)."""

    transitions: dict[str, np.ndarray]
    episodes: dict[str, np.ndarray]
    env_steps: int
    unfinished: int
    obs_dim: int
    act_dim: int
    attrs: dict[str, Any] = field(default_factory=dict)
    """Attributes beyond every backend's (noise distillation: its settings, the source's end)."""


@dataclass(frozen=True)
class BatchSpec:
    """A batched run: several tasks of one family, same algorithm and budget."""

    family: str
    tasks: Sequence[Any]
    task_seeds: Sequence[int]
    steps: int
    n_envs: int
    k: int
    algorithm: AlgorithmConfig
    device: str = "cpu"
    env_workers: int = 0
    cuda_graph: bool = True
    noise: NoiseDistillation | None = None
    """Record a noise-distilled history of the final policy instead of the learning run."""


@dataclass
class BatchRun:
    """What a batched run produced: one result per task, in the order of `BatchSpec.tasks`."""

    results: list[TaskResult]
    update_mode: str
    """How the gradient steps ran: "cuda_graph" (captured once, replayed) or "eager"."""


def run_seed(task_seeds: Sequence[int]) -> int:
    """Seed of the shared generator (mini-batches, policy noise) of a batch of tasks."""
    ss = np.random.SeedSequence([7, *[int(s) for s in task_seeds]])
    return int(ss.generate_state(1, dtype=np.uint32)[0])


def run_batched(
    spec: BatchSpec,
    progress: ProgressFn | None = None,
    stop: Callable[[], bool] | None = None,
) -> BatchRun:
    """Train every task of `spec` from scratch; returns one result per task, in order.

    `stop()` is polled once per vector step; when true the run ends early (benchmarks).
    """
    threads = torch.get_num_threads()
    if torch.device(spec.device).type == "cpu":
        # as in the reference backend: one thread (small matmuls, and many threads on a busy
        # machine cost more in contention than they gain)
        torch.set_num_threads(1)
    try:
        return _run(spec, progress, stop)
    finally:
        torch.set_num_threads(threads)


def _run(spec: BatchSpec, progress: ProgressFn | None, stop: Callable[[], bool] | None) -> BatchRun:
    t, n = len(spec.tasks), spec.n_envs
    sub_tasks = [task for task in spec.tasks for _ in range(n)]
    sub_seeds = [s for ts in spec.task_seeds for s in env_seeds(int(ts), n)]
    torch.manual_seed(run_seed(spec.task_seeds))
    with EnvPool(spec.family, sub_tasks, sub_seeds, spec.env_workers) as pool:
        rec = StreamRecorder(t, spec.steps // n, n, pool.obs_dim, pool.act_dim)
        loop = _ppo_loop if isinstance(spec.algorithm, PPOConfig) else _off_policy_loop
        model, mode = loop(spec, pool, rec, progress or (lambda _: None), stop or (lambda: False))
        k, steps, attrs = spec.k, rec.vsteps * n, [{} for _ in range(t)]
        if spec.noise is not None:
            attrs = [_distilled_attrs(spec.noise, rec, i) for i in range(t)]
            rec = _noise_distilled(spec, pool, model)
            k, steps = 1, steps + rec.vsteps * n
    results = []
    for i in range(t):
        trans, eps, unfinished = rec.task_history(i, k)
        results.append(
            TaskResult(trans, eps, steps, unfinished, pool.obs_dim, pool.act_dim, attrs[i])
        )
    return BatchRun(results, mode)


def _distilled_attrs(noise: NoiseDistillation, learning: StreamRecorder, task: int) -> dict:
    """What a noise-distilled file records of its source: the settings and the learning run's end
    (mean stochastic return of its last 10 episodes), since its own episodes replace the run's."""
    returns = learning.task_history(task, learning.vsteps + 1)[1]["return"]
    return {
        "k": 1,  # every noise-distilled episode is kept
        "noise_distillation": noise.recorded(),
        "source_final_return": float(returns[-10:].mean()) if len(returns) else float("nan"),
        "source_episodes": len(returns),
    }


def _noise_distilled(spec: BatchSpec, pool: EnvPool, model: Any) -> StreamRecorder:
    """The final policies' noise-distilled episodes of every task (see NoiseDistillation)."""
    from icrl.histories._envs import episode_length

    noise = spec.noise
    assert noise is not None
    t, n, o, a = len(spec.tasks), spec.n_envs, pool.obs_dim, pool.act_dim
    device = torch.device(spec.device)
    length = episode_length(spec.family)
    rounds = -(-noise.episodes // n)  # episodes per env; early terminations only add episodes
    rec = StreamRecorder(t, rounds * length, n, o, a)
    rng = np.random.default_rng(run_seed(spec.task_seeds) + 1)
    started = np.zeros(t * n, np.int64)  # episodes begun per sub-env
    env_index = np.tile(np.arange(n), t)
    obs = pool.reset().copy()
    for _ in range(rounds * length):
        eps = noise.epsilon(started * n + env_index)[:, None]  # episode order: round, then env
        mean = model.act_and_mean(_to(device, obs, t, n, o))[1].view(t * n, a).cpu().numpy()
        mean = np.clip(mean, -1.0, 1.0)  # PPO's mean is unbounded; SAC's is tanh-squashed
        if noise.noise == "uniform":  # inside [-1, 1] already: a blend of two points in it
            act = (1.0 - eps) * mean + eps * rng.uniform(-1.0, 1.0, size=(t * n, a))
        else:  # the uniform's mean and variance, a Gaussian's shape (see NoiseDistillation)
            z = rng.standard_normal(size=(t * n, a))
            act = np.clip((1.0 - eps) * mean + eps * GAUSSIAN_NOISE_STD * z, -1.0, 1.0)
        env_act = pool.to_env(act.astype(np.float32))
        sh = pool.step(env_act)
        _record(rec, pool, obs, env_act, sh, False, mean)
        started += sh.terminated | sh.truncated
        obs = sh.obs.copy()
    return rec


def _record(
    rec: StreamRecorder,
    pool: EnvPool,
    obs: np.ndarray,
    env_act: np.ndarray,
    sh: _Shared,
    warm: bool,
    mean: np.ndarray,
) -> None:
    """Record one vector step: `sh` is the pool's step result, `mean` the policy's deterministic
    action in its [-1, 1] units (recorded in env units, as the executed action)."""
    rec.record(
        obs,
        env_act,
        sh.rew,
        sh.next_obs,
        sh.terminated,
        sh.truncated,
        warm,
        mean_action=pool.to_env(mean),
    )


def _to(device: torch.device, x: np.ndarray, *shape: int) -> torch.Tensor:
    return torch.from_numpy(x).to(device, non_blocking=True).view(*shape)


def _sample_and_mean(
    model: BatchedSAC | BatchedPPO, obs: torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """The policy's sampled and deterministic actions for obs (T, N, O), as (T * N, A) arrays
    brought to the host in one copy."""
    sample, mean = model.act_and_mean(obs)
    both = torch.stack([sample, mean]).view(2, -1, sample.shape[-1]).cpu().numpy()
    return both[0], both[1]


def _off_policy_loop(
    spec: BatchSpec,
    pool: EnvPool,
    rec: StreamRecorder,
    progress: ProgressFn,
    stop: Callable[[], bool],
) -> tuple[BatchedSAC, str]:
    """SAC / DroQ: warm-up, then act, step, store, `gradient_steps` updates per vector step;
    returns the trained model and the update mode."""
    algo = spec.algorithm
    assert isinstance(algo, SACConfig | DroQConfig)
    t, n, o, a = len(spec.tasks), spec.n_envs, pool.obs_dim, pool.act_dim
    device = torch.device(spec.device)
    model = BatchedSAC(algo, o, a, spec.task_seeds, device)
    capacity = max(n, (min(algo.buffer_size, spec.steps) // n) * n)
    replay = TaskReplay(t, capacity, o, a, device)
    warm_v = algo.warmup_steps // n
    update = _Updater(model, replay, algo, use_graph=spec.cuda_graph and device.type == "cuda")
    obs = pool.reset().copy()
    for v in range(spec.steps // n):
        warm = v < warm_v
        obs_d = _to(device, obs, t, n, o)
        if warm:
            # the untrained policy's deterministic action, recorded beside the random one
            mean = model.act(obs_d, deterministic=True).view(t * n, a).cpu().numpy()
            sh = pool.step(None)
            env_act = sh.act.copy()
            pol_act = pool.from_env(env_act)
        else:
            pol_act, mean = _sample_and_mean(model, obs_d)
            env_act = pool.to_env(pol_act)
            sh = pool.step(env_act)
        _record(rec, pool, obs, env_act, sh, warm, mean)
        rows = replay.pack(obs, pol_act, sh.rew, sh.next_obs, sh.terminated)
        replay.add(_to(device, rows, t, n, -1))
        obs = sh.obs.copy()
        if not warm:
            update(algo.gradient_steps)
        progress(t * n)
        if stop():
            break
    return model, update.mode


def _ppo_loop(
    spec: BatchSpec,
    pool: EnvPool,
    rec: StreamRecorder,
    progress: ProgressFn,
    stop: Callable[[], bool],
) -> tuple[BatchedPPO, str]:
    """PPO: rollouts of steps_per_env vector steps, each followed by the batched update (eager);
    returns the trained model and the update mode."""
    algo = spec.algorithm
    assert isinstance(algo, PPOConfig)
    t, n, o, a = len(spec.tasks), spec.n_envs, pool.obs_dim, pool.act_dim
    device = torch.device(spec.device)
    model = BatchedPPO(algo, o, a, spec.task_seeds, device)
    length = algo.steps_per_env
    # rollout rows: obs, raw act, rew, next_obs, terminated, done (on the device)
    roll = torch.zeros(t, length, n, 2 * o + a + 3, device=device)
    obs = pool.reset().copy()
    for _ in range(spec.steps // (n * length)):
        for i in range(length):
            raw, mean = _sample_and_mean(model, _to(device, obs, t, n, o))
            env_act = pool.to_env(np.clip(raw, -1.0, 1.0))  # action_bound_method="clip"
            sh = pool.step(env_act)
            _record(rec, pool, obs, env_act, sh, False, np.clip(mean, -1.0, 1.0))
            done = sh.terminated | sh.truncated
            rows = np.concatenate(
                [TaskReplay.pack(obs, raw, sh.rew, sh.next_obs, sh.terminated), done[:, None]],
                axis=1,
                dtype=np.float32,
            )
            roll[:, i] = _to(device, rows, t, n, -1)
            obs = sh.obs.copy()
            progress(t * n)
            if stop():
                return model, "eager"
        r_obs, r_act = roll[..., :o], roll[..., o : o + a]
        rew, r_next = roll[..., o + a], roll[..., o + a + 1 : 2 * o + a + 1]
        term, done_t = roll[..., -2], roll[..., -1]
        adv, ret = model.advantages(r_obs, rew, r_next, term, done_t)
        model.update(flat(r_obs), flat(r_act), flat(adv), flat(ret))
    return model, "eager"


class _Updater:
    """Runs gradient steps, eagerly or by replaying CUDA graphs of the whole step."""

    def __init__(
        self, model: BatchedSAC, replay: TaskReplay, algo: SACConfig | DroQConfig, use_graph: bool
    ) -> None:
        self.model, self.replay, self.batch_size = model, replay, algo.batch_size
        self.delay = algo.policy_delay if isinstance(algo, DroQConfig) else 1
        self.graphs: dict[bool, Any] | None = None
        self.use_graph = use_graph
        self.mode = "eager"

    def __call__(self, steps: int) -> None:
        if self.use_graph and self.graphs is None:
            self._try_capture()
        for _ in range(steps):
            if self.graphs is None:
                self.model.update(self.replay.sample(self.batch_size))
                continue
            self.model.critic_steps += 1
            self.graphs[self.model.critic_steps % self.delay == 0].replay()

    def _try_capture(self) -> None:
        self.use_graph = False
        try:
            self.graphs = _capture(self.model, self.replay, self.batch_size, self.delay)
            self.mode = "cuda_graph"
        except Exception as exc:  # any capture failure: run eagerly
            import warnings

            warnings.warn(f"CUDA graph capture failed, running eagerly: {exc!r}", stacklevel=2)
            self.graphs = None


def _capture(model: BatchedSAC, replay: TaskReplay, batch_size: int, delay: int) -> dict[bool, Any]:
    """CUDA graphs of one gradient step with and without the actor step, state left untouched.

    Adam creates its state at its first step, so a few eager warm-up steps run first (on a side
    stream, as capture requires); afterwards parameters, targets, optimizer moments and the step
    counter are put back to what they were, so the captured run starts from the same state.
    """
    params = [*model.parameters(), *model.target]
    saved = [p.detach().clone() for p in params]
    optims = [model.actor_optim, model.critic_optim, model.alpha_optim]
    if any(o.state for o in optims):
        raise RuntimeError("capture must happen before the first gradient step")
    for o in optims:
        for group in o.param_groups:
            group["capturable"] = True
    counter = model.critic_steps
    graphs: dict[bool, Any] = {}
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(max(3, delay)):
                model.update(replay.sample(batch_size))
        torch.cuda.current_stream().wait_stream(side)
        for full in (True, False) if delay > 1 else (True,):
            model.critic_steps = delay - 1 if full else 0
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                model.update(replay.sample(batch_size))
            graphs[full] = g
        if delay == 1:
            graphs[False] = graphs[True]
    finally:
        # also when capture fails: the eager fallback must start from the initial state too
        torch.cuda.synchronize()
        model.critic_steps = counter
        with torch.no_grad():
            for p, s in zip(params, saved, strict=True):
                p.copy_(s)
            for o in optims:
                for state in o.state.values():
                    for value in state.values():
                        if torch.is_tensor(value):
                            value.zero_()  # a fresh Adam: step 0, zero moments
        torch.cuda.synchronize()
    return graphs
