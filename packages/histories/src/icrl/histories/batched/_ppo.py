"""PPO for many tasks at once, following Tianshou 2.0.1's `PPO` as the reference backend uses it.

Per task and rollout (steps_per_env vector steps of N envs, then the buffer is emptied):
values of obs and next obs from the critic; GAE with Tianshou's `_gae` (next value masked where
terminated; an episode end, or the last step of an env's rollout, stops the recursion); returns =
advantage + value; old log-probs. Then `epochs` passes, each over a fresh random permutation of the
rollout split into minibatches of `batch_size` (the remainder merged into the last, as
`Batch.split(merge_last=True)`), each minibatch one Adam step on
clip loss + vf_coef * value MSE - ent_coef * entropy, with per-minibatch advantage normalisation
and the gradient norm of each task's actor + critic clipped to `max_grad_norm` separately.

Networks: `Net(hidden, Tanh)` trunks, an actor mean head and a state-independent log-std (zeros
at start; Tianshou's `ContinuousActorProbabilistic(conditioned_sigma=False)`), a critic head.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from tianshou.utils.net.common import EnsembleLinear

from icrl.histories._config import PPOConfig
from icrl.histories.batched._nets import _init_members, adam_options
from icrl.histories.batched._sac import task_generators

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class _TanhMLP(torch.nn.Module):
    def __init__(self, t: int, sizes: Sequence[int], gens: Sequence[torch.Generator]) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(
            EnsembleLinear(t, i, o) for i, o in itertools.pairwise(sizes)
        )
        for layer in self.layers:
            _init_members(layer, gens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = torch.baddbmm(layer.bias_weights, x, layer.weight)
            if i < len(self.layers) - 1:
                x = torch.tanh(x)
        return x


class BatchedPPO(torch.nn.Module):
    """Actor and critic of T tasks with one Adam over both (Tianshou's joint PPO optimizer)."""

    def __init__(
        self,
        config: PPOConfig,
        obs_dim: int,
        act_dim: int,
        seeds: Sequence[int],
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        self.config = config
        t = self.n_tasks = len(seeds)
        gens = task_generators(seeds)
        hidden = list(config.hidden_sizes)
        # trunk ends in tanh (Net's last hidden layer is activated), then the linear head
        self.actor = _TanhMLP(t, [obs_dim, *hidden, act_dim], gens)
        self.log_std = torch.nn.Parameter(torch.zeros(t, 1, act_dim))
        self.critic = _TanhMLP(t, [obs_dim, *hidden, 1], gens)
        self.to(device)
        adam = adam_options(config.lr, device)
        self.optim = torch.optim.Adam(self.parameters(), **adam)

    def dist(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log-std) of the Gaussian policy for obs (T, B, O)."""
        mu = self.actor(obs)
        return mu, self.log_std.expand_as(mu)

    @staticmethod
    def log_prob(mu: torch.Tensor, log_std: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        z = (act - mu) / log_std.exp()
        return (-0.5 * z.pow(2) - log_std - _LOG_SQRT_2PI).sum(-1)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V(s) (T, B)."""
        return self.critic(obs).squeeze(-1)

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """A sample of the (unbounded) policy for obs (T, N, O)."""
        return self.act_and_mean(obs)[0]

    @torch.no_grad()
    def act_and_mean(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a sample of the unbounded policy, its mean) for obs (T, N, O), from one actor pass."""
        mu, log_std = self.dist(obs)
        return mu + torch.randn_like(mu) * log_std.exp(), mu

    @torch.no_grad()
    def advantages(
        self,
        obs: torch.Tensor,
        rew: torch.Tensor,
        next_obs: torch.Tensor,
        terminated: torch.Tensor,
        done: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE advantages and returns for a rollout laid out (T, V, N, ...)."""
        t, v, n = rew.shape
        cfg = self.config
        v_s = self.value(obs.reshape(t, v * n, -1)).view(t, v, n)
        v_next = self.value(next_obs.reshape(t, v * n, -1)).view(t, v, n) * (1 - terminated)
        end = done.clone()
        end[:, -1] = 1.0  # an env's rollout ends here: Tianshou's unfinished_index
        delta = rew + cfg.gamma * v_next - v_s
        discount = (1 - end) * (cfg.gamma * cfg.gae_lambda)
        adv = torch.zeros_like(rew)
        gae = torch.zeros_like(rew[:, 0])
        for i in range(v - 1, -1, -1):
            gae = delta[:, i] + discount[:, i] * gae
            adv[:, i] = gae
        return adv, adv + v_s

    def update(
        self,
        obs: torch.Tensor,
        act: torch.Tensor,
        adv: torch.Tensor,
        ret: torch.Tensor,
        perms: Sequence[torch.Tensor] | None = None,
    ) -> None:
        """`epochs` passes of minibatch steps over a rollout flattened to (T, L, ...).

        `perms` (one (T, L) permutation per epoch) replaces the random ones (tests).
        """
        cfg = self.config
        t, length = adv.shape
        with torch.no_grad():
            mu, log_std = self.dist(obs)
            logp_old = self.log_prob(mu, log_std, act)
        n_mb = max(length // cfg.batch_size, 1)
        bounds = [i * cfg.batch_size for i in range(n_mb)] + [length]
        rows = torch.arange(t, device=adv.device).view(t, 1)
        for epoch in range(cfg.epochs):
            if perms is None:
                perm = torch.argsort(torch.rand(t, length, device=adv.device), dim=1)
            else:
                perm = perms[epoch]
            for lo, hi in itertools.pairwise(bounds):
                idx = perm[:, lo:hi]
                batch = (obs, act, adv, ret, logp_old)
                self._step(*(x[rows, idx] for x in batch))

    def _step(
        self,
        obs: torch.Tensor,
        act: torch.Tensor,
        adv: torch.Tensor,
        ret: torch.Tensor,
        logp_old: torch.Tensor,
    ) -> None:
        cfg = self.config
        adv = (adv - adv.mean(1, keepdim=True)) / (adv.std(1, keepdim=True) + 1e-8)
        mu, log_std = self.dist(obs)
        ratio = (self.log_prob(mu, log_std, act) - logp_old).exp()
        surr = torch.min(ratio * adv, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * adv)
        clip_loss = -surr.mean(1)
        vf_loss = (ret - self.value(obs)).pow(2).mean(1)
        entropy = (0.5 + _LOG_SQRT_2PI + log_std).sum(-1).mean(1)
        loss = (clip_loss + cfg.vf_coef * vf_loss - cfg.ent_coef * entropy).sum()
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.max_grad_norm is not None:
            self._clip_per_task(cfg.max_grad_norm)
        self.optim.step()

    def _clip_per_task(self, max_norm: float) -> None:
        """torch's clip_grad_norm_ applied to each task's slice of every gradient."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        sq = sum(g.pow(2).reshape(self.n_tasks, -1).sum(1) for g in grads)
        coef = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))


def flat(x: torch.Tensor) -> torch.Tensor:
    """(T, V, N, ...) -> (T, N * V, ...) in Tianshou's order (env-major sub-buffers)."""
    t, v, n = x.shape[:3]
    return x.transpose(1, 2).reshape(t, n * v, *x.shape[3:])
