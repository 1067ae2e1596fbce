"""The Gaussian action head, sampling in evaluation, the blinded control and summary.json."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from icrl.ad import ContextDataset, EvalConfig, FullContext, evaluate, load_model, train
from icrl.ad._evaluate import rollout
from icrl.ad._tokens import TokenBuilder
from icrl.ad._train import action_losses
from icrl.metaenvs import make_vector_env, test_tasks


def test_gaussian_nll_is_the_normal_log_likelihood() -> None:
    mean = torch.tensor([[[0.1, -0.2]]])
    log_std = torch.tensor([[[-1.0, 0.5]]])
    target = torch.tensor([[[0.3, 0.4]]])
    mask = torch.ones(1, 1)
    loss, mse = action_losses(mean, log_std, target, mask)
    normal = torch.distributions.Normal(mean, log_std.exp())
    want = -(normal.log_prob(target) + 0.5 * math.log(2 * math.pi)).mean()
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)
    assert mse.item() == pytest.approx(((mean - target) ** 2).mean().item())
    mse_only, same = action_losses(mean, None, target, mask)
    assert mse_only.item() == same.item() == pytest.approx(mse.item())


@pytest.fixture(scope="module")
def gaussian_run(tmp_path_factory, histories_file, short_run):
    run = tmp_path_factory.mktemp("gauss") / "run"
    train(short_run([histories_file], 3, {"n_layers": 1, "action_head": "gaussian"}), run)
    return run


def _rollout(model, **kwargs) -> np.ndarray:
    envs = make_vector_env("ReacherGoal", test_tasks("ReacherGoal", 2), asynchronous=False,
                           autoreset_mode=AutoresetMode.DISABLED)  # fmt: skip
    try:
        return rollout(model, envs, 2, seed=3, device=torch.device("cpu"), **kwargs)
    finally:
        envs.close()


def test_gaussian_head_samples_reproducibly_and_differs_from_its_mean(gaussian_run) -> None:
    model, _ = load_model(gaussian_run)
    assert model.gaussian and model.head.out_features == 2 * model.act_dim
    sampled = _rollout(model, sample=True)
    np.testing.assert_array_equal(sampled, _rollout(model, sample=True))  # seeded
    assert not np.array_equal(sampled, _rollout(model, sample=False))


def _first_actions(model, **kwargs) -> np.ndarray:
    """The action each sub-env executed at its first step (read from the second token)."""
    tokens: list[np.ndarray] = []
    _rollout(model, on_token=lambda f: tokens.append(f.copy()), **kwargs)
    return tokens[1][:, model.layout.slices["prev_action"]]


def test_std_scale_scales_the_sampling_noise_only(gaussian_run) -> None:
    model, _ = load_model(gaussian_run)
    mean = _first_actions(model, sample=False)
    full = _first_actions(model, sample=True)
    half = _first_actions(model, sample=True, std_scale=0.5)
    inside = np.abs(full) < 1.0  # unclipped by the action space [-1, 1]
    assert inside.any() and not np.allclose(full, mean)
    np.testing.assert_allclose((half - mean)[inside], 0.5 * (full - mean)[inside], atol=1e-5)
    with pytest.raises(ValueError, match="std_scale"):
        _rollout(model, sample=False, std_scale=0.5)
    with pytest.raises(ValueError, match=r"std_scale=0.5 scales the sampling noise"):
        EvalConfig(sample=False, std_scale=0.5)


def test_sampling_needs_a_gaussian_head(tmp_path, record, tiny) -> None:
    ds = ContextDataset.from_histories({"a": record(episodes=2)}, context=FullContext())
    train(tiny(max_steps=1), tmp_path / "run", dataset=ds)
    model, _ = load_model(tmp_path / "run")
    with pytest.raises(ValueError, match="Gaussian"):
        _rollout(model, sample=True)


def test_blinded_builder_hides_rewards_only() -> None:
    obs, act = np.ones((2, 3)), np.full((2, 2), 0.5)
    seen, blind = TokenBuilder(2, 3, 2), TokenBuilder(2, 3, 2, reward_ablation="zero")
    for builder in (seen, blind):
        builder.token(obs, np.ones(2, bool))
        builder.record(act, np.array([-1.5, 2.0]), obs * 2)
    a, b = seen.token(obs, np.zeros(2, bool)), blind.token(obs, np.zeros(2, bool))
    r = seen.layout.slices["prev_reward"]
    assert (a[:, r] != 0).all() and (b[:, r] == 0).all()
    keep = np.ones(a.shape[1], bool)
    keep[r] = False
    np.testing.assert_array_equal(a[:, keep], b[:, keep])


def test_evaluate_writes_the_summary_of_record(gaussian_run, tmp_path) -> None:
    cfg = EvalConfig(n_tasks=2, episodes=3, reference_episodes=1, progress=False,
                     asynchronous=False, device="cpu")  # fmt: skip
    res = evaluate(cfg, [gaussian_run], tmp_path / "eval")
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    method = summary[res.method]
    assert {"first_mean", "first_ci95", "last10_mean", "last10_ci95"} <= set(method)
    assert method["first_mean"] == pytest.approx(res.returns[..., 0].mean())
    assert method["last10_mean"] == pytest.approx(res.returns.mean())  # 3 episodes < 10
    refs = summary["references"]
    assert set(refs) == {"source_first", "source_final", "random", "zero"}
    assert all(isinstance(v, float) for v in refs.values())


def test_uniform_sampling_noise_has_unit_variance_and_bounded_support() -> None:
    from icrl.ad._evaluate import sampling_noise

    gen = torch.Generator().manual_seed(0)
    u = sampling_noise((200_000,), "uniform", gen, torch.device("cpu"))
    g = sampling_noise((200_000,), "gaussian", gen, torch.device("cpu"))
    assert u.abs().max().item() <= math.sqrt(3.0)  # a uniform's half-width sqrt(3) * std
    assert u.var().item() == pytest.approx(1.0, abs=0.01)
    assert g.var().item() == pytest.approx(1.0, abs=0.01)
    assert g.abs().max().item() > 3.0  # the Gaussian's tails, which the uniform blend lacks


def test_uniform_sampled_actions_stay_within_sqrt3_stds_of_the_mean(gaussian_run) -> None:
    model, _ = load_model(gaussian_run)
    tokens: list[np.ndarray] = []
    _rollout(model, sample=True, noise="uniform", on_token=lambda f: tokens.append(f.copy()))
    with torch.inference_mode():  # the head's mean and std at the first step, from its token
        out, _ = model.step(torch.from_numpy(tokens[0]), model.init_state(len(tokens[0])))
        mean, log_std = (x.numpy() for x in model.split(out.float()))
    taken = tokens[1][:, model.layout.slices["prev_action"]]
    inside = np.abs(taken) < 1.0  # unclipped by the action space [-1, 1]
    z = (taken - mean) / np.exp(log_std) / math.sqrt(3.0)
    assert inside.any() and np.all(np.abs(z[inside]) <= 1.0 + 1e-4)
    assert not np.allclose(taken, _first_actions(model, sample=True))  # another draw than randn
    with pytest.raises(ValueError, match="noise='uniform' shapes the sampling noise"):
        _rollout(model, sample=False, noise="uniform")
    with pytest.raises(ValueError, match="sample_noise='uniform' shapes the sampling noise"):
        EvalConfig(sample=False, sample_noise="uniform")
