"""MACAW's losses, its MAML inner step and the meta-training step, with ``torch.func``.

Reference: ``eric-mitchell/macaw`` ``src/macaw.py`` (``value_function_loss_on_batch``,
``adaptation_policy_loss_on_batch``, ``train_step``, ``eval_macaw``). Networks are called
functionally (``torch.func.functional_call``) on parameter dictionaries, so the adapted parameters
``φ' = φ − softplus(η) ⊙ ∇φ L_in`` stay differentiable in ``φ`` and ``η`` (second-order MAML, the
official ``higher`` with ``copy_initial_weights=False``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from icrl.baselines.macaw._config import MacawConfig
from icrl.baselines.macaw._data import MacawBuffer, sample_batch
from icrl.baselines.macaw._nets import MacawMLP

Params = dict[str, torch.Tensor]


def inner_step(
    loss: torch.Tensor,
    params: Params,
    raw_lrs: Sequence[torch.Tensor],
    *,
    create_graph: bool = True,
) -> Params:
    """One SGD step with one learned rate per tensor: ``p' = p − softplus(raw) · ∂loss/∂p``.

    With `create_graph` the result is differentiable in `params` and `raw_lrs` (second order).
    Tensors the loss does not touch are kept as they are.
    """
    names = list(params)
    if len(raw_lrs) != len(names):
        raise ValueError(f"{len(raw_lrs)} learned rates for {len(names)} parameter tensors")
    grads = torch.autograd.grad(
        loss, [params[k] for k in names], create_graph=create_graph, allow_unused=True
    )
    return {
        k: params[k] if g is None else params[k] - F.softplus(lr) * g
        for k, g, lr in zip(names, grads, raw_lrs, strict=True)
    }


def value_of(value_net: nn.Module, params: Params, obs: torch.Tensor) -> torch.Tensor:
    """V(obs) as a (B,) tensor under `params`."""
    return functional_call(value_net, params, (obs,)).squeeze(-1)


def mc_target(value_net: nn.Module, params: Params | None, batch: MacawBuffer) -> torch.Tensor:
    """``G_t + d_t · V(s_T)`` without gradient; just ``G_t`` when `params` is None."""
    if params is None:
        return batch.mc_return
    with torch.no_grad():
        return batch.mc_return + batch.terminal_discount * value_of(
            value_net, params, batch.terminal_obs
        )


def value_loss(
    value_net: nn.Module, params: Params, batch: MacawBuffer, target_params: Params | None
) -> torch.Tensor:
    """``E[(V_params(s) − sg[G + d V_target(s_T)])²]``; no bootstrap when `target_params` is None
    (the official inner value loss)."""
    return (
        (value_of(value_net, params, batch.obs) - mc_target(value_net, target_params, batch))
        .pow(2)
        .mean()
    )


def awr_weights(
    advantages: torch.Tensor, temperature: float, clip: float, eps: float
) -> torch.Tensor:
    """``exp(min((A − mean A) / ((std A + eps) · T), log clip))``; finite for any finite A.

    The std has Bessel's correction as in the official code, except for one sample (then 0).
    """
    if advantages.numel() == 0:
        return advantages
    centred = advantages - advantages.mean()
    std = advantages.std() if advantages.numel() > 1 else advantages.new_zeros(())
    norm = centred / ((std + eps) * temperature)
    return norm.clamp(max=math.log(clip)).exp()


@dataclass(frozen=True)
class PolicyLossParts:
    """The terms of a policy loss (for logging and tests)."""

    loss: torch.Tensor
    awr: torch.Tensor
    adv_regression: torch.Tensor | None
    advantages: torch.Tensor
    weights: torch.Tensor


def policy_loss(
    policy_net: nn.Module,
    params: Params,
    value_net: nn.Module,
    value_params: Params,
    batch: MacawBuffer,
    cfg: MacawConfig,
    adv_coef_raw: torch.Tensor | None = None,
) -> PolicyLossParts:
    """AWR loss ``−E[w log N(a; μ(s), σ²)]`` plus, when `adv_coef_raw` is given (inner loop),
    ``softplus(c) · E[(Â(s, a) − A)²]`` on the unnormalised advantages.

    Advantages ``A = G + d V(s_T) − V(s)`` use `value_params` without gradient, as officially.
    """
    with torch.no_grad():
        adv = mc_target(value_net, value_params, batch) - value_of(
            value_net, value_params, batch.obs
        )
        w = awr_weights(adv, cfg.temperature, cfg.exp_advantage_clip, cfg.advantage_eps)
    with_head = adv_coef_raw is not None and cfg.advantage_head is not None
    out = functional_call(
        policy_net, params, (batch.obs,), {"actions": batch.action if with_head else None}
    )
    mu, adv_pred = out if with_head else (out, None)
    log_prob = torch.distributions.Normal(mu, cfg.action_sigma).log_prob(batch.action).sum(-1)
    awr = -(log_prob * w).mean()
    adv_reg = None
    loss = awr
    if with_head:
        adv_reg = (adv_pred.squeeze(-1) - adv).pow(2).mean()
        loss = awr + F.softplus(adv_coef_raw) * adv_reg
    return PolicyLossParts(loss, awr, adv_reg, adv, w)


def _leaves(params: Params) -> Params:
    """Detached copies that require grad: the start of a first-order (test-time) inner step."""
    return {k: v.detach().requires_grad_(True) for k, v in params.items()}


class Macaw(nn.Module):
    """Value function, policy, learned per-tensor inner rates and the advantage coefficient."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: MacawConfig) -> None:
        super().__init__()
        self.cfg, self.obs_dim, self.act_dim = cfg, obs_dim, act_dim
        common = {
            "hidden": cfg.hidden_sizes,
            "weight_transform": cfg.weight_transform,
            "latent_dim": cfg.latent_dim,
        }
        self.value = MacawMLP(obs_dim, 1, **common)
        self.policy = MacawMLP(
            obs_dim, act_dim, tanh_output=True, advantage_head=cfg.advantage_head, **common
        )
        # Official init: the stored value is log(lr) and the rate used is softplus(stored).
        self.value_lr_raw = nn.ParameterList(
            nn.Parameter(torch.tensor(math.log(cfg.inner_value_lr)))
            for _ in self.value.parameters()
        )
        self.policy_lr_raw = nn.ParameterList(
            nn.Parameter(torch.tensor(math.log(cfg.inner_policy_lr)))
            for _ in self.policy.parameters()
        )
        self.adv_coef_raw = nn.Parameter(torch.tensor(math.log(cfg.advantage_head_coef)))

    def value_params(self) -> Params:
        return dict(self.value.named_parameters())

    def policy_params(self) -> Params:
        return dict(self.policy.named_parameters())

    def meta_parameters(self) -> list[torch.Tensor]:
        """The learned rates and the advantage coefficient (one Adam at ``lr_lr``)."""
        return [*self.value_lr_raw, *self.policy_lr_raw, self.adv_coef_raw]

    def adapt_value(
        self, batch: MacawBuffer, params: Params | None = None, *, create_graph: bool = True
    ) -> Params:
        """``φ' = φ − softplus(η_V) ⊙ ∇φ E[(V_φ(s) − G)²]`` (no bootstrap in the inner loss)."""
        params = self.value_params() if params is None else params
        loss = value_loss(self.value, params, batch, None)
        return inner_step(loss, params, list(self.value_lr_raw), create_graph=create_graph)

    def adapt_policy(
        self,
        batch: MacawBuffer,
        value_params: Params,
        params: Params | None = None,
        *,
        create_graph: bool = True,
    ) -> Params:
        """``θ' = θ − softplus(η_π) ⊙ ∇θ (L_AWR + softplus(c) L_ADV)`` with advantages from V_φ'."""
        params = self.policy_params() if params is None else params
        coef = self.adv_coef_raw if self.cfg.advantage_head is not None else None
        parts = policy_loss(self.policy, params, self.value, value_params, batch, self.cfg, coef)
        return inner_step(parts.loss, params, list(self.policy_lr_raw), create_graph=create_graph)

    def adapt(self, batch: MacawBuffer, steps: int = 1) -> tuple[Params, Params]:
        """Test-time adaptation: `steps` value steps, then `steps` policy steps, no graph kept."""
        vp = _leaves(self.value_params())
        for _ in range(steps):
            vp = _leaves(self.adapt_value(batch, vp, create_graph=False))
        vp = {k: v.detach() for k, v in vp.items()}
        pp = _leaves(self.policy_params())
        for _ in range(steps):
            pp = _leaves(self.adapt_policy(batch, vp, pp, create_graph=False))
        return vp, {k: v.detach() for k, v in pp.items()}

    def task_meta_loss(
        self, inner: MacawBuffer, outer: MacawBuffer, scale: float
    ) -> dict[str, torch.Tensor]:
        """Accumulate one task's meta-gradients (``.backward()``) and return its loss values as
        detached 0-d tensors (reading one as a number waits for the device: the caller does it
        when it logs, not five times per task).

        Value: inner step on `inner`, target ``φ̄ = α φ + (1−α) φ'``, outer bootstrapped loss on
        `outer`. Policy: inner step with advantages from ``φ'``, outer AWR loss on `outer`. Both
        outer losses are multiplied by `scale` (official: 1 / number of train tasks).
        """
        cfg = self.cfg
        phi = self.value_params()
        inner_v = value_loss(self.value, phi, inner, None)
        phi_adapted = inner_step(inner_v, phi, list(self.value_lr_raw), create_graph=True)
        a = cfg.target_value_alpha
        target = {k: (a * phi[k] + (1 - a) * phi_adapted[k]).detach() for k in phi}
        outer_v = value_loss(self.value, phi_adapted, outer, target)
        (outer_v * scale).backward()

        phi_fixed = {k: v.detach() for k, v in phi_adapted.items()}
        theta = self.policy_params()
        coef = self.adv_coef_raw if cfg.advantage_head is not None else None
        inner_p = policy_loss(self.policy, theta, self.value, phi_fixed, inner, cfg, coef)
        theta_adapted = inner_step(inner_p.loss, theta, list(self.policy_lr_raw), create_graph=True)
        outer_p = policy_loss(self.policy, theta_adapted, self.value, phi_fixed, outer, cfg, None)
        (outer_p.loss * scale).backward()
        return {
            "value_inner": inner_v.detach(),
            "value_outer": outer_v.detach(),
            "policy_inner": inner_p.loss.detach(),
            "policy_outer": outer_p.loss.detach(),
            "adv_regression": inner_v.new_tensor(float("nan"))
            if inner_p.adv_regression is None
            else inner_p.adv_regression.detach(),
        }

    @torch.no_grad()
    def act(self, policy_params: Params | None, obs: torch.Tensor) -> torch.Tensor:
        """Mean action in [-1, 1] (normalised units) under `policy_params` (meta-params if None)."""
        params = self.policy_params() if policy_params is None else policy_params
        return functional_call(self.policy, params, (obs,))


