"""SAC and DroQ for many tasks at once: one batched update step for all tasks' networks.

The losses follow Tianshou 2.0.1's `SAC._update_with_batch` and `REDQ._update_with_batch` (the
reference backend) term by term, with a task dimension in front:

* target: y = r + gamma (1 - terminated) (min_c Q'_c(s', a') - alpha log pi(a'|s')), a' ~ pi(s')
  from the current actor, computed once before the critic step (Tianshou's `_preprocess_batch`);
* critics: SAC sums the two critics' MSE (each a mean over the batch; Tianshou steps two
  optimizers, which for Adam is the same thing); DroQ takes the mean over (critic, batch);
* actor (SAC every step, DroQ every `policy_delay` critic steps): alpha log pi - min_c Q_c (SAC)
  or - mean_c Q_c (REDQ/DroQ), with the just-updated critics;
* temperature: -(log_alpha (target_entropy + log pi)).mean(), after the actor step;
* Polyak averaging of the target critics after every critic step.

Per-task losses are means over that task's batch and the task losses are summed, so each task's
parameters get exactly their own gradient; Adam is element-wise (its step count is shared, and all
tasks step together), so one Adam over the stacked tensors is each task's own Adam.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from icrl.histories._config import DroQConfig, SACConfig
from icrl.histories.batched._nets import StackedActor, StackedCritics, adam_options

NoiseFn = Callable[[tuple[int, ...]], torch.Tensor]


@dataclass
class Batch:
    """A mini-batch per task: obs (T, B, O), act (T, B, A), rew (T, B), next_obs, terminated."""

    obs: torch.Tensor
    act: torch.Tensor
    rew: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor


def task_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per task for weight initialisation."""
    return [torch.Generator().manual_seed(int(s) % 2**63) for s in seeds]


class BatchedSAC(torch.nn.Module):
    """SAC (two critics) or DroQ (dropout + LayerNorm critics, delayed actor) for T tasks."""

    def __init__(
        self,
        config: SACConfig | DroQConfig,
        obs_dim: int,
        act_dim: int,
        seeds: Sequence[int],
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        self.config = config
        self.droq = isinstance(config, DroQConfig)
        self.n_tasks, self.act_dim = len(seeds), act_dim
        gens = task_generators(seeds)
        hidden = list(config.hidden_sizes)
        self.actor = StackedActor(self.n_tasks, obs_dim, act_dim, hidden, gens)
        n_critics = config.n_critics if isinstance(config, DroQConfig) else 2
        dropout = config.dropout if isinstance(config, DroQConfig) else 0.0
        self.critics = StackedCritics(
            self.n_tasks, n_critics, obs_dim + act_dim, hidden, gens, dropout, self.droq
        )
        self.target = [p.detach().clone() for p in self.critics.parameters()]
        target = -float(act_dim) if config.target_entropy is None else config.target_entropy
        self.target_entropy = target
        self.log_alpha = torch.nn.Parameter(
            torch.full((self.n_tasks,), math.log(config.init_alpha))
        )
        self.to(device)
        self.target = [p.to(device) for p in self.target]
        adam = adam_options(config.lr, device)
        self.actor_optim = torch.optim.Adam(self.actor.parameters(), **adam)
        self.critic_optim = torch.optim.Adam(self.critics.parameters(), **adam)
        self.alpha_optim = torch.optim.Adam([self.log_alpha], **adam)
        self.critic_steps = 0
        # Critics run in train mode throughout (DroQ's dropout is on in every critic evaluation,
        # targets included, as in the reference backend's DroQ).
        self.train()

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Squashed actions in [-1, 1] for obs (T, N, O)."""
        return self.actor(obs, deterministic=deterministic)[0]

    @torch.no_grad()
    def act_and_mean(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a sampled action, the deterministic action tanh(mu)), both in [-1, 1], for obs
        (T, N, O), from one actor pass; the sample is `act(obs)`'s (same random draw)."""
        return self.actor.sample_and_mean(obs)

    def _noise(self, noise_fn: NoiseFn | None, shape: tuple[int, ...]) -> torch.Tensor | None:
        return None if noise_fn is None else noise_fn(shape)

    def update(self, batch: Batch, noise_fn: NoiseFn | None = None) -> None:
        """One gradient step of every task (critics; actor and temperature when due).

        `noise_fn(shape)` supplies the policy's standard-normal draws (tests use it to replay the
        reference's random numbers); by default they are drawn from torch's generator.
        """
        t, b = batch.rew.shape
        alpha = self.log_alpha.detach().exp().view(t, 1)
        with torch.no_grad():
            a2, logp2 = self.actor(batch.next_obs, self._noise(noise_fn, (t, b, self.act_dim)))
            q_next = self.critics(batch.next_obs, a2, self.target).min(dim=1).values
            y = batch.rew + self.config.gamma * (1 - batch.terminated) * (q_next - alpha * logp2)
        q = self.critics(batch.obs, batch.act)
        td2 = (q - y.unsqueeze(1)).pow(2)
        # per-task loss: DroQ mean over (critic, batch); SAC one batch-mean per critic, summed
        critic_loss = td2.mean(dim=(1, 2)).sum() if self.droq else td2.mean(dim=2).sum()
        self.critic_optim.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optim.step()
        self.critic_steps += 1
        delay = self.config.policy_delay if isinstance(self.config, DroQConfig) else 1
        if self.critic_steps % delay == 0:
            self._actor_step(batch, alpha, noise_fn)
        torch._foreach_lerp_(self.target, list(self.critics.parameters()), self.config.tau)

    def _actor_step(self, batch: Batch, alpha: torch.Tensor, noise_fn: NoiseFn | None) -> None:
        t, b = batch.rew.shape
        act, logp = self.actor(batch.obs, self._noise(noise_fn, (t, b, self.act_dim)))
        # Critic weights are detached: the actor loss must not leave gradients on them.
        frozen = [p.detach() for p in self.critics.parameters()]
        qa = self.critics(batch.obs, act, frozen)
        q_pi = qa.mean(dim=1) if self.droq else qa.min(dim=1).values
        actor_loss = (alpha * logp - q_pi).mean(dim=1).sum()
        self.actor_optim.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optim.step()
        deficit = (self.target_entropy + logp.detach()).mean(dim=1)
        alpha_loss = -(self.log_alpha * deficit).sum()
        self.alpha_optim.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_optim.step()
