"""MACAW's pieces on CPU: weight-transform layers, returns-to-go, AWR weights, meta-gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from icrl.baselines.macaw import (
    Macaw,
    MacawConfig,
    MacawMLP,
    WLinear,
    awr_weights,
    build_macaw_buffer,
    inner_step,
    sample_batch,
)
from icrl.baselines.macaw._algo import policy_loss
from icrl.baselines.macaw._data import returns_to_go


def test_inner_step_on_scalar_quadratic_matches_hand_derivation() -> None:
    a, b, c, d = 3.0, 2.0, 0.5, -1.0
    theta = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    raw = torch.tensor(-1.3, dtype=torch.float64, requires_grad=True)
    alpha = math.log1p(math.exp(-1.3))  # softplus(raw)
    inner = 0.5 * a * (theta - c) ** 2
    new = inner_step(inner, {"theta": theta}, [raw])["theta"]
    expected_new = 1.7 - alpha * a * (1.7 - c)
    assert new.item() == pytest.approx(expected_new, rel=1e-12)

    outer = 0.5 * b * (new - d) ** 2
    g_theta, g_raw = torch.autograd.grad(outer, [theta, raw])
    dl = b * (expected_new - d)
    sigmoid = 1.0 / (1.0 + math.exp(1.3))  # d softplus / d raw
    assert g_theta.item() == pytest.approx(dl * (1 - alpha * a), rel=1e-12)
    assert g_raw.item() == pytest.approx(dl * (-a * (1.7 - c)) * sigmoid, rel=1e-12)


def test_inner_step_first_order_option_and_unused_tensors() -> None:
    p = {
        "w": torch.tensor(2.0, requires_grad=True),
        "unused": torch.tensor(5.0, requires_grad=True),
    }
    raws = [torch.tensor(0.0, requires_grad=True), torch.tensor(0.0, requires_grad=True)]
    new = inner_step((p["w"] ** 2), p, raws, create_graph=False)
    assert new["unused"] is p["unused"]
    assert new["w"].item() == pytest.approx(2.0 - math.log(2.0) * 4.0)
    with pytest.raises(ValueError, match="learned rates"):
        inner_step(p["w"] ** 2, p, raws[:1])


def test_wlinear_equals_hand_built_linear_map() -> None:
    torch.manual_seed(0)
    layer = WLinear(4, 3, latent_dim=7)
    x = torch.randn(5, 4)
    theta = layer.fc.weight @ layer.z + layer.fc.bias
    w, bias = theta[:12].reshape(4, 3), theta[12:]
    torch.testing.assert_close(layer(x), x @ w + bias)
    n_params = sum(p.numel() for p in layer.parameters())
    assert n_params == 7 + 8 * (4 * 3 + 3)
    # Official sizes: a 100×100 layer with latent 100 has about 1.02 M parameters.
    assert sum(p.numel() for p in WLinear(100, 100).parameters()) == 100 + 101 * 10_100


def test_mlp_advantage_head_reads_preactivation_and_action() -> None:
    torch.manual_seed(1)
    net = MacawMLP(3, 2, (6, 5), tanh_output=True, advantage_head=(4,), weight_transform=False)
    x, act = torch.randn(8, 3), torch.randn(8, 2)
    l0, l1, l2 = net.layers
    h = l1(F.relu(l0(x)))
    mu = torch.tanh(l2(F.relu(h)))
    h0, h1 = net.head
    adv = h1(F.relu(h0(F.relu(torch.cat((h, act), -1)))))
    out_mu, out_adv = net(x, act)
    torch.testing.assert_close(out_mu, mu)
    torch.testing.assert_close(out_adv, adv)
    torch.testing.assert_close(net(x), mu)
    assert h0.in_features == 5 + 2


def _brute_force(reward, ends, gamma):
    n = len(reward)
    g, disc = np.zeros(n), np.zeros(n)
    start = 0
    for end in np.flatnonzero(ends):
        for t in range(start, end + 1):
            g[t] = sum(gamma ** (k - t) * reward[k] for k in range(t, end + 1))
            disc[t] = gamma ** (end + 1 - t)
        start = end + 1
    return g, disc


def test_returns_to_go_match_brute_force_across_boundaries() -> None:
    rng = np.random.default_rng(0)
    # Episodes: 5 steps truncated, 3 steps terminated, 4 steps whose episode index changes with no
    # flag (a k-downsampled gap), and a final unfinished 3 steps.
    lengths, term = [5, 3, 4, 3], [False, True, False, False]
    episode = np.concatenate([np.full(n, i * 10) for i, n in enumerate(lengths)])
    terminated = np.zeros(15, bool)
    truncated = np.zeros(15, bool)
    truncated[4] = True
    terminated[7] = True
    reward = rng.normal(size=15)
    obs = rng.normal(size=(15, 2)).astype(np.float32)
    next_obs = rng.normal(size=(15, 2)).astype(np.float32)
    ends = np.zeros(15, bool)
    ends[np.cumsum(lengths) - 1] = True
    gamma = 0.9
    g, disc = _brute_force(reward, ends, gamma)

    def build(**options):
        return build_macaw_buffer(
            obs, np.zeros((15, 1)), reward, next_obs, terminated, truncated, episode,
            gamma=gamma, **options,
        )  # fmt: skip

    buf = build()
    np.testing.assert_allclose(buf.mc_return.numpy(), g, rtol=1e-5)
    expected_d = disc.copy()
    expected_d[5:8] = 0.0  # true termination: no bootstrap (our default)
    np.testing.assert_allclose(buf.terminal_discount.numpy(), expected_d, rtol=1e-5)
    last = np.repeat(np.cumsum(lengths) - 1, lengths)
    np.testing.assert_array_equal(buf.terminal_obs.numpy(), next_obs[last])
    np.testing.assert_array_equal(buf.terminated.numpy(), np.repeat(term, lengths))

    official = build(official_terminal_bootstrap=True)
    np.testing.assert_allclose(official.terminal_discount.numpy(), disc, rtol=1e-5)

    skipped = build(skip=7)
    np.testing.assert_allclose(skipped.mc_return.numpy(), g[::7], rtol=1e-5)
    np.testing.assert_array_equal(skipped.obs.numpy(), obs[::7])


def test_returns_to_go_reverse_scan_equals_closed_form() -> None:
    r = np.array([1.0, 2.0, 3.0])
    g, d, last = returns_to_go(r, np.array([False, False, True]), np.zeros(3, bool), 0.5)
    np.testing.assert_allclose(g, [1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3])
    np.testing.assert_allclose(d, [0.125, 0.25, 0.5])
    np.testing.assert_array_equal(last, [2, 2, 2])


def test_buffer_normalises_actions_and_rejects_bad_input() -> None:
    obs = np.zeros((4, 2), np.float32)
    act = np.array([[-2.0], [2.0], [0.0], [1.0]])
    buf = build_macaw_buffer(
        obs,
        act,
        np.zeros(4),
        obs,
        np.zeros(4, bool),
        np.zeros(4, bool),
        action_low=-2.0,
        action_high=2.0,
    )
    np.testing.assert_allclose(buf.action.numpy()[:, 0], [-1, 1, 0, 0.5])
    with pytest.raises(ValueError, match="'reward' has shape"):
        build_macaw_buffer(obs, act, np.zeros(3), obs, np.zeros(4, bool), np.zeros(4, bool))
    with pytest.raises(ValueError, match="skip"):
        build_macaw_buffer(obs, act, np.zeros(4), obs, np.zeros(4, bool), np.zeros(4, bool), skip=0)


def test_sample_batch_contiguous_uniform_and_small_buffers() -> None:
    n = 50
    obs = np.arange(n, dtype=np.float32)[:, None]
    buf = build_macaw_buffer(
        obs,
        obs,
        np.zeros(n),
        obs,
        np.zeros(n, bool),
        np.zeros(n, bool),
        action_low=-100,
        action_high=100,
    )
    rng = np.random.default_rng(0)
    c = sample_batch(buf, 10, rng, contiguous=True).obs[:, 0].numpy()
    np.testing.assert_array_equal(np.diff(c), np.ones(9))
    u = sample_batch(buf, 10, rng).obs[:, 0].numpy()
    assert len(set(u.tolist())) == 10
    assert len(sample_batch(buf, 80, rng)) == n


@pytest.mark.parametrize(
    "adv",
    [
        torch.full((16,), 3.0),  # constant: std 0
        torch.tensor([5.0]),  # a single sample: std undefined
        torch.tensor([1e30, -1e30, 0.0, 1.0]),  # huge spread
        torch.tensor([1e-30, 0.0, 2e-30]),  # tiny spread
    ],
)
def test_advantage_normalisation_never_nan(adv: torch.Tensor) -> None:
    w = awr_weights(adv, temperature=1.0, clip=20.0, eps=1e-8)
    assert torch.isfinite(w).all()
    assert (w > 0).all() and (w <= 20.0 + 1e-4).all()


def test_awr_weights_normalise_and_clip() -> None:
    adv = torch.tensor([0.0, 1.0, 2.0, 30.0])
    w = awr_weights(adv, temperature=1.0, clip=20.0, eps=0.0)
    norm = (adv - adv.mean()) / adv.std()
    torch.testing.assert_close(w, norm.clamp(max=math.log(20.0)).exp())
    torch.testing.assert_close(awr_weights(torch.full((5,), 7.0), 1.0, 20.0, 1e-8), torch.ones(5))


def _tiny_model(seed: int = 0, **kw) -> Macaw:
    torch.manual_seed(seed)
    cfg = MacawConfig(hidden_sizes=(6, 5), latent_dim=3, advantage_head=(4,), **kw)
    return Macaw(3, 2, cfg).double()


def _tiny_batch(seed: int = 0, n: int = 12):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, 3))
    buf = build_macaw_buffer(
        obs,
        rng.uniform(-1, 1, (n, 2)),
        rng.normal(size=n),
        rng.normal(size=(n, 3)),
        np.zeros(n, bool),
        np.arange(n) % 4 == 3,
        np.arange(n) // 4,
        gamma=0.9,
    )
    return buf.__class__(
        **{k: (v.double() if v.is_floating_point() else v) for k, v in buf.__dict__.items()}
    )


def test_policy_meta_gradient_matches_finite_differences() -> None:
    """∂ L_AWR(θ'(θ, η, c)) / ∂(θ, η, c) with second-order terms, against central differences."""
    model = _tiny_model()
    inner, outer = _tiny_batch(1), _tiny_batch(2)
    vp = {k: v.detach() for k, v in model.value_params().items()}

    def meta_loss() -> torch.Tensor:
        theta = model.policy_params()
        pin = policy_loss(
            model.policy, theta, model.value, vp, inner, model.cfg, model.adv_coef_raw
        )
        adapted = inner_step(pin.loss, theta, list(model.policy_lr_raw), create_graph=True)
        return policy_loss(model.policy, adapted, model.value, vp, outer, model.cfg, None).loss

    # Large inner rates so the second-order terms matter.
    with torch.no_grad():
        for p in model.policy_lr_raw:
            p.fill_(-1.0)
    loss = meta_loss()
    checked = [
        model.policy.layers[0].z,
        model.policy.layers[1].fc.weight,
        model.policy.head[0].z,
        model.policy_lr_raw[0],
        model.policy_lr_raw[4],
        model.adv_coef_raw,
    ]
    grads = torch.autograd.grad(loss, checked)
    h = 1e-6
    for p, g in zip(checked, grads, strict=True):
        flat = p.data.view(-1)
        for i in range(min(3, flat.numel())):
            old = flat[i].item()
            flat[i] = old + h
            up = meta_loss().item()
            flat[i] = old - h
            down = meta_loss().item()
            flat[i] = old
            fd = (up - down) / (2 * h)
            assert g.view(-1)[i].item() == pytest.approx(fd, rel=1e-5, abs=1e-8)


def test_task_meta_loss_reaches_every_meta_parameter() -> None:
    model = _tiny_model()
    stats = model.task_meta_loss(_tiny_batch(3), _tiny_batch(4), scale=1.0)
    assert all(math.isfinite(v) for v in stats.values())
    policy_names = [n for n, _ in model.policy.named_parameters()]
    head_lrs = {f"policy_lr_raw.{i}" for i, n in enumerate(policy_names) if n.startswith("head.")}
    for name, p in model.named_parameters():
        if name in head_lrs:
            # The adapted head is not used by the outer AWR loss, so its rates get no gradient
            # (as in the official code); the head itself learns through the inner step.
            assert p.grad is None, name
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_value_meta_gradient_uses_adapted_parameters() -> None:
    """The value meta-gradient equals d/dφ of L_out(φ − α∇L_in(φ)) with the target held fixed."""
    model = _tiny_model()
    inner, outer = _tiny_batch(5), _tiny_batch(6)
    with torch.no_grad():
        for p in model.value_lr_raw:
            p.fill_(-0.5)
    model.task_meta_loss(inner, outer, scale=1.0)
    z = model.value.layers[0].z
    got = z.grad[:3].clone()

    # Recompute by finite differences on z, holding the bootstrap target at its original value.
    from icrl.baselines.macaw._algo import value_loss, value_of

    phi0 = {k: v.detach().clone() for k, v in model.value_params().items()}
    loss_in = value_loss(model.value, model.value_params(), inner, None)
    adapted = inner_step(loss_in, model.value_params(), list(model.value_lr_raw))
    a = model.cfg.target_value_alpha
    target = {k: (a * phi0[k] + (1 - a) * adapted[k]).detach() for k in phi0}
    fixed_y = (
        outer.mc_return
        + outer.terminal_discount * value_of(model.value, target, outer.terminal_obs).detach()
    )

    def f() -> float:
        params = model.value_params()
        li = value_loss(model.value, params, inner, None)
        ad = inner_step(li, params, list(model.value_lr_raw), create_graph=True)
        return (value_of(model.value, ad, outer.obs) - fixed_y).pow(2).mean().item()

    h = 1e-6
    for i in range(3):
        old = z.data[i].item()
        z.data[i] = old + h
        up = f()
        z.data[i] = old - h
        down = f()
        z.data[i] = old
        assert got[i].item() == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-8)


