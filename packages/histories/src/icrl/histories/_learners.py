"""Source learners: the per-task learner interface and its Tianshou 2.0.1 implementation (SAC,
PPO, DroQ), which the Tianshou backend (`_generate.TianshouBackend`) runs on each task."""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from icrl.histories import _envs
from icrl.histories._backend import ProgressFn
from icrl.histories._config import AlgorithmConfig, DroQConfig, PPOConfig, SACConfig
from icrl.histories._recorder import HistoryRecorder
from icrl.histories.runtime import seed_everything


@dataclass(frozen=True)
class TaskSpec:
    """One source-RL run: a task of a family, its seed and its budget."""

    family: str
    task: Any
    task_index: int
    task_seed: int
    steps: int
    n_envs: int
    algorithm: AlgorithmConfig
    device: str = "cpu"


class Learner(ABC):
    """A source algorithm run on one task, feeding every vector step to a recorder (what the
    Tianshou backend runs on each task; `generate`'s seam is `_backend.Backend`).

    Every learner must call `recorder.record_step` once per vector-env step (warm-up included,
    with `recorder.warmup` set during it), passing the executed action and the policy's
    deterministic action (`mean_action`, in env units; in warm-up the current policy's), and must
    be deterministic given `spec.task_seed`, so files from different learners have the same
    meaning; `name` is recorded in the file.
    """

    name: str

    @abstractmethod
    def run(
        self,
        spec: TaskSpec,
        recorder: HistoryRecorder | None,
        progress: ProgressFn | None = None,
    ) -> None:
        """Run the whole learning run of `spec`; `recorder=None` runs without recording."""


def env_seeds(task_seed: int, n_envs: int) -> list[int]:
    """Independent, reproducible seeds for the parallel envs of one task."""
    ss = np.random.SeedSequence([task_seed, 1])
    return [int(s) for s in ss.generate_state(n_envs, dtype=np.uint32)]


class _DropoutLayerNorm(nn.Sequential):
    """Dropout then LayerNorm, as one `norm_layer` of a Tianshou Net (DroQ's critic layer)."""

    dropout = 0.01

    def __init__(self, n: int) -> None:
        super().__init__(nn.Dropout(self.dropout), nn.LayerNorm(n))


def _droq_class() -> type:
    from tianshou.algorithm import REDQ

    class DroQ(REDQ):
        """REDQ with dropout active in the target critics, as DroQ prescribes.

        Tianshou wraps target networks so that they always run in eval mode (dropout off); DroQ
        computes targets with dropout on, so the wrapped module is switched to train mode here.
        """

        def _target_q_compute_value(self, obs_batch: Any, act_batch: Any) -> torch.Tensor:
            target = self.critic_old.module
            target.train()
            try:
                qs = target(obs_batch.obs, act_batch.act)
            finally:
                target.eval()
            target_q = qs.min(dim=0).values if self.target_mode == "min" else qs.mean(dim=0)
            return target_q - self.alpha.value * act_batch.log_prob

    return DroQ


class TianshouLearner(Learner):
    """Runs SAC, PPO or DroQ with Tianshou 2.0.1's algorithms and trainers, on CPU or CUDA."""

    name = "tianshou"

    def run(
        self,
        spec: TaskSpec,
        recorder: HistoryRecorder | None,
        progress: ProgressFn | None = None,
    ) -> None:
        from tianshou.data import Collector, CollectStats
        from tianshou.env import DummyVectorEnv

        seed_everything(spec.task_seed)
        env_fns = [_EnvFn(spec.family, spec.task) for _ in range(spec.n_envs)]
        venv = DummyVectorEnv(env_fns)
        venv.seed(env_seeds(spec.task_seed, spec.n_envs))
        try:
            obs_space = venv.observation_space[0]
            act_space = venv.action_space[0]
            algo, params = _build(spec, obs_space, act_space)
            mean_action = DeterministicAction(
                algo.policy, squash=not isinstance(spec.algorithm, PPOConfig)
            )

            def hook(action_batch: Any, rollout_batch: Any) -> None:
                if recorder is not None:
                    mu = mean_action(action_batch, rollout_batch)
                    recorder.tianshou_hook(action_batch, rollout_batch, mu)
                if progress is not None:
                    progress(len(rollout_batch.rew))

            with_hook = recorder is not None or progress is not None
            buffer = _buffer(spec)
            collector = Collector[CollectStats](
                algo,
                venv,
                buffer,
                exploration_noise=True,
                on_step_hook=hook if with_hook else None,
            )
            collector.reset()
            warm = getattr(spec.algorithm, "warmup_steps", 0)
            if warm:
                if recorder is not None:
                    recorder.warmup = True
                collector.collect(n_step=warm, random=True)
                if recorder is not None:
                    recorder.warmup = False
            trainer = algo.create_trainer(params(collector, spec.steps - warm))
            # Collectors are not reset: episodes begun in warm-up go on into training.
            trainer.run(reset_collectors=False)
        finally:
            venv.close()


