"""Task values, their distributions, seeded samplers and the canonical train/test splits.

A task is a small frozen dataclass that validates itself on construction: a value outside its
distribution's support is refused with a ``ValueError`` naming the field, the value and the allowed
range. Tasks are JSON-serialisable through ``to_dict`` / ``task_from_dict``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np

PAPER_FAMILIES: tuple[str, ...] = ("ReacherGoal", "PusherGoal", "HalfCheetahVel", "AntDir")
"""The paper's four families."""
SANITY_FAMILIES: tuple[str, ...] = ("PointGoal",)
"""Small families that show in-context RL on a CPU in minutes (not in the paper)."""
FAMILIES: tuple[str, ...] = PAPER_FAMILIES + SANITY_FAMILIES

# Bumped whenever a family's dynamics, reward, observation or task distribution changes, so that a
# dataset recorded under one definition is never silently mixed with another.
DEFINITION_VERSION = "0"

_EPISODE_LENGTH = {
    "ReacherGoal": 50,
    "PusherGoal": 100,
    "HalfCheetahVel": 200,
    "AntDir": 200,
    "PointGoal": 20,
}
# Paper, Table 4 (number of training tasks per family); PointGoal: ours.
_TRAIN_COUNT = {
    "ReacherGoal": 70,
    "PusherGoal": 35,
    "HalfCheetahVel": 15,
    "AntDir": 30,
    "PointGoal": 40,
}
_TEST_COUNT = 10
# Canonical split seeds: (train, test). Distinct streams; disjointness is also checked on use.
_SPLIT_SEEDS = {
    "ReacherGoal": (101, 201),
    "PusherGoal": (102, 202),
    "HalfCheetahVel": (103, 203),
    "AntDir": (104, 204),
    "PointGoal": (105, 205),
}

REACHER_GOAL_RADIUS = 0.2
PUSHER_OBJECT_RANGE = ((-0.3, 0.0), (-0.2, 0.2))  # (dy, dx) slide-joint offsets
PUSHER_GOAL_RANGE = ((-0.2, 0.0), (-0.1, 0.3))  # (dy, dx) slide-joint offsets
PUSHER_MIN_SEPARATION = 0.17  # pairs with ‖object − goal‖ ≤ this are rejected (as Pusher-v5 does)
CHEETAH_VELOCITY_RANGE = (0.0, 3.0)
ANT_DIRECTION_RANGE = (0.0, 2.0 * math.pi)
POINT_GOAL_RADIUS = 0.6  # m; the point reaches it in ~13 of its 20 steps at full thrust
POINT_ANGLE_RANGE = (0.0, 2.0 * math.pi)


def check_family(family: str) -> str:
    """Return ``family`` if it is one of :data:`FAMILIES`, else raise a ``ValueError``."""
    if family not in FAMILIES:
        raise ValueError(
            f"unknown task family {family!r}; expected one of {', '.join(FAMILIES)} "
            "(case-sensitive)"
        )
    return family


def _as_vector(cls_name: str, name: str, value: Any, size: int, meaning: str) -> tuple[float, ...]:
    """Coerce ``value`` to a tuple of ``size`` finite floats or raise a ValueError naming it."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.shape != (size,):
        raise ValueError(
            f"{cls_name}.{name} must be {size} numbers {meaning}; got {value!r}"
            + (f" with shape {arr.shape}" if arr is not None else "")
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{cls_name}.{name} must be finite; got {value!r}")
    return tuple(float(x) for x in arr)


def _as_scalar(cls_name: str, name: str, value: Any) -> float:
    """Coerce ``value`` to one finite float or raise a ValueError naming it."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.shape != () or isinstance(value, bool):
        raise ValueError(f"{cls_name}.{name} must be one number; got {value!r}")
    if not np.isfinite(arr):
        raise ValueError(f"{cls_name}.{name} must be finite; got {value!r}")
    return float(arr)


def _check_interval(
    cls_name: str, name: str, value: float, lo: float, hi: float, *, hi_open: bool = False
) -> None:
    inside = lo <= value < hi if hi_open else lo <= value <= hi
    if not inside:
        bracket = ")" if hi_open else "]"
        raise ValueError(
            f"{cls_name}.{name}={value!r} is outside the task distribution's support "
            f"[{lo}, {hi}{bracket}"
        )


