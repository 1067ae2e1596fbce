"""Meta-training TD3 updates replayed as CUDA graphs.

One eager update launches a few hundred small kernels (four GRUs, six MLPs, two Adam steps); on
the H100 host each launch costs more CPU time than its kernel costs GPU time, so an eager
update takes about 10 ms for about 1 ms of GPU work. Capturing the two kinds of update (critic
only; critic, actor and targets) once and replaying them removes that overhead. The math is the
eager :meth:`MQLAgent.critic_step` / :meth:`MQLAgent.actor_step` / :meth:`MQLAgent.polyak`,
captured as they are.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from icrl.baselines.mql._agent import MQLAgent


class GraphedUpdater:
    """Replays captured TD3 updates of `agent` on batches copied into static device tensors.

    The agent's optimisers are re-created as ``capturable`` Adam (their state is kept). The
    first ``2 × policy_freq`` calls of this updater run eagerly (they warm up cuDNN / cuBLAS
    and create the Adam state that the graphs then update in place), later calls replay a
    graph.
    """

    def __init__(self, agent: MQLAgent) -> None:
        if agent.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, the agent is on {agent.device}")
        self.agent = agent
        states = [agent.actor_opt.state_dict(), agent.critic_opt.state_dict()]
        for state in states:  # loading keeps the saved flag; a capturable load puts step on GPU
            for group in state["param_groups"]:
                group["capturable"] = True
        agent.set_optimizers(agent.cfg.lr, capturable=True)
        agent.actor_opt.load_state_dict(states[0])
        agent.critic_opt.load_state_dict(states[1])
        self.static: dict[str, torch.Tensor] | None = None
        self.graphs: dict[bool, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self.warmup = 2 * agent.cfg.policy_freq  # eager calls first, also after a resume
        self.calls = 0

    def _to_static(self, arrays: dict[str, np.ndarray]) -> None:
        if self.static is None:
            self.static = {
                k: torch.empty(v.shape, dtype=torch.float32, device=self.agent.device)
                for k, v in arrays.items()
            }
        for k, v in arrays.items():
            self.static[k].copy_(torch.from_numpy(v), non_blocking=True)

    def _capture(self, with_actor: bool) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        agent, batch = self.agent, self.static
        assert batch is not None

        def step() -> torch.Tensor:
            loss = agent.critic_step(batch)
            if with_actor:
                agent.actor_step(batch)
                agent.polyak()
            return loss

        agent.actor_opt.zero_grad(set_to_none=True)
        agent.critic_opt.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = step()
        return graph, out

    def update(self, arrays: dict[str, np.ndarray]) -> torch.Tensor:
        """One TD3 update on a batch of numpy arrays; returns the critic loss (on device)."""
        agent = self.agent
        self._to_static(arrays)
        self.calls += 1
        if self.calls <= self.warmup:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                loss = agent.update(self.static)["critic_loss"]
            torch.cuda.current_stream().wait_stream(side)
            return loss.clone()
        agent.updates += 1
        with_actor = agent.updates % agent.cfg.policy_freq == 0
        if with_actor not in self.graphs:
            self.graphs[with_actor] = self._capture(with_actor)
        graph, out = self.graphs[with_actor]
        graph.replay()
        return out.clone()


def make_updater(
    agent: MQLAgent, use_graphs: bool
) -> Callable[[dict[str, np.ndarray]], torch.Tensor]:
    """A function doing one TD3 update from numpy batch arrays: graphed on CUDA if asked."""
    if use_graphs and agent.device.type == "cuda":
        return GraphedUpdater(agent).update

    def eager(arrays: dict[str, np.ndarray]) -> torch.Tensor:
        batch = {k: torch.as_tensor(v, device=agent.device) for k, v in arrays.items()}
        return agent.update(batch)["critic_loss"]

    return eager
