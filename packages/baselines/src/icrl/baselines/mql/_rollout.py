"""Side-by-side episodes on several envs, with the running GRU history of each."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch

from icrl.baselines.mql._agent import MQLAgent

Mode = Literal["random", "noisy", "deterministic"]


@dataclass
class Episode:
    """One finished episode; actions are the policy's, in [-1, 1]."""

    obs: np.ndarray
    act: np.ndarray
    rew: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray

    @property
    def ret(self) -> float:
        """Undiscounted return."""
        return float(self.rew.sum())

    def __len__(self) -> int:
        return len(self.rew)


def _to_env_action(env: gym.Env, a: np.ndarray) -> np.ndarray:
    """Map [-1, 1] to the env's box (the official ``NormalizedBoxEnv``)."""
    low, high = env.action_space.low, env.action_space.high
    return (low + (a + 1.0) * 0.5 * (high - low)).astype(env.action_space.dtype)


def run_episodes(
    envs: Sequence[gym.Env],
    tasks: Sequence[Any],
    agent: MQLAgent | None,
    mode: Mode,
    rng: np.random.Generator,
    hist_len: int,
    expl_noise: float = 0.0,
    seeds: Sequence[int] | None = None,
) -> list[Episode]:
    """Run one episode of ``tasks[i]`` on ``envs[i]`` for every i, the policy batched across envs.

    The history fed to the actor at step t holds the steps t-H..t-1 of the same episode as
    ``(a_k, r_k, s_k)`` (zeros before the start), the same windows that
    :meth:`MultiTaskReplay.histories` rebuilds for training.
    """
    if len(tasks) > len(envs):
        raise ValueError(f"run_episodes: {len(tasks)} tasks but only {len(envs)} envs")
    if mode != "random" and agent is None:
        raise ValueError(f"run_episodes: mode {mode!r} needs an agent")
    k = len(tasks)
    space = envs[0].action_space
    act_dim = int(np.prod(space.shape))
    obs = np.stack(
        [
            envs[i].reset(seed=None if seeds is None else seeds[i], options={"task": tasks[i]})[0]
            for i in range(k)
        ]
    ).astype(np.float32)
    obs_dim = obs.shape[1]
    device = agent.device if agent is not None else torch.device("cpu")
    hist = torch.zeros(k, hist_len, act_dim + 1 + obs_dim, device=device)
    logs: list[dict[str, list[np.ndarray]]] = [
        {"obs": [], "act": [], "rew": [], "next_obs": [], "terminated": []} for _ in range(k)
    ]
    active = np.arange(k)
    while len(active):
        if mode == "random":
            acts = rng.uniform(-1.0, 1.0, size=(len(active), act_dim)).astype(np.float32)
        else:
            obs_t = torch.as_tensor(obs[active], device=device)
            acts = agent.act(obs_t, hist[torch.as_tensor(active, device=device)]).cpu().numpy()
            if mode == "noisy":
                acts = np.clip(acts + rng.normal(0.0, expl_noise, size=acts.shape), -1.0, 1.0)
            acts = acts.astype(np.float32)
        still = []
        rews = np.zeros(len(active), np.float32)
        for j, i in enumerate(active):
            nxt, r, term, trunc, _ = envs[i].step(_to_env_action(envs[i], acts[j]))
            rews[j] = r
            log = logs[i]
            log["obs"].append(obs[i].copy())
            log["act"].append(acts[j])
            log["rew"].append(np.float32(r))
            log["next_obs"].append(np.asarray(nxt, np.float32))
            log["terminated"].append(np.float32(term))
            if not (term or trunc):
                still.append(j)
        entry = torch.as_tensor(
            np.concatenate([acts, rews[:, None], obs[active]], axis=1), device=device
        )
        rows = torch.as_tensor(active, device=device)
        hist[rows] = torch.cat([hist[rows, 1:], entry[:, None]], dim=1)
        for j in still:
            obs[active[j]] = logs[active[j]]["next_obs"][-1]
        active = active[still]
    return [Episode(**{key: np.stack(v) for key, v in log.items()}) for log in logs]