@dataclass(frozen=True)
class _TaskBase:
    """Common behaviour of the four task types."""

    family: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict: ``{"family": ..., <field>: <float or list of floats>}``."""
        out: dict[str, Any] = {"family": self.family}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def to_array(self) -> np.ndarray:
        """The task's fields, flattened in declaration order, as float64."""
        parts = [np.atleast_1d(np.asarray(getattr(self, f.name))) for f in fields(self)]
        return np.concatenate(parts).astype(np.float64)

    def obs_features(self) -> np.ndarray:
        """What ``include_task_in_obs=True`` appends to the observation (default: ``to_array``)."""
        return self.to_array()


@dataclass(frozen=True)
class ReacherGoalTask(_TaskBase):
    """ReacherGoal task: the target position in the arm's plane, inside the disc ‖goal‖ < 0.2 m."""

    family: ClassVar[str] = "ReacherGoal"
    goal: tuple[float, float]
    """Target (x, y) in metres, in the world frame (the arm's base is at the origin)."""

    def __post_init__(self) -> None:
        goal = _as_vector("ReacherGoalTask", "goal", self.goal, 2, "(x, y) in metres")
        radius = math.hypot(*goal)
        if not radius < REACHER_GOAL_RADIUS:
            raise ValueError(
                f"ReacherGoalTask.goal={goal!r} has radius {radius:.4f} m, outside the task "
                f"distribution's support ‖goal‖ < {REACHER_GOAL_RADIUS} m"
            )
        object.__setattr__(self, "goal", goal)


@dataclass(frozen=True)
class PusherGoalTask(_TaskBase):
    """PusherGoal task: the object's start and the goal, as (dy, dx) slide-joint offsets.

    Both offsets are relative to the bodies' rest position (x, y) = (0.45, −0.05) m and are given
    in the order of Pusher's slide joints, **y first**, then x.
    """

    family: ClassVar[str] = "PusherGoal"
    object: tuple[float, float]
    """Object start offset (dy, dx) in metres; dy in [−0.3, 0], dx in [−0.2, 0.2]."""
    goal: tuple[float, float]
    """Goal offset (dy, dx) in metres; dy in [−0.2, 0], dx in [−0.1, 0.3]."""

    def __post_init__(self) -> None:
        obj = _as_vector("PusherGoalTask", "object", self.object, 2, "(dy, dx) in metres")
        goal = _as_vector("PusherGoalTask", "goal", self.goal, 2, "(dy, dx) in metres")
        for name, value, ranges in (
            ("object", obj, PUSHER_OBJECT_RANGE),
            ("goal", goal, PUSHER_GOAL_RANGE),
        ):
            for axis, v, (lo, hi) in zip(("dy", "dx"), value, ranges, strict=True):
                _check_interval("PusherGoalTask", f"{name}[{axis}]", v, lo, hi)
        separation = math.dist(obj, goal)
        if not separation > PUSHER_MIN_SEPARATION:
            raise ValueError(
                f"PusherGoalTask object={obj!r} and goal={goal!r} are {separation:.4f} m apart; "
                f"the task distribution requires more than {PUSHER_MIN_SEPARATION} m"
            )
        object.__setattr__(self, "object", obj)
        object.__setattr__(self, "goal", goal)

    def object_xy(self) -> tuple[float, float]:
        """The object's start in world (x, y) metres."""
        return (0.45 + self.object[1], -0.05 + self.object[0])

    def goal_xy(self) -> tuple[float, float]:
        """The goal in world (x, y) metres."""
        return (0.45 + self.goal[1], -0.05 + self.goal[0])


@dataclass(frozen=True)
class HalfCheetahVelTask(_TaskBase):
    """HalfCheetahVel task: the target forward velocity v* in m/s, in [0, 3]."""

    family: ClassVar[str] = "HalfCheetahVel"
    velocity: float
    """Target forward (x) velocity in m/s, in [0, 3]."""

    def __post_init__(self) -> None:
        v = _as_scalar("HalfCheetahVelTask", "velocity", self.velocity)
        _check_interval("HalfCheetahVelTask", "velocity", v, *CHEETAH_VELOCITY_RANGE)
        object.__setattr__(self, "velocity", v)


