"""method_summary's numbers: the unpaired first / last-10 intervals and the paired gain."""

from __future__ import annotations

import numpy as np
import pytest

from icrl.ad import method_summary


def test_the_gain_is_paired_per_rollout_where_tasks_spread_widely() -> None:
    # 10 tasks x 3 seeds, returns -100 to -500 by task (as HalfCheetahVel's target speeds spread
    # them), every rollout 20 higher over its last 10 of 30 episodes than at its first, give or
    # take 2: the unpaired intervals overlap, the paired one excludes zero.
    rng = np.random.default_rng(0)
    base = np.linspace(-500, -100, 10)[:, None, None] + np.zeros((10, 3, 30))
    climb = np.where(np.arange(30) >= 20, 20.0, 0.0)
    returns = base + climb + rng.normal(0, 2, size=(10, 3, 30))
    s = method_summary(returns)
    assert s["last10_mean"] - s["last10_ci95"] < s["first_mean"] + s["first_ci95"]
    assert s["gain_mean"] == pytest.approx(s["last10_mean"] - s["first_mean"])
    assert s["gain_mean"] == pytest.approx(20.0, abs=2.0)
    assert 0 < s["gain_ci95"] < 2.0
    assert s["gain_mean"] - s["gain_ci95"] > 0


def test_a_flat_rollout_has_no_gain() -> None:
    returns = np.full((4, 2, 12), -7.0)
    s = method_summary(returns)
    assert s["gain_mean"] == 0.0 and s["gain_ci95"] == 0.0
    assert s["rollouts"] == 8 and s["episodes"] == 12
