"""SAC, as configured by this package, learns on ReacherGoal within a CI-sized budget."""

from __future__ import annotations

from typing import Any

import pytest

from icrl.histories import run_task


@pytest.mark.slow
def test_sac_improves_on_reacher_goal(make_config: Any) -> None:
    # Test-sized SAC (smaller nets, higher lr than the paper preset), 3,000 env steps, 2 envs.
    config = make_config(
        algorithm={
            "kind": "sac",
            "hidden_sizes": [64, 64],
            "lr": 1e-3,
            "batch_size": 64,
            "warmup_steps": 200,
            "gradient_steps": 2,
        },
        steps_per_task=3000,
        k=4,
        tasks=1,
    )
    from icrl.metaenvs import train_tasks

    record = run_task(config, 0, train_tasks("ReacherGoal", 1)[0])
    returns = record.episodes["return"]
    assert len(returns) == 60
    first, last = returns[:10].mean(), returns[-10:].mean()
    # Random warm-up episodes score about -35 (mostly the control cost); the learner must at
    # least halve that, which needs it to learn small, goal-directed actions.
    assert last > first / 2, f"no learning: first 10 episodes {first:.1f}, last 10 {last:.1f}"
    # Every episode's return is in the file, the transitions only of every k-th one.
    assert record.episodes["kept"].sum() == 15
