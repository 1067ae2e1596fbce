"""One batched update equals each task's own Tianshou 2.0.1 update (same batch, weights, noise)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from tianshou.data import Batch as TSBatch
from tianshou.data import ReplayBuffer
from tianshou.utils.net.common import EnsembleLinear
from tianshou.utils.torch_utils import policy_within_training_step
from torch import nn

from icrl.histories import DroQConfig, SACConfig, TaskSpec
from icrl.histories._learners import _build_droq, _build_sac
from icrl.histories.batched import Batch, BatchedSAC

OBS, ACT, B, T = 5, 2, 32, 3
OBS_SPACE = gym.spaces.Box(-np.inf, np.inf, (OBS,), np.float32)
ACT_SPACE = gym.spaces.Box(-1.0, 1.0, (ACT,), np.float32)


def _reference(config: Any, seed: int) -> Any:
    torch.manual_seed(seed)
    spec = TaskSpec("ReacherGoal", None, 0, seed, 100, 1, config)
    build = _build_droq if isinstance(config, DroQConfig) else _build_sac
    return build(config, spec, OBS_SPACE, ACT_SPACE)[0]


def _linears(module: nn.Module) -> list[Any]:
    return [m for m in module.modules() if isinstance(m, nn.Linear | EnsembleLinear)]


def _ens(m: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(in, out) weight and (1, out) bias of an nn.Linear, or an EnsembleLinear's own."""
    if isinstance(m, nn.Linear):
        return m.weight.detach().T, m.bias.detach().unsqueeze(0)
    return m.weight.detach(), m.bias_weights.detach()


def _actor_params(algo: Any) -> list[torch.Tensor]:
    actor = algo.policy.actor
    out = []
    for m in [*_linears(actor.preprocess), *_linears(actor.mu), *_linears(actor.sigma)]:
        out += list(_ens(m))
    return out


