"""Side-by-side episodes on several envs, with the running GRU history of each."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch

from icrl.baselines.mql._agent import ActorPolicy, MQLAgent
from icrl.metaenvs.rollout import Step
from icrl.metaenvs.rollout import run_episodes as run_shared

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


def _to_env_action(space: gym.spaces.Box, a: np.ndarray) -> np.ndarray:
    """Map [-1, 1] to the env's box (the official ``NormalizedBoxEnv``)."""
    low, high = space.low, space.high
    return (low + (a + 1.0) * 0.5 * (high - low)).astype(space.dtype)


def run_episodes(
    envs: Sequence[gym.Env],
    tasks: Sequence[Any],
    agent: MQLAgent | ActorPolicy | None,
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
    act_dim = int(np.prod(envs[0].action_space.shape))
    obs_dim = int(np.prod(envs[0].observation_space.shape))
    device = agent.device if agent is not None else torch.device("cpu")
    hist = torch.zeros(k, hist_len, act_dim + 1 + obs_dim, device=device)
    logs: list[dict[str, list[np.ndarray]]] = [
        {"obs": [], "act": [], "rew": [], "next_obs": [], "terminated": []} for _ in range(k)
    ]

    def act(obs: np.ndarray, rows: np.ndarray, start: np.ndarray) -> np.ndarray:
        if mode == "random":
            return rng.uniform(-1.0, 1.0, size=(len(rows), act_dim)).astype(np.float32)
        obs_t = torch.as_tensor(obs.astype(np.float32), device=device)
        acts = agent.act(obs_t, hist[torch.as_tensor(rows, device=device)]).cpu().numpy()
        if mode == "noisy":
            acts = np.clip(acts + rng.normal(0.0, expl_noise, size=acts.shape), -1.0, 1.0)
        return acts.astype(np.float32)

    def record(step: Step) -> None:
        obs = step.obs.astype(np.float32)
        rews = step.reward.astype(np.float32)
        for j, i in enumerate(step.rows):
            log = logs[i]
            log["obs"].append(obs[j])
            log["act"].append(step.policy_action[j])
            log["rew"].append(rews[j])
            log["next_obs"].append(np.asarray(step.next_obs[j], np.float32))
            log["terminated"].append(np.float32(step.terminated[j]))
        entry = torch.as_tensor(
            np.concatenate([step.policy_action, rews[:, None], obs], axis=1), device=device
        )
        rows = torch.as_tensor(step.rows, device=device)
        hist[rows] = torch.cat([hist[rows, 1:], entry[:, None]], dim=1)

    run_shared(
        envs[:k],
        act,
        seeds=seeds if seeds is None else list(seeds[:k]),
        options=[{"task": task} for task in tasks],
        to_env=_to_env_action,
        on_step=record,
    )
    return [Episode(**{key: np.stack(v) for key, v in log.items()}) for log in logs]