def make_optimizers(model: Macaw) -> dict[str, torch.optim.Optimizer]:
    """Adam for φ (``value_lr``), θ (``policy_lr``), learned rates + coefficient (``lr_lr``)."""
    cfg = model.cfg
    return {
        "value": torch.optim.Adam(model.value.parameters(), lr=cfg.value_lr),
        "policy": torch.optim.Adam(model.policy.parameters(), lr=cfg.policy_lr),
        "meta": torch.optim.Adam(model.meta_parameters(), lr=cfg.lr_lr),
    }


def meta_step(
    model: Macaw,
    optimizers: dict[str, torch.optim.Optimizer],
    buffers: Sequence[MacawBuffer],
    rng: np.random.Generator,
) -> dict[str, torch.Tensor]:
    """One meta-training step: `task_batch_size` tasks, gradients summed, one Adam step each.

    Returns the losses averaged over the sampled tasks, as 0-d tensors on the model's device:
    nothing here waits for the device (on a GPU shared by several seeds' processes each wait is
    a turn lost), so read them (``float``) only when logging.
    """
    cfg = model.cfg
    for opt in optimizers.values():
        opt.zero_grad(set_to_none=True)
    n_tasks = len(buffers)
    chosen = rng.choice(n_tasks, size=min(cfg.task_batch_size, n_tasks), replace=False)
    totals: dict[str, torch.Tensor] = {}
    for i in chosen:
        buf = buffers[int(i)]
        inner = sample_batch(buf, cfg.inner_batch_size, rng, contiguous=cfg.contiguous_inner)
        outer = sample_batch(buf, cfg.batch_size, rng)
        # Official scaling: the outer losses are divided by the number of *train* tasks.
        stats = model.task_meta_loss(inner, outer, scale=1.0 / n_tasks)
        for k, v in stats.items():
            totals[k] = totals[k] + v / len(chosen) if k in totals else v / len(chosen)
    for opt in optimizers.values():
        opt.step()
    return totals