def test_test_time_adapt_is_the_training_inner_step() -> None:
    from icrl.baselines.macaw._algo import value_loss

    model = _tiny_model(3)
    batch = _tiny_batch(7)
    vp, pp = model.adapt(batch)
    phi = model.value_params()
    phi1 = inner_step(value_loss(model.value, phi, batch, None), phi, list(model.value_lr_raw))
    phi1 = {k: v.detach() for k, v in phi1.items()}
    theta = model.policy_params()
    pin = policy_loss(model.policy, theta, model.value, phi1, batch, model.cfg, model.adv_coef_raw)
    theta1 = inner_step(pin.loss, theta, list(model.policy_lr_raw))
    for k in phi1:
        torch.testing.assert_close(vp[k], phi1[k])
    for k in theta1:
        torch.testing.assert_close(pp[k], theta1[k].detach())
    assert any(not torch.equal(pp[k], theta[k]) for k in theta)


def test_rollouts_act_on_a_cpu_copy_beside_a_gpu() -> None:
    from icrl.baselines.macaw._eval import _acting_copy

    model = _tiny_model(3)
    cpu = torch.device("cpu")
    assert _acting_copy(model, cpu, "cpu") == (model, cpu)  # already on the CPU: no copy
    assert _acting_copy(model, torch.device("cuda"), "model")[0] is model
    # a model said to be on a GPU (only its device is read) gets a frozen CPU copy
    copy, device = _acting_copy(model, torch.device("cuda"), "cpu")
    assert copy is not model and device == cpu
    assert all(not p.requires_grad for p in copy.parameters())
    obs = torch.randn(4, model.obs_dim, dtype=torch.float64)  # the tiny model is double
    _, pp = model.adapt(_tiny_batch(7))
    moved = {k: v.to(device) for k, v in pp.items()}
    torch.testing.assert_close(copy.act(moved, obs), model.act(pp, obs), rtol=0, atol=0)
