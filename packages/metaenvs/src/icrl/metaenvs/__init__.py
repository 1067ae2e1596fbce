"""Meta-task MuJoCo environments whose task is hidden from the observation.

The paper's four families on Gymnasium's v5 MuJoCo classes: ReacherGoal, PusherGoal,
HalfCheetahVel and AntDir (ids ``icrl/<Family>-v0``); and PointGoal, a point mass that must find a
hidden goal, the sanity family that shows in-context RL on a CPU in minutes. A task is a frozen,
JSON-serialisable dataclass; it is set once and persists across ``reset()``; only the reward
depends on it.

    >>> from icrl.metaenvs import make_env, train_tasks
    >>> env = make_env("AntDir", train_tasks("AntDir")[0])
    >>> obs, info = env.reset(seed=0)

Importing this package registers the ids with Gymnasium. See the package README for the
definitions, the task API and the conformance helper :mod:`icrl.metaenvs.testing`.
"""

from icrl.metaenvs._envs import (
    AntDirEnv,
    HalfCheetahVelEnv,
    PointGoalEnv,
    PusherGoalEnv,
    ReacherGoalEnv,
)
from icrl.metaenvs._reference import reference_returns
from icrl.metaenvs._registry import (
    env_id,
    env_metadata,
    make_env,
    make_vector_env,
    register_envs,
)
from icrl.metaenvs._tasks import (
    DEFINITION_VERSION,
    FAMILIES,
    PAPER_FAMILIES,
    SANITY_FAMILIES,
    AntDirTask,
    HalfCheetahVelTask,
    PointGoalTask,
    PusherGoalTask,
    ReacherGoalTask,
    Task,
    episode_length,
    sample_tasks,
    task_from_dict,
    task_support,
    task_type,
    test_tasks,
    train_count,
    train_tasks,
)

__all__ = [
    "DEFINITION_VERSION",
    "FAMILIES",
    "PAPER_FAMILIES",
    "SANITY_FAMILIES",
    "AntDirEnv",
    "AntDirTask",
    "HalfCheetahVelEnv",
    "HalfCheetahVelTask",
    "PointGoalEnv",
    "PointGoalTask",
    "PusherGoalEnv",
    "PusherGoalTask",
    "ReacherGoalEnv",
    "ReacherGoalTask",
    "Task",
    "env_id",
    "env_metadata",
    "episode_length",
    "make_env",
    "make_vector_env",
    "reference_returns",
    "register_envs",
    "sample_tasks",
    "task_from_dict",
    "task_support",
    "task_type",
    "test_tasks",
    "train_count",
    "train_tasks",
]

register_envs()