@dataclass(frozen=True)
class AntDirTask(_TaskBase):
    """AntDir task: the direction θ of travel in the ground plane, in radians, in [0, 2π)."""

    family: ClassVar[str] = "AntDir"
    direction: float
    """Angle θ in radians from the +x axis, counter-clockwise, in [0, 2π)."""

    def __post_init__(self) -> None:
        theta = _as_scalar("AntDirTask", "direction", self.direction)
        _check_interval("AntDirTask", "direction", theta, *ANT_DIRECTION_RANGE, hi_open=True)
        object.__setattr__(self, "direction", theta)

    def unit_vector(self) -> np.ndarray:
        """(cos θ, sin θ)."""
        return np.array([math.cos(self.direction), math.sin(self.direction)])

    def obs_features(self) -> np.ndarray:
        """(cos θ, sin θ): continuous across the 2π wrap, unlike θ itself."""
        return self.unit_vector()


@dataclass(frozen=True)
class PointGoalTask(_TaskBase):
    """PointGoal task: the goal's angle θ on the circle of radius 0.6 m around the start."""

    family: ClassVar[str] = "PointGoal"
    angle: float
    """Angle θ of the goal in radians from the +x axis, counter-clockwise, in [0, 2π)."""

    def __post_init__(self) -> None:
        theta = _as_scalar("PointGoalTask", "angle", self.angle)
        _check_interval("PointGoalTask", "angle", theta, *POINT_ANGLE_RANGE, hi_open=True)
        object.__setattr__(self, "angle", theta)

    def goal_xy(self) -> np.ndarray:
        """The goal (x, y) in metres: 0.6 · (cos θ, sin θ)."""
        return POINT_GOAL_RADIUS * np.array([math.cos(self.angle), math.sin(self.angle)])

    def obs_features(self) -> np.ndarray:
        """The goal (x, y): continuous across the 2π wrap, unlike θ itself."""
        return self.goal_xy()


Task = ReacherGoalTask | PusherGoalTask | HalfCheetahVelTask | AntDirTask | PointGoalTask
TASK_TYPES: dict[str, type[_TaskBase]] = {
    cls.family: cls
    for cls in (ReacherGoalTask, PusherGoalTask, HalfCheetahVelTask, AntDirTask, PointGoalTask)
}


def task_type(family: str) -> type[_TaskBase]:
    """The task dataclass of ``family``."""
    return TASK_TYPES[check_family(family)]


def task_from_dict(d: Mapping[str, Any]) -> Task:
    """Rebuild a task from ``task.to_dict()`` (or the equivalent parsed JSON)."""
    if not isinstance(d, Mapping) or "family" not in d:
        raise ValueError(f"a task dict needs a 'family' key (one of {FAMILIES}); got {d!r}")
    cls = task_type(d["family"])
    names = {f.name for f in fields(cls)}
    given = set(d) - {"family"}
    if given != names:
        raise ValueError(
            f"a {d['family']} task dict needs exactly the fields {sorted(names)}; "
            f"got {sorted(given)}"
        )
    return cls(**{k: d[k] for k in names})  # type: ignore[return-value]


def as_task(family: str, task: Task | Mapping[str, Any]) -> Task:
    """Accept a task value or its dict form for ``family``; refuse another family's task."""
    check_family(family)
    if isinstance(task, Mapping):
        task = task_from_dict(task if "family" in task else {"family": family, **task})
    if not isinstance(task, _TaskBase):
        raise ValueError(
            f"expected a {family} task ({task_type(family).__name__} or its dict); got {task!r}"
        )
    if task.family != family:
        raise ValueError(f"this env is {family}; it cannot take a {task.family} task: {task!r}")
    return task  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# Sampling