def _critic_params(algo: Any, droq: bool) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Critic params in StackedCritics order (members = critics) for online and target nets."""

    def collect(critics: list[Any]) -> list[torch.Tensor]:
        layers = [_linears(c) for c in critics]
        out = []
        for per_layer in zip(*layers, strict=True):
            ws, bs = zip(*(_ens(m) for m in per_layer), strict=True)
            out += [torch.cat(ws), torch.cat(bs)]
        if droq:
            for ln in [m for m in critics[0].modules() if isinstance(m, nn.LayerNorm)]:
                out += [ln.weight.detach().view(1, 1, -1), ln.bias.detach().view(1, 1, -1)]
        return out

    if droq:
        return collect([algo.critic]), collect([algo.critic_old.module])
    return (
        collect([algo.critic, algo.critic2]),
        collect([algo.critic_old.module, algo.critic2_old.module]),
    )


def _stack_into(params: list[torch.Tensor], per_task: list[list[torch.Tensor]]) -> None:
    with torch.no_grad():
        for i, p in enumerate(params):
            n = p.shape[0] // len(per_task)
            p.copy_(torch.cat([pt[i].reshape(n, *p.shape[1:]) for pt in per_task]))


def _load(batched: BatchedSAC, refs: list[Any], droq: bool) -> None:
    _stack_into(list(batched.actor.parameters()), [_actor_params(r) for r in refs])
    crit = [_critic_params(r, droq) for r in refs]
    _stack_into(list(batched.critics.parameters()), [c[0] for c in crit])
    _stack_into(batched.target, [c[1] for c in crit])
    with torch.no_grad():
        batched.log_alpha.copy_(torch.stack([r.alpha._log_alpha.detach() for r in refs]))


def _buffer(rng: np.random.Generator) -> ReplayBuffer:
    buf = ReplayBuffer(B)
    for _ in range(B):
        term = bool(rng.random() < 0.2)
        buf.add(
            TSBatch(
                obs=rng.normal(size=OBS).astype(np.float32),
                act=rng.uniform(-1, 1, ACT).astype(np.float32),
                rew=float(rng.normal()),
                terminated=term,
                truncated=bool(not term and rng.random() < 0.1),
                obs_next=rng.normal(size=OBS).astype(np.float32),
                info={},
            )
        )
    return buf


def _compare(config: Any, n_updates: int) -> None:
    droq = isinstance(config, DroQConfig)
    seeds = [11, 22, 33]
    refs = [_reference(config, s) for s in seeds]
    batched = BatchedSAC(config, OBS, ACT, seeds)
    _load(batched, refs, droq)
    rng = np.random.default_rng(0)
    buffers = [_buffer(rng) for _ in range(T)]
    noise_gens = [torch.Generator().manual_seed(100 + t) for t in range(T)]
    # each reference draws from torch's global generator: keep one saved state per task
    states = []
    for t in range(T):
        torch.manual_seed(100 + t)
        states.append(torch.get_rng_state())
    for step in range(n_updates):
        idx = [np.random.RandomState(1000 * step + t).choice(B, B) for t in range(T)]
        for t, (ref, buf) in enumerate(zip(refs, buffers, strict=True)):
            buf._random_state = np.random.RandomState(1000 * step + t)
            torch.set_rng_state(states[t])
            with policy_within_training_step(ref.policy):
                ref.update(buf, B)
            states[t] = torch.get_rng_state()
        data = [buf[i] for buf, i in zip(buffers, idx, strict=True)]

        def field(name: str, data: list[Any] = data) -> torch.Tensor:
            return torch.stack(
                [torch.as_tensor(np.asarray(d[name]), dtype=torch.float32) for d in data]
            )

        batch = Batch(
            field("obs"), field("act"), field("rew"), field("obs_next"), field("terminated")
        )

        def noise(shape: tuple[int, ...]) -> torch.Tensor:
            return torch.stack([torch.empty(shape[1:]).normal_(generator=g) for g in noise_gens])

        batched.update(batch, noise)
    # Each reference consumed its own global-RNG stream; the batched run replayed it per task.
    tol = dict(atol=2e-5, rtol=1e-4)
    for t, ref in enumerate(refs):
        crit, targ = _critic_params(ref, droq)
        for mine, theirs in zip(batched.actor.parameters(), _actor_params(ref), strict=True):
            torch.testing.assert_close(mine[t], theirs.reshape(mine.shape[1:]), **tol)
        for mine, theirs in zip(batched.critics.parameters(), crit, strict=True):
            n = mine.shape[0] // T
            torch.testing.assert_close(
                mine[t * n : (t + 1) * n], theirs.reshape(n, *mine.shape[1:]), **tol
            )
        for mine, theirs in zip(batched.target, targ, strict=True):
            n = mine.shape[0] // T
            torch.testing.assert_close(
                mine[t * n : (t + 1) * n], theirs.reshape(n, *mine.shape[1:]), **tol
            )
        torch.testing.assert_close(batched.log_alpha[t], ref.alpha._log_alpha.detach(), **tol)


def test_sac_update_equals_tianshou_per_task() -> None:
    """Three SAC updates of three tasks at once equal three Tianshou SAC runs, one per task."""
    _compare(SACConfig(hidden_sizes=(16, 16), batch_size=B, lr=3e-3), n_updates=3)


def test_droq_update_equals_tianshou_per_task() -> None:
    """DroQ (dropout off so both sides draw the same numbers; LayerNorm, mean-Q actor, delay)."""
    cfg = DroQConfig(hidden_sizes=(16, 16), batch_size=B, lr=3e-3, dropout=0.0, policy_delay=2)
    _compare(cfg, n_updates=4)


def test_weights_actually_move() -> None:
    """Guard against a vacuous comparison: the update changes every parameter group."""
    seeds = [1, 2]
    model = BatchedSAC(SACConfig(hidden_sizes=(8,), lr=1e-2), OBS, ACT, seeds)
    before = [p.detach().clone() for p in model.parameters()]
    g = torch.Generator().manual_seed(0)
    batch = Batch(
        torch.randn(2, B, OBS, generator=g),
        torch.rand(2, B, ACT, generator=g) * 2 - 1,
        torch.randn(2, B, generator=g),
        torch.randn(2, B, OBS, generator=g),
        torch.zeros(2, B),
    )
    model.update(batch)
    for p, q in zip(model.parameters(), before, strict=True):
        assert not torch.equal(p, q)


@pytest.mark.parametrize("seeds", [[5, 6], [5, 9, 6]])
def test_init_depends_only_on_own_seed(seeds: list[int]) -> None:
    """A task's initial weights are the same whichever tasks it is batched with."""
    a = BatchedSAC(SACConfig(hidden_sizes=(8,)), OBS, ACT, [5])
    b = BatchedSAC(SACConfig(hidden_sizes=(8,)), OBS, ACT, seeds)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q[: p.shape[0]])


