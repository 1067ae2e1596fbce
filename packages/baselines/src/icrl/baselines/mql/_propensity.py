"""Propensity (logistic) classifier, importance weights and effective sample size for MQL.

The official code fits ``sklearn.linear_model.LogisticRegression(solver='lbfgs', C=λ_csc,
max_iter=2000)`` with the new task's samples labelled -1 and the meta-train samples +1, then
uses ``β(x) = exp(-max(f(x), -β_clip))`` with ``f(x) = w·x + b``, zeroing ``β < 0.1``. With
balanced classes ``exp(-f) ≈ p_new(x) / p_meta(x)``. We minimise the same objective
(``½‖w‖² + C Σ log(1 + exp(-y f(x)))``, intercept not penalised) with torch's L-BFGS, so the
package needs no scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Propensity:
    """A fitted linear classifier: ``f(x) = x @ coef + intercept`` (positive: meta-train)."""

    coef: torch.Tensor
    intercept: torch.Tensor

    def logit(self, x: torch.Tensor) -> torch.Tensor:
        """``f(x)``: log-odds that `x` comes from the meta-train tasks."""
        return x.to(self.coef) @ self.coef + self.intercept


def fit_propensity(
    x_new: torch.Tensor, x_meta: torch.Tensor, c: float = 0.1, max_iter: int = 2000
) -> Propensity:
    """Fit the L2 logistic classifier new (label -1) vs meta (label +1), as sklearn with C=`c`."""
    if x_new.ndim != 2 or x_meta.ndim != 2 or x_new.shape[1] != x_meta.shape[1]:
        raise ValueError(
            f"fit_propensity: features must be (n, d) with one d, got {tuple(x_new.shape)} "
            f"and {tuple(x_meta.shape)}"
        )
    if len(x_new) == 0 or len(x_meta) == 0:
        raise ValueError("fit_propensity: both classes need at least one sample")
    if c <= 0:
        raise ValueError(f"fit_propensity: C must be > 0, got {c}")
    x = torch.cat([x_new, x_meta]).detach().to(torch.float64).cpu()
    y = torch.cat([-torch.ones(len(x_new)), torch.ones(len(x_meta))]).to(torch.float64)
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = 0.5 * w.dot(w) + c * torch.nn.functional.softplus(-y * (x @ w + b)).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return Propensity(coef=w.detach().float(), intercept=b.detach().float())


def propensity_weights(
    prop: Propensity, x: torch.Tensor, beta_clip: float = 1.0, zero_below: float = 0.1
) -> torch.Tensor:
    """Importance weights ``β = exp(-max(f(x), -β_clip))`` ≈ p_new/p_meta, ``β < 0.1`` → 0.

    The clip caps β at ``exp(β_clip)``; the zeroing drops meta samples that look nothing like
    the new task (official code, ``get_propensity``).
    """
    f = prop.logit(x).clamp(min=-beta_clip)
    beta = torch.exp(-f)
    return torch.where(beta < zero_below, torch.zeros_like(beta), beta)


def effective_sample_size(beta: torch.Tensor) -> torch.Tensor:
    """Normalised ESS ``(Σβ)² / (N Σβ²)`` in [1/N, 1]; 0 when every weight is 0."""
    if beta.numel() == 0:
        raise ValueError("effective_sample_size: no weights")
    denom = beta.numel() * (beta * beta).sum()
    # where, not `if denom <= 0`: a branch on a device value waits for the device
    ess = beta.sum() ** 2 / torch.where(denom > 0, denom, torch.ones_like(denom))
    return torch.where(denom > 0, ess, torch.zeros_like(ess))