class DeterministicAction:
    """The deterministic action of a Tianshou policy at each collector step, in env units.

    The collector hands the step hook the policy's output distribution (`action_batch.dist`, a
    Normal of the actor's loc and scale, computed in the same forward pass as the executed
    action). The deterministic action is its loc, squashed by tanh for SAC/DroQ (`squash`: their
    raw action is the tanh of a sample), then mapped to the env's action box by the policy's own
    `map_action` (SAC: scaling; PPO: clipping to [-1, 1], then scaling), exactly as the executed
    action is. Random warm-up steps do not run the policy; there the actor is run on the step's
    observations (loc only: no sampling, so the random streams stay those of the run without it).
    """

    def __init__(self, policy: Any, squash: bool) -> None:
        self.policy, self.squash = policy, squash

    def __call__(self, action_batch: Any, rollout_batch: Any) -> np.ndarray:
        dist = action_batch.get("dist", None)
        with torch.no_grad():
            if dist is None:
                (loc, _), _ = self.policy.actor(rollout_batch.obs)
            else:
                loc = dist.mean
            if self.squash:
                loc = torch.tanh(loc)
        return np.asarray(self.policy.map_action(loc.detach().cpu().numpy()), dtype=np.float32)


class _EnvFn:
    """Picklable env constructor (subprocess vector envs need one)."""

    def __init__(self, family: str, task: Any) -> None:
        self.family, self.task = family, task

    def __call__(self) -> Any:
        return _envs.make_env(self.family, self.task)


def _buffer(spec: TaskSpec) -> Any:
    from tianshou.data import VectorReplayBuffer

    algo = spec.algorithm
    if isinstance(algo, PPOConfig):
        size = algo.steps_per_env * spec.n_envs
    else:
        size = min(algo.buffer_size, spec.steps)
    return VectorReplayBuffer(size, spec.n_envs)


def _build(spec: TaskSpec, obs_space: Any, act_space: Any) -> tuple[Any, Callable[..., Any]]:
    """The Tianshou algorithm and a factory of its trainer parameters."""
    algo = spec.algorithm
    if isinstance(algo, SACConfig):
        return _build_sac(algo, spec, obs_space, act_space)
    if isinstance(algo, DroQConfig):
        return _build_droq(algo, spec, obs_space, act_space)
    if isinstance(algo, PPOConfig):
        return _build_ppo(algo, spec, obs_space, act_space)
    raise TypeError(f"unknown algorithm config {type(algo).__name__}")


def _actor(obs_dim: int, act_shape: Any, hidden: tuple[int, ...], device: str) -> nn.Module:
    from tianshou.utils.net.common import Net
    from tianshou.utils.net.continuous import ContinuousActorProbabilistic

    net = Net(state_shape=obs_dim, hidden_sizes=list(hidden))
    return ContinuousActorProbabilistic(
        preprocess_net=net, action_shape=act_shape, unbounded=True, conditioned_sigma=True
    ).to(device)


def _auto_alpha(algo: SACConfig | DroQConfig, act_dim: int, device: str) -> Any:
    from tianshou.algorithm.modelfree.sac import AutoAlpha
    from tianshou.algorithm.optim import AdamOptimizerFactory

    target = -float(act_dim) if algo.target_entropy is None else algo.target_entropy
    alpha = AutoAlpha(
        target_entropy=target,
        log_alpha=math.log(algo.init_alpha),
        optim=AdamOptimizerFactory(lr=algo.lr),
    )
    return alpha.to(device)  # in place: the optimizer keeps the same parameter


def _off_policy_params(algo: SACConfig | DroQConfig, spec: TaskSpec) -> Callable[[Any, int], Any]:
    from tianshou.trainer import OffPolicyTrainerParams

    def make(collector: Any, steps: int) -> Any:
        return OffPolicyTrainerParams(
            training_collector=collector,
            max_epochs=1,
            epoch_num_steps=steps,
            collection_step_num_env_steps=spec.n_envs,
            update_step_num_gradient_steps_per_sample=algo.gradient_steps / spec.n_envs,
            batch_size=algo.batch_size,
            test_collector=None,
            verbose=False,
            show_progress=False,
        )

    return make


def _build_sac(
    algo: SACConfig, spec: TaskSpec, obs_space: Any, act_space: Any
) -> tuple[Any, Callable[..., Any]]:
    from tianshou.algorithm import SAC
    from tianshou.algorithm.modelfree.sac import SACPolicy
    from tianshou.algorithm.optim import AdamOptimizerFactory
    from tianshou.utils.net.common import Net
    from tianshou.utils.net.continuous import ContinuousCritic

    obs_dim, act_shape = int(np.prod(obs_space.shape)), act_space.shape
    actor = _actor(obs_dim, act_shape, algo.hidden_sizes, spec.device)

    def critic() -> nn.Module:
        net = Net(
            state_shape=obs_dim,
            action_shape=act_shape,
            hidden_sizes=list(algo.hidden_sizes),
            concat=True,
        )
        return ContinuousCritic(preprocess_net=net).to(spec.device)

    opt = AdamOptimizerFactory(lr=algo.lr)
    sac = SAC(
        policy=SACPolicy(actor=actor, action_space=act_space),
        policy_optim=opt,
        critic=critic(),
        critic_optim=opt,
        critic2=critic(),
        critic2_optim=opt,
        tau=algo.tau,
        gamma=algo.gamma,
        alpha=_auto_alpha(algo, int(np.prod(act_shape)), spec.device),
    )
    return sac, _off_policy_params(algo, spec)


