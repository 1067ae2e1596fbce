"""MQL test-time adaptation: propensity weights, Phase A on new data, Phase B on the meta buffer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from icrl.baselines.mql._agent import MQLAgent
from icrl.baselines.mql._buffer import MultiTaskReplay
from icrl.baselines.mql._propensity import (
    effective_sample_size,
    fit_propensity,
    propensity_weights,
)


@dataclass(frozen=True)
class AdaptStats:
    """Diagnostics of one adaptation."""

    n_new: int
    """Transitions of the new task used."""
    beta_mean: float
    """Mean importance weight over Phase B batches."""
    ess: float
    """Mean normalised ESS of Phase B batches."""
    prox_coef: float
    """Mean proximal weight λ used in Phase B."""


def _hist_tensor(buf: MultiTaskReplay, idx: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(buf.histories(idx)[0], device=device)


def mql_adapt(
    meta: MQLAgent, new: MultiTaskReplay, replay: MultiTaskReplay, rng: np.random.Generator
) -> tuple[MQLAgent, AdaptStats]:
    """Adapt a copy of the meta-trained `meta` to the task whose transitions are in `new`.

    1. Fit the propensity classifier on the meta actor's context features: all of `new` (label
       -1) against ``len(new) // n_train + 2`` samples of each train task's snapshot (+1).
    2. Phase A: ``snap_iters`` TD3 updates on `new`, batch = ``len(new)`` drawn with replacement.
    3. Phase B: ``main_snap_iters`` TD3 updates on `replay` (batch ``sample_mult × batch_size``),
       each sample weighted by β, plus ``λ‖θ − θ_meta‖²`` on actor and critic.

    `meta` is left untouched (the official code saves and rolls back instead); the copy gets
    fresh Adam optimisers at ``adapt_lr``.
    """
    cfg, device = meta.cfg, meta.device
    n_new = len(new)
    if n_new == 0:
        raise ValueError("adapt: the new task's buffer is empty; collect an episode first")
    new_idx = np.arange(n_new)
    n_train = replay.snap.shape[0]
    per_task = n_new // n_train + 2
    meta_idx = []
    for t in range(n_train):
        pool = replay.snapshot_indices(t)
        if len(pool):
            meta_idx.append(rng.choice(pool, size=per_task, replace=len(pool) < per_task))
    if not meta_idx:
        raise ValueError("adapt: the meta replay buffer holds no train-task snapshot")
    prop = fit_propensity(
        meta.actor_context(_hist_tensor(new, new_idx, device)),
        meta.actor_context(_hist_tensor(replay, np.concatenate(meta_idx), device)),
        c=cfg.csc_c,
    )

    agent = meta.clone(lr=cfg.adapt_lr)
    for _ in range(cfg.snap_iters):
        agent.update(new.batch(rng.integers(0, n_new, size=n_new), device))

    # the diagnostics stay on the device until the end: a float() per update waits for it, and
    # on a GPU time-shared by several seeds' processes each wait is a turn lost
    betas, esss, lams = [], [], []
    for _ in range(cfg.main_snap_iters):
        batch = replay.batch(replay.sample_indices(cfg.sample_mult * cfg.batch_size, rng), device)
        # β from the meta actor's features, the ones the classifier was fitted on
        beta = propensity_weights(prop, meta.actor_context(batch["hist"]), cfg.beta_clip)
        ess = effective_sample_size(beta)
        lam = 1.0 - float(ess) if cfg.use_ess_prox else cfg.prox_coef
        agent.update(batch, beta=beta.to(device), anchor=meta, prox_coef=lam)
        betas.append(beta.mean())
        esss.append(ess)
        lams.append(lam)
    stats = AdaptStats(
        n_new=n_new,
        beta_mean=float(torch.stack(betas).mean()) if betas else float("nan"),
        ess=float(torch.stack(esss).mean()) if esss else float("nan"),
        prox_coef=float(np.mean(lams)) if lams else float("nan"),
    )
    return agent, stats
