"""Propensity classifier, importance weights and ESS of MQL's adaptation."""

import math

import pytest
import torch

from icrl.baselines.mql import (
    effective_sample_size,
    fit_propensity,
    propensity_weights,
)


def _gaussians(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """new ~ N(mu, I), meta ~ N(0, I): log p_new/p_meta = mu·x - |mu|²/2, linear in x."""
    g = torch.Generator().manual_seed(seed)
    mu = torch.tensor([0.8, -0.5, 0.3])
    x_new = torch.randn(n, 3, generator=g) + mu
    x_meta = torch.randn(n, 3, generator=g)
    return x_new, x_meta, mu


def test_weights_recover_known_density_ratio() -> None:
    x_new, x_meta, mu = _gaussians(4000)
    prop = fit_propensity(x_new, x_meta, c=0.1)
    # evaluate where meta samples live (Phase B weights meta samples), without clip / zeroing
    x = torch.randn(2000, 3, generator=torch.Generator().manual_seed(1))
    beta = propensity_weights(prop, x, beta_clip=50.0, zero_below=0.0)
    true_log_ratio = x @ mu - 0.5 * mu.dot(mu)
    err = (beta.log() - true_log_ratio).abs()
    assert torch.corrcoef(torch.stack([beta.log(), true_log_ratio]))[0, 1] > 0.99
    assert err.median() < 0.1, f"median |log β - log ratio| = {err.median():.3f}"
    # the learned direction is mu (up to sampling error): coef ≈ -mu for the +1 = meta label
    assert torch.allclose(prop.coef, -mu, atol=0.1)


def test_fit_is_the_sklearn_optimum() -> None:
    """At the solution the gradient of ½‖w‖² + C Σ log(1+e^{-y f}) vanishes (w and b)."""
    x_new, x_meta, _ = _gaussians(500, seed=3)
    c = 0.05
    prop = fit_propensity(x_new, x_meta, c=c)
    x = torch.cat([x_new, x_meta]).double()
    y = torch.cat([-torch.ones(500), torch.ones(500)]).double()
    w = prop.coef.double().requires_grad_(True)
    b = prop.intercept.double().requires_grad_(True)
    loss = 0.5 * w.dot(w) + c * torch.nn.functional.softplus(-y * (x @ w + b)).sum()
    gw, gb = torch.autograd.grad(loss, [w, b])
    assert gw.abs().max() < 1e-4 and gb.abs() < 1e-4


def test_clipping_and_zeroing() -> None:
    x_new, x_meta, _ = _gaussians(1000)
    prop = fit_propensity(x_new, x_meta)
    x = torch.linspace(-6, 6, 200)[:, None] * torch.tensor([[0.8, -0.5, 0.3]])
    beta = propensity_weights(prop, x, beta_clip=1.0)
    assert beta.max() <= math.e + 1e-5
    assert torch.isclose(beta.max(), torch.tensor(math.e))  # far on the new side: capped
    assert (beta == 0).any()  # far on the meta side: below 0.1, dropped
    assert ((beta == 0) | (beta >= 0.1)).all()


def test_ess_formula() -> None:
    n = 64
    assert effective_sample_size(torch.ones(n)).item() == pytest.approx(1.0)
    one_hot = torch.zeros(n)
    one_hot[5] = 3.0
    assert effective_sample_size(one_hot).item() == pytest.approx(1 / n)
    b = torch.tensor([1.0, 2.0, 3.0])
    assert effective_sample_size(b).item() == pytest.approx(36 / (3 * 14))
    assert effective_sample_size(7 * b).item() == pytest.approx(36 / (3 * 14))  # scale-free
    assert effective_sample_size(torch.zeros(4)).item() == 0.0


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="features must be"):
        fit_propensity(torch.zeros(3, 2), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="C must be"):
        fit_propensity(torch.zeros(3, 2), torch.zeros(3, 2), c=0)
