"""Many sub-envs (tasks x parallel envs) stepped by a few worker processes over shared memory.

Gymnasium's AsyncVectorEnv runs one process per sub-env; with 70 tasks x 5 envs that is 350
processes on 16 cores, each step paying a pipe round trip and pickling per sub-env. Here each
worker owns a contiguous slice of sub-envs, steps them in a loop, and exchanges actions and
observations through shared arrays; the pipes carry only a one-byte command and its reply.

Semantics follow Tianshou's Collector (the reference backend), not Gymnasium's next-step autoreset:
a sub-env that terminates or truncates is reset at once, its transition keeps the true final
observation as next_obs, and the reset observation is what the policy sees next. No step is spent
on resetting. Sub-env i holds task `tasks[i]`, and is seeded once with `seeds[i]` (first reset and
its action space, which draws the warm-up actions), like `venv.seed(...)` in the reference.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing as mp
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from icrl.histories import _envs

_STEP, _RANDOM, _RESET, _CLOSE = b"s", b"r", b"0", b"x"


@dataclass
class _Shared:
    """Views of the shared arrays (one row per sub-env)."""

    obs: np.ndarray  # observation the policy acts on (reset obs after an episode end)
    act: np.ndarray  # action sent to the env (written by the driver, or by a worker at random)
    next_obs: np.ndarray  # true next observation of the last step
    rew: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray


def _views(raw: dict[str, Any], n: int, obs_dim: int, act_dim: int) -> _Shared:
    def view(name: str, dtype: Any, *shape: int) -> np.ndarray:
        return np.frombuffer(raw[name], dtype=dtype).reshape(n, *shape)

    return _Shared(
        obs=view("obs", np.float32, obs_dim),
        act=view("act", np.float32, act_dim),
        next_obs=view("next_obs", np.float32, obs_dim),
        rew=view("rew", np.float64),
        terminated=view("terminated", np.bool_),
        truncated=view("truncated", np.bool_),
    )


class _Slice:
    """The sub-envs rows [lo, hi) of one worker (or of the driver when there are no workers)."""

    def __init__(self, family: str, tasks: Sequence[Any], seeds: Sequence[int], lo: int) -> None:
        self.envs = [_envs.make_env(family, t) for t in tasks]
        self.seeds, self.lo = list(seeds), lo

    def reset(self, sh: _Shared) -> None:
        for j, (env, seed) in enumerate(zip(self.envs, self.seeds, strict=True)):
            env.action_space.seed(seed)
            sh.obs[self.lo + j] = env.reset(seed=seed)[0]

    def step(self, sh: _Shared, random: bool) -> None:
        for j, env in enumerate(self.envs):
            i = self.lo + j
            if random:
                sh.act[i] = env.action_space.sample()
            obs, rew, term, trunc, _ = env.step(sh.act[i])
            sh.next_obs[i], sh.rew[i], sh.terminated[i], sh.truncated[i] = obs, rew, term, trunc
            sh.obs[i] = env.reset()[0] if term or trunc else obs

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _worker(
    conn: Any,
    raw: dict[str, Any],
    dims: tuple[int, int, int],
    family: str,
    tasks: list[dict[str, Any]],
    seeds: list[int],
    lo: int,
) -> None:
    sh = _views(raw, *dims)
    part = _Slice(family, [_envs.task_from_dict(t) for t in tasks], seeds, lo)
    conn.send(b"k")
    try:
        while True:
            cmd = conn.recv_bytes()
            if cmd == _CLOSE:
                break
            if cmd == _RESET:
                part.reset(sh)
            else:
                part.step(sh, random=cmd == _RANDOM)
            conn.send_bytes(b"k")
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        part.close()


class EnvPool:
    """`len(tasks)` sub-envs stepped together; `workers=0` steps them in this process."""

    def __init__(
        self, family: str, tasks: Sequence[Any], seeds: Sequence[int], workers: int
    ) -> None:
        probe = _envs.make_env(family, tasks[0])
        self.obs_dim = int(np.prod(probe.observation_space.shape))
        self.act_dim = int(np.prod(probe.action_space.shape))
        self.low = probe.action_space.low.astype(np.float32)
        self.high = probe.action_space.high.astype(np.float32)
        probe.close()
        n = self.n = len(tasks)
        ctx = mp.get_context("spawn")
        sizes = {
            "obs": (np.float32, self.obs_dim),
            "act": (np.float32, self.act_dim),
            "next_obs": (np.float32, self.obs_dim),
            "rew": (np.float64, 1),
            "terminated": (np.bool_, 1),
            "truncated": (np.bool_, 1),
        }
        self._raw = {
            k: ctx.RawArray("b", n * w * np.dtype(d).itemsize) for k, (d, w) in sizes.items()
        }
        self.shared = _views(self._raw, n, self.obs_dim, self.act_dim)
        self._conns: list[Any] = []
        self._procs: list[Any] = []
        self._local: _Slice | None = None
        if workers == 0:
            self._local = _Slice(family, tasks, seeds, 0)
            return
        bounds = np.linspace(0, n, min(workers, n) + 1).round().astype(int)
        for lo, hi in itertools.pairwise(bounds):
            parent, child = ctx.Pipe()
            task_dicts = [_envs.task_to_dict(t) for t in tasks[lo:hi]]
            args = (child, self._raw, (n, self.obs_dim, self.act_dim), family, task_dicts)
            proc = ctx.Process(
                target=_worker, args=(*args, list(seeds[lo:hi]), int(lo)), daemon=True
            )
            proc.start()
            self._conns.append(parent)
            self._procs.append(proc)
        for c in self._conns:
            c.recv()  # envs constructed

    def _all(self, cmd: bytes) -> None:
        if self._local is not None:
            if cmd == _RESET:
                self._local.reset(self.shared)
            else:
                self._local.step(self.shared, random=cmd == _RANDOM)
            return
        for c in self._conns:
            c.send_bytes(cmd)
        for c in self._conns:
            c.recv_bytes()

    def reset(self) -> np.ndarray:
        """Seeded first reset of every sub-env; returns the observations (a view)."""
        self._all(_RESET)
        return self.shared.obs

    def step(self, env_action: np.ndarray | None) -> _Shared:
        """Step every sub-env with `env_action` (n, act_dim), or a random action of its action
        space when None (the random action is left in `shared.act`)."""
        if env_action is None:
            self._all(_RANDOM)
        else:
            self.shared.act[:] = env_action
            self._all(_STEP)
        return self.shared

    def to_env(self, act: np.ndarray) -> np.ndarray:
        """Policy action in [-1, 1] -> env action (SACPolicy's action scaling)."""
        return self.low + (self.high - self.low) * (act + 1.0) / 2.0

    def from_env(self, act: np.ndarray) -> np.ndarray:
        """Env action -> policy range (Tianshou's `map_action_inverse`, for random warm-up)."""
        scale = self.high - self.low
        scale = np.where(scale < np.finfo(np.float32).eps, scale + np.finfo(np.float32).eps, scale)
        return (act - self.low) * 2.0 / scale - 1.0

    def close(self) -> None:
        """Stop the workers and close every env."""
        if self._local is not None:
            self._local.close()
            self._local = None
        for c in self._conns:
            with contextlib.suppress(BrokenPipeError, OSError):
                c.send_bytes(_CLOSE)
        for p in self._procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
        self._conns, self._procs = [], []

    def __enter__(self) -> EnvPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