def _build_droq(
    algo: DroQConfig, spec: TaskSpec, obs_space: Any, act_space: Any
) -> tuple[Any, Callable[..., Any]]:
    from tianshou.algorithm.modelfree.redq import REDQPolicy
    from tianshou.algorithm.optim import AdamOptimizerFactory
    from tianshou.utils.net.common import EnsembleLinear, Net
    from tianshou.utils.net.continuous import ContinuousCritic

    obs_dim, act_shape = int(np.prod(obs_space.shape)), act_space.shape
    actor = _actor(obs_dim, act_shape, algo.hidden_sizes, spec.device)
    n = algo.n_critics

    def linear(i: int, o: int) -> nn.Module:
        return EnsembleLinear(n, i, o)

    norm = type("DropoutLayerNorm", (_DropoutLayerNorm,), {"dropout": algo.dropout})
    net = Net(
        state_shape=obs_dim,
        action_shape=act_shape,
        hidden_sizes=list(algo.hidden_sizes),
        concat=True,
        norm_layer=norm,
        linear_layer=linear,
    )
    critic = ContinuousCritic(preprocess_net=net, linear_layer=linear, flatten_input=False).to(
        spec.device
    )
    opt = AdamOptimizerFactory(lr=algo.lr)
    droq = _droq_class()(
        policy=REDQPolicy(actor=actor, action_space=act_space),
        policy_optim=opt,
        critic=critic,
        critic_optim=opt,
        ensemble_size=n,
        subset_size=n,
        tau=algo.tau,
        gamma=algo.gamma,
        alpha=_auto_alpha(algo, int(np.prod(act_shape)), spec.device),
        actor_delay=algo.policy_delay,
        target_mode="min",
    )
    return droq, _off_policy_params(algo, spec)


def _build_ppo(
    algo: PPOConfig, spec: TaskSpec, obs_space: Any, act_space: Any
) -> tuple[Any, Callable[..., Any]]:
    from tianshou.algorithm import PPO
    from tianshou.algorithm.modelfree.reinforce import ProbabilisticActorPolicy
    from tianshou.algorithm.optim import AdamOptimizerFactory
    from tianshou.trainer import OnPolicyTrainerParams
    from tianshou.utils.net.common import Net
    from tianshou.utils.net.continuous import ContinuousActorProbabilistic, ContinuousCritic

    obs_dim, act_shape = int(np.prod(obs_space.shape)), act_space.shape
    hidden = list(algo.hidden_sizes)
    actor = ContinuousActorProbabilistic(
        preprocess_net=Net(state_shape=obs_dim, hidden_sizes=hidden, activation=nn.Tanh),
        action_shape=act_shape,
        unbounded=True,
        conditioned_sigma=False,
    ).to(spec.device)
    critic = ContinuousCritic(
        preprocess_net=Net(state_shape=obs_dim, hidden_sizes=hidden, activation=nn.Tanh)
    ).to(spec.device)
    with warnings.catch_warnings():
        # Tianshou 2.0.1 warns about action scaling even for an unbounded actor (harmless).
        warnings.filterwarnings("ignore", message="action_scaling and action_bound_method")
        policy = ProbabilisticActorPolicy(
            actor=actor,
            dist_fn=_normal_dist,
            action_space=act_space,
            action_scaling=True,
            action_bound_method="clip",
        )
    ppo = PPO(
        policy=policy,
        critic=critic,
        optim=AdamOptimizerFactory(lr=algo.lr),
        eps_clip=algo.clip,
        vf_coef=algo.vf_coef,
        ent_coef=algo.ent_coef,
        max_grad_norm=algo.max_grad_norm,
        gae_lambda=algo.gae_lambda,
        gamma=algo.gamma,
        advantage_normalization=True,
    )

    def make(collector: Any, steps: int) -> Any:
        return OnPolicyTrainerParams(
            training_collector=collector,
            max_epochs=1,
            epoch_num_steps=steps,
            collection_step_num_env_steps=algo.steps_per_env * spec.n_envs,
            update_step_num_repetitions=algo.epochs,
            batch_size=algo.batch_size,
            test_collector=None,
            verbose=False,
            show_progress=False,
        )

    return ppo, make


def _normal_dist(loc_scale: tuple[torch.Tensor, torch.Tensor]) -> torch.distributions.Distribution:
    loc, scale = loc_scale
    return torch.distributions.Independent(torch.distributions.Normal(loc, scale), 1)