def test_ppo_update_equals_tianshou_per_task() -> None:
    """A PPO rollout update (GAE, 2 epochs of minibatches, per-task grad clip) per task."""
    from tianshou.data import VectorReplayBuffer

    from icrl.histories import PPOConfig
    from icrl.histories._learners import _build_ppo
    from icrl.histories.batched import BatchedPPO, flat

    v, n, t = 20, 2, 2
    cfg = PPOConfig(hidden_sizes=(8, 8), steps_per_env=v, epochs=2, batch_size=16, lr=3e-3)
    act_space = gym.spaces.Box(-2.0, 2.0, (ACT,), np.float32)
    refs = []
    for s in (3, 4):
        torch.manual_seed(s)
        refs.append(
            _build_ppo(cfg, TaskSpec("PusherGoal", None, 0, s, 40, n, cfg), OBS_SPACE, act_space)[0]
        )
    model = BatchedPPO(cfg, OBS, ACT, [3, 4])
    with torch.no_grad():
        for mine, name in [(model.actor, "actor"), (model.critic, "critic")]:
            per_task = []
            for r in refs:
                net = r.policy.actor if name == "actor" else r.critic
                lins = _linears(net.preprocess) + _linears(net.mu if name == "actor" else net.last)
                per_task.append([x for m in lins for x in _ens(m)])
            _stack_into(list(mine.parameters()), per_task)
        model.log_std.copy_(
            torch.stack([r.policy.actor.sigma_param.detach().view(1, -1) for r in refs])
        )
    rng = np.random.default_rng(1)
    roll = {
        "obs": rng.normal(size=(t, v, n, OBS)).astype(np.float32),
        "act": rng.normal(size=(t, v, n, ACT)).astype(np.float32),
        "rew": rng.normal(size=(t, v, n)).astype(np.float32),
        "next_obs": rng.normal(size=(t, v, n, OBS)).astype(np.float32),
        "term": rng.random((t, v, n)) < 0.05,
        "trunc": rng.random((t, v, n)) < 0.05,
    }
    perms = []
    for task, ref in enumerate(refs):
        buf = VectorReplayBuffer(v * n, n)
        for i in range(v):
            buf.add(
                TSBatch(
                    obs=roll["obs"][task, i],
                    act=roll["act"][task, i],
                    rew=roll["rew"][task, i],
                    terminated=roll["term"][task, i],
                    truncated=roll["trunc"][task, i],
                    obs_next=roll["next_obs"][task, i],
                    info=[{}] * n,
                ),
                buffer_ids=list(range(n)),
            )
        np.random.seed(50 + task)
        perms.append([np.random.permutation(v * n) for _ in range(cfg.epochs)])
        np.random.seed(50 + task)
        with policy_within_training_step(ref.policy):
            ref.update(buf, batch_size=cfg.batch_size, repeat=cfg.epochs)
    as_t = {k: torch.as_tensor(x, dtype=torch.float32) for k, x in roll.items()}
    done = ((as_t["term"] + as_t["trunc"]) > 0).float()
    adv, ret = model.advantages(as_t["obs"], as_t["rew"], as_t["next_obs"], as_t["term"], done)
    epoch_perms = [torch.as_tensor(np.stack([p[e] for p in perms])) for e in range(cfg.epochs)]
    model.update(flat(as_t["obs"]), flat(as_t["act"]), flat(adv), flat(ret), epoch_perms)
    tol = dict(atol=2e-5, rtol=1e-4)
    for task, ref in enumerate(refs):
        actor = [*_linears(ref.policy.actor.preprocess), *_linears(ref.policy.actor.mu)]
        critic = [*_linears(ref.critic.preprocess), *_linears(ref.critic.last)]
        for mine, lins in [(model.actor, actor), (model.critic, critic)]:
            theirs = [x for m in lins for x in _ens(m)]
            for p, q in zip(mine.parameters(), theirs, strict=True):
                torch.testing.assert_close(p[task], q.reshape(p.shape[1:]), **tol)
        sigma = ref.policy.actor.sigma_param.detach().view(-1)
        torch.testing.assert_close(model.log_std[task, 0], sigma, **tol)
        assert not torch.allclose(sigma, torch.zeros_like(sigma))