def _sample_one(family: str, rng: np.random.Generator) -> Task:
    if family == "ReacherGoal":
        # Reacher-v5's own rejection sampler: uniform in the square, kept inside the disc.
        while True:
            goal = rng.uniform(-REACHER_GOAL_RADIUS, REACHER_GOAL_RADIUS, size=2)
            if np.linalg.norm(goal) < REACHER_GOAL_RADIUS:
                return ReacherGoalTask(goal=tuple(goal))
    if family == "PusherGoal":
        while True:
            obj = [rng.uniform(*PUSHER_OBJECT_RANGE[0]), rng.uniform(*PUSHER_OBJECT_RANGE[1])]
            goal = [rng.uniform(*PUSHER_GOAL_RANGE[0]), rng.uniform(*PUSHER_GOAL_RANGE[1])]
            if math.dist(obj, goal) > PUSHER_MIN_SEPARATION:
                return PusherGoalTask(object=tuple(obj), goal=tuple(goal))
    if family == "HalfCheetahVel":
        return HalfCheetahVelTask(velocity=rng.uniform(*CHEETAH_VELOCITY_RANGE))
    # rng.uniform's upper bound is exclusive, matching [0, 2π).
    if family == "PointGoal":
        return PointGoalTask(angle=rng.uniform(*POINT_ANGLE_RANGE))
    return AntDirTask(direction=rng.uniform(*ANT_DIRECTION_RANGE))


def sample_tasks_with(family: str, n: int, rng: np.random.Generator) -> list[Task]:
    """Draw ``n`` tasks of ``family`` from the given generator (advances it)."""
    check_family(family)
    return [_sample_one(family, rng) for _ in range(n)]


def _check_count(name: str, n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"{name} must be a non-negative int; got {n!r}")
    return int(n)


def sample_tasks(family: str, n: int, seed: int) -> list[Task]:
    """``n`` i.i.d. tasks of ``family``, a pure function of ``seed`` (never the global RNG).

    Prefix-stable: ``sample_tasks(f, m, s) == sample_tasks(f, n, s)[:m]`` for m ≤ n.
    """
    check_family(family)
    n = _check_count("n", n)
    seed = _check_count("seed", seed)
    return sample_tasks_with(family, n, np.random.default_rng(seed))


def episode_length(family: str) -> int:
    """Steps per episode: 50 / 100 / 200 / 200 (AntDir may terminate earlier); PointGoal 20."""
    return _EPISODE_LENGTH[check_family(family)]


def train_count(family: str) -> int:
    """The paper's number of training tasks (Table 4): 70 / 35 / 15 / 30; PointGoal 40."""
    return _TRAIN_COUNT[check_family(family)]


def train_tasks(family: str, n: int | None = None) -> list[Task]:
    """The canonical training tasks of ``family`` (default count 70 / 35 / 15 / 30).

    A prefix of one fixed seeded stream, so ``train_tasks(f, 5)`` are the first 5 of the default
    list.
    """
    n = train_count(family) if n is None else _check_count("n", n)
    return sample_tasks(family, n, _SPLIT_SEEDS[family][0])


def test_tasks(family: str, n: int = _TEST_COUNT) -> list[Task]:
    """The canonical held-out test tasks of ``family``, disjoint from every training task.

    Drawn from a second fixed seeded stream; a draw that equals any of the first
    ``max(n, 1000)`` training tasks would be skipped (with continuous distributions this does not
    happen in practice, but the guarantee is checked rather than assumed).
    """
    check_family(family)
    n = _check_count("n", n)
    train = set(train_tasks(family, max(n, 1000)))
    rng = np.random.default_rng(_SPLIT_SEEDS[family][1])
    out: list[Task] = []
    while len(out) < n:
        task = _sample_one(family, rng)
        if task not in train:
            out.append(task)
    return out


# pytest collects module-level names starting with "test" from test files that import them.
test_tasks.__test__ = False  # type: ignore[attr-defined]


def task_support(family: str) -> str:
    """A one-line human description of the task distribution of ``family``."""
    return {
        "ReacherGoal": "goal (x, y) uniform in the disc ‖goal‖ < 0.2 m",
        "PusherGoal": (
            "object (dy, dx) ∈ [−0.3, 0]×[−0.2, 0.2], goal (dy, dx) ∈ [−0.2, 0]×[−0.1, 0.3], "
            "uniform, pairs closer than 0.17 m rejected"
        ),
        "HalfCheetahVel": "velocity v* ~ U[0, 3] m/s",
        "AntDir": "direction θ ~ U[0, 2π) rad",
        "PointGoal": "goal 0.6 m from the start at angle θ ~ U[0, 2π) rad",
    }[check_family(family)]


def tasks_to_json(tasks: Sequence[Task]) -> list[dict[str, Any]]:
    """``[t.to_dict() for t in tasks]``."""
    return [t.to_dict() for t in tasks]
