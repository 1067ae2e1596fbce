"""TD3 with context: proximal term, delayed actor, weighted updates, adaptation copies."""

import numpy as np
import pytest
import torch

from icrl.baselines.mql import MQLAgent, MultiTaskReplay, mql_preset, prox_penalty

OBS, ACT, H = 4, 2, 3


def _agent(**overrides: object) -> MQLAgent:
    torch.manual_seed(0)
    cfg = mql_preset("ReacherGoal", "tiny", hist_len=H, **overrides)
    return MQLAgent(OBS, ACT, cfg, torch.device("cpu"))


def _batch(n: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    buf = MultiTaskReplay(n, OBS, ACT, H)
    buf.add_episode(
        rng.normal(size=(n, OBS)).astype(np.float32),
        rng.uniform(-1, 1, size=(n, ACT)).astype(np.float32),
        rng.normal(size=n).astype(np.float32),
        rng.normal(size=(n, OBS)).astype(np.float32),
        np.zeros(n, np.float32),
        0,
    )
    return buf.batch(np.arange(n), "cpu")


@torch.no_grad()
def _distance(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return float(prox_penalty(a, b).sqrt())


def test_prox_gradient_is_twice_the_displacement() -> None:
    meta = _agent()
    other = meta.clone(lr=1e-3)
    with torch.no_grad():
        for p in other.actor.parameters():
            p.add_(torch.randn_like(p))
    penalty = prox_penalty(other.actor, meta.actor)
    penalty.backward()
    for p, q in zip(other.actor.parameters(), meta.actor.parameters(), strict=True):
        torch.testing.assert_close(p.grad, 2 * (p - q).detach())
    assert all(q.grad is None for q in meta.actor.parameters())


@pytest.mark.parametrize("net", ["actor", "critic"])
def test_proximal_term_pulls_back_to_meta_parameters(net: str) -> None:
    meta = _agent(policy_freq=1)
    batch = _batch()
    dist = {}
    for coef in (0.0, 10.0):
        agent = meta.clone(lr=1e-3)
        with torch.no_grad():  # start displaced from the meta-trained parameters
            for p in getattr(agent, net).parameters():
                p.add_(0.02 * torch.randn_like(p))
        start = _distance(getattr(agent, net), getattr(meta, net))
        for _ in range(40):
            agent.update(batch, beta=torch.ones(len(batch["rew"])), anchor=meta, prox_coef=coef)
        dist[coef] = _distance(getattr(agent, net), getattr(meta, net))
    assert dist[10.0] < 0.5 * start, (start, dist)
    assert dist[10.0] < 0.5 * dist[0.0], dist


def test_zero_weights_leave_only_the_proximal_pull() -> None:
    meta = _agent(policy_freq=1)
    agent = meta.clone(lr=1e-3)
    with torch.no_grad():
        for p in agent.critic.parameters():
            p.add_(0.02)
    before = _distance(agent.critic, meta.critic)
    for _ in range(30):
        agent.update(_batch(), beta=torch.zeros(64), anchor=meta, prox_coef=1.0)
    assert _distance(agent.critic, meta.critic) < 0.2 * before


def test_actor_and_targets_update_every_policy_freq_steps() -> None:
    agent = _agent(policy_freq=2)
    batch = _batch()
    actor0 = [p.clone() for p in agent.actor.parameters()]
    target0 = [p.clone() for p in agent.critic_target.parameters()]
    critic0 = [p.clone() for p in agent.critic.parameters()]
    stats = agent.update(batch)
    assert "actor_loss" not in stats
    assert all(torch.equal(a, b) for a, b in zip(actor0, agent.actor.parameters(), strict=True))
    assert all(
        torch.equal(a, b) for a, b in zip(target0, agent.critic_target.parameters(), strict=True)
    )
    assert not all(
        torch.equal(a, b) for a, b in zip(critic0, agent.critic.parameters(), strict=True)
    )
    assert "actor_loss" in agent.update(batch)
    assert not all(torch.equal(a, b) for a, b in zip(actor0, agent.actor.parameters(), strict=True))


def test_critic_loss_decreases_on_a_fixed_batch() -> None:
    agent = _agent()
    batch = _batch()
    losses = [agent.update(batch)["critic_loss"] for _ in range(150)]
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20])


def test_clone_for_adaptation_leaves_meta_untouched() -> None:
    meta = _agent()
    state = {k: v.clone() for k, v in meta.actor.state_dict().items()}
    agent = meta.clone(lr=1e-3)
    for _ in range(4):
        agent.update(_batch())
    for k, v in meta.actor.state_dict().items():
        assert torch.equal(v, state[k])
    assert agent.updates == 4 and meta.updates == 0


def test_state_of_a_cuda_graph_run_resumes_eagerly() -> None:
    """Adam state saved with capturable=True (GPU graph runs) loads into a CPU agent and steps."""
    agent = _agent()
    agent.update(_batch())
    state = agent.state_dict()
    for opt in ("actor_opt", "critic_opt"):
        for group in state[opt]["param_groups"]:
            group["capturable"] = True
    other = _agent()
    other.load_state_dict(state)
    assert not other.critic_opt.param_groups[0]["capturable"]
    other.update(_batch())
    assert other.updates == 2


def test_policy_on_another_device_is_a_frozen_copy_that_acts_alike() -> None:
    meta = _agent()
    obs, hist = torch.randn(5, OBS), torch.randn(5, H, OBS + ACT + 1)
    here = meta.policy_on(torch.device("cpu"))
    assert here.actor is meta.actor  # its own device: no copy
    # "meta" stands in for a GPU on a CPU-only machine: the copy branch, with its device
    away = meta.policy_on(torch.device("meta"))
    assert away.actor is not meta.actor and away.device == torch.device("meta")
    assert all(p.device.type == "meta" and not p.requires_grad for p in away.actor.parameters())
    # an agent said to be on a GPU (only its device attribute is read) gets a CPU copy that
    # acts as the agent does
    meta.device = torch.device("cuda")
    copy = meta.policy_on(torch.device("cpu"))
    assert copy.actor is not meta.actor and copy.device == torch.device("cpu")
    torch.testing.assert_close(copy.act(obs, hist), meta.actor(obs, hist), rtol=0, atol=0)
