"""The ICRL testbed: on the PointGoal sanity family, AD must learn in context (and a blinded AD
must not).

Real data, real training: Tianshou-equivalent SAC learning histories from the batched backend on
20 training tasks, an AD model trained on them from the PointGoal preset, evaluated in context on
the 10 canonical *test* tasks (unseen goals) with no gradient step.

Why these margins. PointGoal's goal lies 0.6 m from the start, at a hidden angle θ ~ U[0, 2π). For
any position p, E_θ‖p − g(θ)‖ ≥ 0.6 (a convex, rotation-symmetric function of p, smallest at the
start), so no policy that ignores the task beats the zero-action return −12 (20 steps × 0.6 m)
in expectation. And the control cost is at most 20 × 0.05 × ‖a‖² ≤ 2.0 per episode, so the
exploration noise shrinking along the history, which is all a model that cannot see rewards can
imitate, is worth at most 2.0 of return. Hence in-context RL has emerged when the last episodes
(a) beat the first by more than 2.0 and (b) beat the best task-agnostic return −12 by more than
1.0 (about 4 standard errors of a 10-task × 10-episode mean here). The blinded model (rewards
zeroed in its training and evaluation contexts) must fail (b): without rewards it cannot find
the goal. The source itself goes from −12.5 to about −5.9 on this data (its stochastic curve).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from icrl.ad import EvalConfig, evaluate, preset, train
from icrl.histories import GenerateConfig, generate

TASKS = 20
BEST_TASK_AGNOSTIC = -12.0  # 20 steps x 0.6 m (see the module docstring)
MAX_CONTROL_COST = 2.0  # 20 steps x 0.05 x |a|^2 <= 2


@pytest.fixture(scope="module")
def pointgoal_histories(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = GenerateConfig(
        family="PointGoal", tasks=TASKS, workers=0, backend="batched", progress=False
    )
    return generate(cfg, tmp_path_factory.mktemp("pointgoal") / "histories.h5")


def _in_context_returns(histories: Path, out: Path, blind: bool) -> np.ndarray:
    """(tasks, episodes) in-context returns of a PointGoal AD model trained on `histories`."""
    ablation = '"zero"' if blind else '"none"'
    overrides = ['device="cpu"', "progress=false", f"data.reward_ablation={ablation}"]
    cfg = preset("PointGoal", "transformer", histories=histories, overrides=overrides)
    result = train(cfg, out / "run")
    ec = EvalConfig(  # as many episodes as the training context covers: 75
        device="cpu",
        progress=False,
        asynchronous=False,
        reward_ablation="zero" if blind else "none",
    )
    return evaluate(ec, [result.checkpoint], out / "eval").returns[:, 0]


def _first_last(returns: np.ndarray) -> tuple[float, float]:
    return float(returns[:, :3].mean()), float(returns[:, -10:].mean())


@pytest.mark.slow
def test_ad_learns_in_context_on_pointgoal(pointgoal_histories: Path, tmp_path: Path) -> None:
    first, last = _first_last(_in_context_returns(pointgoal_histories, tmp_path, blind=False))
    print(f"\nAD (Gaussian head, sampled): first 3 episodes {first:.2f}, last 10 {last:.2f}")
    assert last - first > MAX_CONTROL_COST, (first, last)
    assert last > BEST_TASK_AGNOSTIC + 1.0, (first, last)


@pytest.mark.slow
def test_blinded_ad_does_not(pointgoal_histories: Path, tmp_path: Path) -> None:
    first, last = _first_last(_in_context_returns(pointgoal_histories, tmp_path, blind=True))
    print(f"\nblinded AD (rewards zeroed): first 3 episodes {first:.2f}, last 10 {last:.2f}")
    assert last < BEST_TASK_AGNOSTIC + 1.0, (first, last)
