"""TD3 with a GRU context (written in torch: Tianshou's TD3 has no place for a recurrent context
that both actor and critics read from a history of past transitions)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from icrl.baselines.mql._config import MQLConfig
from icrl.baselines.mql._nets import Actor, TwinCritic


def _deepcopy(net: nn.Module) -> nn.Module:
    """A copy whose GRU weights are re-packed: cuDNN would re-pack a deepcopy's weights at
    every call (about 0.5 ms of CPU each on an H100 host); in-place updates keep them packed."""
    other = copy.deepcopy(net)
    for m in other.modules():
        if isinstance(m, nn.GRU):
            m.flatten_parameters()
    return other


def prox_penalty(model: nn.Module, anchor: nn.Module) -> torch.Tensor:
    """``Σ_p ‖p − p_anchor‖²`` over all parameters (official ``get_prox_penalty``)."""
    terms = [
        (p - q.detach()).pow(2).sum()
        for p, q in zip(model.parameters(), anchor.parameters(), strict=True)
    ]
    return torch.stack(terms).sum()


def _descend(
    loss: torch.Tensor,
    net: nn.Module,
    opt: torch.optim.Optimizer,
    anchor: nn.Module | None,
    prox_coef: float,
) -> torch.Tensor:
    """One optimizer step on `loss`, plus the proximal pull toward `anchor` when given."""
    if anchor is not None and prox_coef > 0:
        loss = loss + prox_coef * prox_penalty(net, anchor)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


@dataclass(frozen=True)
class ActorPolicy:
    """An actor and the device it runs on: what an episode rollout needs to act."""

    actor: Actor
    device: torch.device

    @torch.no_grad()
    def act(self, obs: torch.Tensor, hist: torch.Tensor) -> torch.Tensor:
        """Deterministic actions (K, |A|) in [-1, 1] for obs (K, |S|) and histories (K, H, D)."""
        return self.actor(obs, hist)


class MQLAgent:
    """Actor, twin critic, their targets and optimisers; one TD3 update at a time."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: MQLConfig, device: torch.device) -> None:
        self.cfg, self.device = cfg, device
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.actor = Actor(obs_dim, act_dim, cfg.hidden, cfg.gru_hidden).to(device)
        self.critic = TwinCritic(obs_dim, act_dim, cfg.hidden, cfg.gru_hidden).to(device)
        self.actor_target = _deepcopy(self.actor).requires_grad_(False)
        self.critic_target = _deepcopy(self.critic).requires_grad_(False)
        self.set_optimizers(cfg.lr)
        self.updates = 0

    def set_optimizers(self, lr: float, capturable: bool = False) -> None:
        """Fresh Adam optimisers (adaptation re-creates them, as the official code does);
        `capturable` ones can be stepped inside a CUDA graph."""
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=lr, capturable=capturable)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=lr, capturable=capturable)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, hist: torch.Tensor) -> torch.Tensor:
        """Deterministic actions (K, |A|) in [-1, 1] for obs (K, |S|) and histories (K, H, D)."""
        return self.actor(obs, hist)

    def policy_on(self, device: torch.device) -> ActorPolicy:
        """The actor alone, acting like :meth:`act`: itself on its own device, else a copy on
        `device` (evaluation rollouts on the CPU while adaptation runs on a GPU)."""
        if torch.device(device) == self.device:
            return ActorPolicy(self.actor, self.device)
        return ActorPolicy(_deepcopy(self.actor).to(device).requires_grad_(False), device)

    @torch.no_grad()
    def actor_context(self, hist: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """The actor GRU's context features of histories (N, H, D), in chunks."""
        return torch.cat([self.actor.context(h) for h in hist.split(chunk)])

    def update(
        self,
        batch: dict[str, torch.Tensor],
        beta: torch.Tensor | None = None,
        anchor: MQLAgent | None = None,
        prox_coef: float = 0.0,
    ) -> dict[str, torch.Tensor]:
        """One TD3 step; with `beta`, per-sample weights on both losses; with `anchor`, the
        proximal penalty ``prox_coef·‖θ − θ_anchor‖²`` on actor and critic.

        Returns the detached losses as tensors (reading them syncs the device: do it rarely).
        """
        self.updates += 1
        stats = {"critic_loss": self.critic_step(batch, beta, anchor, prox_coef)}
        if self.updates % self.cfg.policy_freq == 0:
            stats["actor_loss"] = self.actor_step(batch, beta, anchor, prox_coef)
            self.polyak()
        return stats

    def critic_step(
        self,
        batch: dict[str, torch.Tensor],
        beta: torch.Tensor | None = None,
        anchor: MQLAgent | None = None,
        prox_coef: float = 0.0,
    ) -> torch.Tensor:
        """Clipped double-Q step of the critic (target smoothing noise clipped at ±c)."""
        cfg = self.cfg
        with torch.no_grad():
            noise = (torch.randn_like(batch["act"]) * cfg.policy_noise).clamp(
                -cfg.noise_clip, cfg.noise_clip
            )
            next_act = (self.actor_target(batch["next_obs"], batch["next_hist"]) + noise).clamp(
                -1.0, 1.0
            )
            tq1, tq2 = self.critic_target(batch["next_obs"], next_act, batch["next_hist"])
            target = batch["rew"] + batch["not_done"] * cfg.gamma * torch.minimum(tq1, tq2)
        q1, q2 = self.critic(batch["obs"], batch["act"], batch["hist"])
        per_sample = F.mse_loss(q1, target, reduction="none") + F.mse_loss(
            q2, target, reduction="none"
        )
        loss = (per_sample if beta is None else per_sample * beta).mean()
        anchor_net = None if anchor is None else anchor.critic
        return _descend(loss, self.critic, self.critic_opt, anchor_net, prox_coef)

    def actor_step(
        self,
        batch: dict[str, torch.Tensor],
        beta: torch.Tensor | None = None,
        anchor: MQLAgent | None = None,
        prox_coef: float = 0.0,
    ) -> torch.Tensor:
        """Deterministic policy-gradient step of the actor through Q1."""
        q = self.critic.q1_only(
            batch["obs"], self.actor(batch["obs"], batch["hist"]), batch["hist"]
        )
        loss = -(q if beta is None else q * beta).mean()
        anchor_net = None if anchor is None else anchor.actor
        return _descend(loss, self.actor, self.actor_opt, anchor_net, prox_coef)

    @torch.no_grad()
    def polyak(self) -> None:
        """Move both target networks toward the online ones by τ."""
        tau = self.cfg.tau
        for net, tgt in ((self.actor, self.actor_target), (self.critic, self.critic_target)):
            for p, tp in zip(net.parameters(), tgt.parameters(), strict=True):
                tp.lerp_(p, tau)

    def clone(self, lr: float | None = None) -> MQLAgent:
        """A deep copy; with `lr`, its optimisers are fresh Adam at that rate (for adaptation)."""
        other = copy.copy(self)
        for name in ("actor", "critic", "actor_target", "critic_target"):
            setattr(other, name, _deepcopy(getattr(self, name)))
        if lr is None:
            other.set_optimizers(self.cfg.lr)
            other.actor_opt.load_state_dict(self.actor_opt.state_dict())
            other.critic_opt.load_state_dict(self.critic_opt.state_dict())
        else:
            other.set_optimizers(lr)
            other.updates = 0
        return other

    def state_dict(self) -> dict[str, Any]:
        """Networks, targets, optimisers and the update counter."""
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "actor_target": self.actor_target.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`, also across devices: Adam state saved by a
        CUDA-graph run (capturable) loads into eager optimisers and vice versa."""
        for name in ("actor", "critic", "actor_target", "critic_target"):
            getattr(self, name).load_state_dict(state[name])
        for name in ("actor_opt", "critic_opt"):
            opt = getattr(self, name)
            saved = dict(state[name])
            capturable = opt.param_groups[0]["capturable"]
            saved["param_groups"] = [
                {**g, "capturable": capturable} for g in state[name]["param_groups"]
            ]
            opt.load_state_dict(saved)
        self.updates = int(state["updates"])
