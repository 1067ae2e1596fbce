"""Task values, samplers and the canonical splits."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from icrl.metaenvs import (
    FAMILIES,
    AntDirTask,
    HalfCheetahVelTask,
    PusherGoalTask,
    ReacherGoalTask,
    episode_length,
    sample_tasks,
    task_from_dict,
    task_type,
    test_tasks,
    train_count,
    train_tasks,
)


@pytest.mark.parametrize("family", FAMILIES)
def test_sampling_is_a_pure_function_of_the_seed(family: str) -> None:
    np.random.seed(1)
    first = sample_tasks(family, 20, seed=7)
    np.random.seed(2)  # the global RNG must not matter
    second = sample_tasks(family, 20, seed=7)
    assert first == second
    assert sample_tasks(family, 20, seed=8) != first
    assert sample_tasks(family, 5, seed=7) == first[:5]  # prefix-stable
    assert all(type(t) is task_type(family) for t in first)


@pytest.mark.parametrize("family", FAMILIES)
def test_canonical_splits(family: str) -> None:
    train = train_tasks(family)
    assert (
        len(train)
        == train_count(family)
        == {
            "ReacherGoal": 70,
            "PusherGoal": 35,
            "HalfCheetahVel": 15,
            "AntDir": 30,
            "PointGoal": 40,
        }[family]
    )
    assert train_tasks(family) == train  # fixed
    assert train_tasks(family, 3) == train[:3]
    test = test_tasks(family)
    assert len(test) == 10 and len(test_tasks(family, 30)) == 30
    assert test_tasks(family, 30)[:10] == test
    assert not set(test_tasks(family, 200)) & set(train_tasks(family, 1000))
    assert len(set(train)) == len(train)


@pytest.mark.parametrize("family", FAMILIES)
def test_tasks_round_trip_through_json(family: str) -> None:
    for task in sample_tasks(family, 5, seed=0):
        d = json.loads(json.dumps(task.to_dict()))
        assert d["family"] == family
        assert task_from_dict(d) == task
        assert task.to_array().dtype == np.float64


def test_episode_lengths() -> None:
    assert [episode_length(f) for f in FAMILIES] == [50, 100, 200, 200, 20]


# --- empirical ranges of the samplers match their distributions --------------------------------

N = 4000


def test_reacher_goals_are_uniform_in_the_disc() -> None:
    goals = np.array([t.goal for t in sample_tasks("ReacherGoal", N, seed=0)])
    r = np.linalg.norm(goals, axis=1)
    assert r.max() < 0.2 and r.max() > 0.195
    # Uniform in a disc: P(r < ρ) = (ρ / 0.2)²; 4 s.e. ≈ 0.03 at N = 4000.
    for rho in (0.05, 0.1, 0.15):
        assert abs(np.mean(r < rho) - (rho / 0.2) ** 2) < 0.03
    angles = np.arctan2(goals[:, 1], goals[:, 0])
    assert abs(np.mean(angles > 0) - 0.5) < 0.04


def test_pusher_tasks_fill_their_boxes_and_keep_apart() -> None:
    tasks = sample_tasks("PusherGoal", N, seed=0)
    obj = np.array([t.object for t in tasks])
    goal = np.array([t.goal for t in tasks])
    for arr, ((ylo, yhi), (xlo, xhi)) in (
        (obj, ((-0.3, 0.0), (-0.2, 0.2))),
        (goal, ((-0.2, 0.0), (-0.1, 0.3))),
    ):
        for col, lo, hi in ((0, ylo, yhi), (1, xlo, xhi)):
            assert lo <= arr[:, col].min() < lo + 0.01
            assert hi - 0.01 < arr[:, col].max() <= hi
    sep = np.linalg.norm(obj - goal, axis=1)
    assert sep.min() > 0.17 and sep.min() < 0.18
    # The research note's Monte-Carlo: mean object-goal distance about 0.27 m.
    assert 0.25 < sep.mean() < 0.29


def test_cheetah_velocities_are_uniform_on_0_3() -> None:
    v = np.array([t.velocity for t in sample_tasks("HalfCheetahVel", N, seed=0)])
    assert 0.0 <= v.min() < 0.01 and 2.99 < v.max() <= 3.0
    assert np.allclose(np.quantile(v, [0.25, 0.5, 0.75]), [0.75, 1.5, 2.25], atol=0.08)


def test_ant_directions_are_uniform_on_the_circle() -> None:
    theta = np.array([t.direction for t in sample_tasks("AntDir", N, seed=0)])
    assert 0.0 <= theta.min() < 0.01 and 2 * math.pi - 0.01 < theta.max() < 2 * math.pi
    assert np.allclose(
        np.quantile(theta, [0.25, 0.5, 0.75]), np.array([1, 2, 3]) * math.pi / 2, atol=0.15
    )


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "pattern"),
    [
        (lambda: ReacherGoalTask(goal=(0.3, 0.0)), r"ReacherGoalTask\.goal.*0\.3.*< 0\.2"),
        (lambda: ReacherGoalTask(goal=(0.1, 0.0, 0.0)), r"ReacherGoalTask\.goal must be 2"),
        (lambda: ReacherGoalTask(goal=(float("nan"), 0.0)), r"ReacherGoalTask\.goal.*finite"),
        (
            lambda: PusherGoalTask(object=(0.1, 0.0), goal=(-0.1, 0.2)),
            r"PusherGoalTask\.object\[dy\]=0\.1.*\[-0\.3, 0\.0\]",
        ),
        (
            lambda: PusherGoalTask(object=(-0.1, 0.0), goal=(-0.1, 0.5)),
            r"PusherGoalTask\.goal\[dx\]=0\.5.*\[-0\.1, 0\.3\]",
        ),
        (lambda: PusherGoalTask(object=(-0.1, 0.0), goal=(-0.1, 0.1)), r"0\.1000 m apart.*0\.17"),
        (lambda: PusherGoalTask(object=(-0.1,), goal=(-0.1, 0.1)), r"PusherGoalTask\.object"),
        (
            lambda: HalfCheetahVelTask(velocity=3.5),
            r"HalfCheetahVelTask\.velocity=3\.5.*\[0\.0, 3\.0\]",
        ),
        (lambda: HalfCheetahVelTask(velocity=[1.0]), r"HalfCheetahVelTask\.velocity must be one"),
        (
            lambda: AntDirTask(direction=2 * math.pi),
            r"AntDirTask\.direction=6\.28.*\[0\.0, 6\.28.*\)",
        ),
        (lambda: AntDirTask(direction=-0.1), r"AntDirTask\.direction=-0\.1"),
        (lambda: sample_tasks("Hopper", 1, 0), r"unknown task family 'Hopper'.*ReacherGoal"),
        (lambda: sample_tasks("AntDir", -1, 0), r"n must be a non-negative int"),
        (lambda: train_tasks("antdir"), r"unknown task family 'antdir'"),
        (lambda: task_from_dict({"velocity": 1.0}), r"'family' key"),
        (lambda: task_from_dict({"family": "AntDir", "velocity": 1.0}), r"exactly the fields"),
    ],
)
def test_bad_input_names_the_field_value_and_range(build, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        build()
