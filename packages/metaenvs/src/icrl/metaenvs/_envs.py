"""The four meta-task environments, subclassing Gymnasium's v5 MuJoCo classes.

Each env holds one task, set by the constructor, ``set_task``, the ``task`` property or
``reset(options={"task": ...})``; it persists across resets until changed. Nothing task-dependent
is in the observation unless ``include_task_in_obs=True`` (for oracles and debugging).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from gymnasium import utils
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
from gymnasium.envs.mujoco.pusher_v5 import PusherEnv
from gymnasium.envs.mujoco.reacher_v5 import ReacherEnv
from gymnasium.spaces import Box

from icrl.metaenvs._tasks import (
    AntDirTask,
    HalfCheetahVelTask,
    PointGoalTask,
    PusherGoalTask,
    ReacherGoalTask,
    Task,
    as_task,
    sample_tasks_with,
)


def _sq_norm(action: Any) -> float:
    """‖a‖² in float64 (Gymnasium's v5 envs sum the float32 action)."""
    a = np.asarray(action, dtype=np.float64)
    return float(np.dot(a.ravel(), a.ravel()))


class _MetaTaskMixin:
    """Task handling shared by the four envs; must come first in the bases (before the MuJoCo env).

    Subclasses set ``family``, call ``_init_task`` at the end of ``__init__`` and implement
    ``_hidden_obs`` (the observation without any task information).
    """

    family: str
    _task: Task | None  # the task set; it takes effect at the next reset
    _episode_task: Task | None  # the task of the running episode
    include_task_in_obs: bool

    def _init_task(self, task: Task | Mapping[str, Any] | None, include_task_in_obs: bool) -> None:
        self.include_task_in_obs = bool(include_task_in_obs)
        self._task = None
        self._episode_task = None
        if task is not None:
            self.set_task(task)
        if self.include_task_in_obs:
            extra = self._task_feature_dim()
            base = self.observation_space.shape[0]  # type: ignore[attr-defined]
            self.observation_space = Box(-np.inf, np.inf, shape=(base + extra,), dtype=np.float64)

    def _task_feature_dim(self) -> int:
        # Any valid task has the same feature size; sample one from a throwaway generator.
        probe = sample_tasks_with(self.family, 1, np.random.default_rng(0))[0]
        return probe.obs_features().shape[0]

    @property
    def task(self) -> Task | None:
        """The task set (``None`` until set or until the first reset draws one)."""
        return self._task

    @property
    def episode_task(self) -> Task | None:
        """The task of the running episode (``task`` as it was at the last reset)."""
        return self._episode_task

    @task.setter
    def task(self, value: Task | Mapping[str, Any]) -> None:
        self.set_task(value)

    def set_task(self, task: Task | Mapping[str, Any]) -> None:
        """Set the task (a task value or its dict); it takes effect at the next ``reset``.

        A running episode keeps the task it started with (so a vector env whose tasks change
        mid-episode switches each sub-env at its own next reset).
        """
        self._task = as_task(self.family, task)
        # EzPickle rebuilds the env from its constructor arguments: keep the task among them so
        # that a pickled copy (e.g. sent to a subprocess) carries the current task.
        self._ezpickle_kwargs = {**self._ezpickle_kwargs, "task": self._task}  # type: ignore[has-type]

    def get_task(self) -> Task | None:
        """The current task (alias of the ``task`` property)."""
        return self._task

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset; ``options={"task": task}`` sets the task first.

        With no task ever set, the first reset draws one from the task distribution with a
        generator seeded by ``seed`` (separate from the env's ``np_random``, so initial states do
        not depend on it); that task then persists like any other.
        """
        unknown = sorted(set(options or {}) - {"task"})
        if unknown:
            raise ValueError(
                f"{type(self).__name__}.reset got unknown options {unknown}; "
                "the only option is 'task'"
            )
        if options and "task" in options:
            self.set_task(options["task"])
        if self._task is None:
            self.set_task(sample_tasks_with(self.family, 1, np.random.default_rng(seed))[0])
        self._episode_task = self._task
        return super().reset(seed=seed)  # type: ignore[misc]

    def _get_obs(self) -> np.ndarray:
        obs = self._hidden_obs()
        if self.include_task_in_obs:
            assert self._episode_task is not None
            obs = np.concatenate([obs, self._episode_task.obs_features()])
        return obs

    def _hidden_obs(self) -> np.ndarray:
        raise NotImplementedError


class ReacherGoalEnv(_MetaTaskMixin, ReacherEnv):
    """Reacher-v5 with a hidden, fixed goal. Reward −‖tip − goal‖ − 1.0·‖a‖² (v5 code defaults).

    Observation (8-d): cos q, sin q, q̇ (arm joints), fingertip (x, y). Reacher-v5's target
    position (obs[4:6]) and tip − target (obs[8:10]) are dropped.
    """

    family = "ReacherGoal"

    def __init__(
        self,
        task: ReacherGoalTask | Mapping[str, Any] | None = None,
        *,
        include_task_in_obs: bool = False,
        **kwargs: Any,
    ):
        ReacherEnv.__init__(self, **kwargs)
        utils.EzPickle.__init__(self, task=task, include_task_in_obs=include_task_in_obs, **kwargs)
        self.observation_space = Box(-np.inf, np.inf, shape=(8,), dtype=np.float64)
        self._init_task(task, include_task_in_obs)

    def reset_model(self) -> np.ndarray:
        # Reacher-v5's arm noise, drawn without its goal rejection loop so that the initial arm
        # state does not depend on the task.
        qpos = self.init_qpos + self.np_random.uniform(-0.1, 0.1, size=self.model.nq)
        qvel = self.init_qvel + self.np_random.uniform(-0.005, 0.005, size=self.model.nv)
        assert isinstance(self._episode_task, ReacherGoalTask)
        self.goal = np.array(self._episode_task.goal)
        qpos[-2:] = self.goal
        qvel[-2:] = 0.0
        self.set_state(qpos, qvel)
        return self._get_obs()

    def _get_rew(self, action):
        # Reacher-v5's formula and weights, computed in float64.
        tip_to_goal = self.get_body_com("fingertip") - self.get_body_com("target")
        reward_dist = -self._reward_dist_weight * float(np.linalg.norm(tip_to_goal))
        reward_ctrl = -self._reward_control_weight * _sq_norm(action)
        return reward_dist + reward_ctrl, {"reward_dist": reward_dist, "reward_ctrl": reward_ctrl}

    def _hidden_obs(self) -> np.ndarray:
        theta = self.data.qpos[:2]
        return np.concatenate(
            [
                np.cos(theta),
                np.sin(theta),
                self.data.qvel[:2],
                self.get_body_com("fingertip")[:2],
            ]
        )


class PusherGoalEnv(_MetaTaskMixin, PusherEnv):
    """Pusher-v5 with hidden, fixed object start and goal.

    Reward −1.0·‖obj − goal‖ − 0.1·‖a‖² − 0.5·‖obj − tip‖ (v5 defaults). Observation (17-d):
    arm qpos[:7], qvel[:7], arm tip (x, y, z); Pusher-v5's object and goal xyz are dropped.
    """

    family = "PusherGoal"

    def __init__(
        self,
        task: PusherGoalTask | Mapping[str, Any] | None = None,
        *,
        include_task_in_obs: bool = False,
        **kwargs: Any,
    ):
        PusherEnv.__init__(self, **kwargs)
        utils.EzPickle.__init__(self, task=task, include_task_in_obs=include_task_in_obs, **kwargs)
        self.observation_space = Box(-np.inf, np.inf, shape=(17,), dtype=np.float64)
        self._init_task(task, include_task_in_obs)

    def reset_model(self) -> np.ndarray:
        # Copy: Pusher-v5 writes into init_qpos in place. Its qvel noise is kept; its object
        # sampler is replaced by the task.
        qpos = self.init_qpos.copy()
        qvel = self.init_qvel + self.np_random.uniform(-0.005, 0.005, size=self.model.nv)
        assert isinstance(self._episode_task, PusherGoalTask)
        # Slide joints are ordered (y, x) for both bodies, as are the task's offsets.
        self.cylinder_pos = np.array(self._episode_task.object)
        self.goal_pos = np.array(self._episode_task.goal)
        qpos[-4:-2] = self.cylinder_pos
        qpos[-2:] = self.goal_pos
        qvel[-4:] = 0.0
        self.set_state(qpos, qvel)
        return self._get_obs()

    def step(self, action):
        """Pusher-v5's step; ``info["object_contact"]`` says whether the arm touches the object.

        Until it does, the arm's motion (the whole observation) is independent of the task.
        """
        observation, reward, terminated, truncated, info = super().step(action)
        info["object_contact"] = self.object_contact()
        return observation, reward, terminated, truncated, info

    def object_contact(self) -> bool:
        """Whether any geom of a moving body (the arm) is in contact with the object."""
        object_id = self.model.body("object").id
        for i in range(self.data.ncon):
            bodies = {
                int(self.model.geom_bodyid[self.data.contact.geom1[i]]),
                int(self.model.geom_bodyid[self.data.contact.geom2[i]]),
            }
            if object_id in bodies and 0 not in bodies:  # body 0 (world) holds the table
                return True
        return False

    def _get_rew(self, action):
        # Pusher-v5's formula and weights, computed in float64.
        obj = self.get_body_com("object")
        reward_near = -self._reward_near_weight * float(
            np.linalg.norm(obj - self.get_body_com("tips_arm"))
        )
        reward_dist = -self._reward_dist_weight * float(
            np.linalg.norm(obj - self.get_body_com("goal"))
        )
        reward_ctrl = -self._reward_control_weight * _sq_norm(action)
        info = {"reward_dist": reward_dist, "reward_ctrl": reward_ctrl, "reward_near": reward_near}
        return reward_dist + reward_ctrl + reward_near, info

    def _hidden_obs(self) -> np.ndarray:
        return np.concatenate(
            [self.data.qpos[:7], self.data.qvel[:7], self.get_body_com("tips_arm")]
        )


class HalfCheetahVelEnv(_MetaTaskMixin, HalfCheetahEnv):
    """HalfCheetah-v5 rewarded for running at a hidden target velocity v*.

    Reward −|v_x − v*| − 0.05·‖a‖² (the meta-RL convention; v5's default control weight is 0.1).
    Observation: the v5 default (17-d).
    """

    family = "HalfCheetahVel"

    def __init__(
        self,
        task: HalfCheetahVelTask | Mapping[str, Any] | None = None,
        *,
        include_task_in_obs: bool = False,
        ctrl_cost_weight: float = 0.05,
        **kwargs: Any,
    ):
        HalfCheetahEnv.__init__(self, ctrl_cost_weight=ctrl_cost_weight, **kwargs)
        utils.EzPickle.__init__(
            self,
            task=task,
            include_task_in_obs=include_task_in_obs,
            ctrl_cost_weight=ctrl_cost_weight,
            **kwargs,
        )
        self._init_task(task, include_task_in_obs)

    def _hidden_obs(self) -> np.ndarray:
        return HalfCheetahEnv._get_obs(self)

    def step(self, action):
        """One control step; ``info`` holds ``reward_forward`` and ``reward_ctrl`` (they sum)."""
        task = self._episode_task
        assert isinstance(task, HalfCheetahVelTask), "call reset() before step()"
        x_before = self.data.qpos[0]
        self.do_simulation(action, self.frame_skip)
        x_after = self.data.qpos[0]
        x_velocity = (x_after - x_before) / self.dt
        observation = self._get_obs()
        reward_forward = -self._forward_reward_weight * abs(float(x_velocity) - task.velocity)
        reward_ctrl = -self._ctrl_cost_weight * _sq_norm(action)
        info = {
            "x_position": x_after,
            "x_velocity": x_velocity,
            "reward_forward": reward_forward,
            "reward_ctrl": reward_ctrl,
        }
        if self.render_mode == "human":
            self.render()
        return observation, reward_forward + reward_ctrl, False, False, info


class AntDirEnv(_MetaTaskMixin, AntEnv):
    """Ant-v5 rewarded for walking in a hidden direction θ (PEARL / MACAW reward).

    Reward v_xy·(cos θ, sin θ) − 0.5·‖a‖² − 5e-4·‖clip(cfrc_ext)‖² + 1 (while healthy).
    Observation: 27-d (qpos[2:], qvel; no contact forces). Terminates when the torso leaves
    z ∈ [0.2, 1.0] unless ``terminate_when_unhealthy=False``.
    """

    family = "AntDir"

    def __init__(
        self,
        task: AntDirTask | Mapping[str, Any] | None = None,
        *,
        include_task_in_obs: bool = False,
        terminate_when_unhealthy: bool = True,
        include_cfrc_ext_in_observation: bool = False,
        **kwargs: Any,
    ):
        AntEnv.__init__(
            self,
            terminate_when_unhealthy=terminate_when_unhealthy,
            include_cfrc_ext_in_observation=include_cfrc_ext_in_observation,
            **kwargs,
        )
        utils.EzPickle.__init__(
            self,
            task=task,
            include_task_in_obs=include_task_in_obs,
            terminate_when_unhealthy=terminate_when_unhealthy,
            include_cfrc_ext_in_observation=include_cfrc_ext_in_observation,
            **kwargs,
        )
        self._init_task(task, include_task_in_obs)

    def _hidden_obs(self) -> np.ndarray:
        return AntEnv._get_obs(self)

    def step(self, action):
        """One control step; Ant-v5's own reward only sees x velocity, so the step is redone here.

        ``info`` holds ``reward_forward``, ``reward_ctrl``, ``reward_contact`` and
        ``reward_survive`` (they sum to the reward) and the xy velocity.
        """
        task = self._episode_task
        assert isinstance(task, AntDirTask), "call reset() before step()"
        xy_before = self.data.body(self._main_body).xpos[:2].copy()
        self.do_simulation(action, self.frame_skip)
        xy_after = self.data.body(self._main_body).xpos[:2].copy()
        xy_velocity = (xy_after - xy_before) / self.dt
        observation = self._get_obs()
        reward_forward = self._forward_reward_weight * float(xy_velocity @ task.unit_vector())
        reward_survive = float(self.healthy_reward)
        reward_ctrl = -self._ctrl_cost_weight * _sq_norm(action)
        reward_contact = -float(self.contact_cost)
        reward = reward_forward + reward_survive + reward_ctrl + reward_contact
        terminated = (not self.is_healthy) and self._terminate_when_unhealthy
        info = {
            "x_position": self.data.qpos[0],
            "y_position": self.data.qpos[1],
            "distance_from_origin": np.linalg.norm(self.data.qpos[0:2], ord=2),
            "x_velocity": xy_velocity[0],
            "y_velocity": xy_velocity[1],
            "reward_forward": reward_forward,
            "reward_ctrl": reward_ctrl,
            "reward_contact": reward_contact,
            "reward_survive": reward_survive,
        }
        if self.render_mode == "human":
            self.render()
        return observation, reward, terminated, False, info


class PointGoalEnv(_MetaTaskMixin, MujocoEnv, utils.EzPickle):
    """The sanity family: a damped point mass on a plane must find a hidden goal.

    The continuous-control counterpart of AD's Dark Room, small enough to show in-context RL on a
    CPU in minutes. Two motors push the point (mass 0.2 kg, damping 2 N·s/m per axis, so full
    thrust gives 0.5 m/s after ~0.1 s); one step is 0.1 s (10 MuJoCo steps of 0.01 s); an episode
    is 20 steps. The goal lies 0.6 m from the start at a hidden angle. Reward
    −‖p − goal‖ − 0.05·‖a‖². Observation (4-d): position (x, y) and velocity (vx, vy).
    Reset: the point at the origin ± 0.01 m, at rest ± 0.01 m/s.
    """

    family = "PointGoal"
    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": ["human", "rgb_array", "depth_array", "rgbd_tuple"]
    }

    def __init__(
        self,
        task: PointGoalTask | Mapping[str, Any] | None = None,
        *,
        include_task_in_obs: bool = False,
        ctrl_cost_weight: float = 0.05,
        **kwargs: Any,
    ):
        utils.EzPickle.__init__(
            self,
            task=task,
            include_task_in_obs=include_task_in_obs,
            ctrl_cost_weight=ctrl_cost_weight,
            **kwargs,
        )
        self._ctrl_cost_weight = ctrl_cost_weight
        obs_space = Box(-np.inf, np.inf, shape=(4,), dtype=np.float64)
        xml = Path(__file__).with_name("assets") / "point_goal.xml"
        MujocoEnv.__init__(self, str(xml), 10, observation_space=obs_space, **kwargs)
        self.metadata = {**self.metadata, "render_fps": int(np.round(1.0 / self.dt))}
        self._init_task(task, include_task_in_obs)

    def reset_model(self) -> np.ndarray:
        qpos = self.init_qpos + self.np_random.uniform(-0.01, 0.01, size=self.model.nq)
        qvel = self.init_qvel + self.np_random.uniform(-0.01, 0.01, size=self.model.nv)
        assert isinstance(self._episode_task, PointGoalTask)
        self.data.mocap_pos[0, :2] = self._episode_task.goal_xy()
        self.set_state(qpos, qvel)
        return self._get_obs()

    def _hidden_obs(self) -> np.ndarray:
        return np.concatenate([self.data.qpos[:2], self.data.qvel[:2]]).astype(np.float64)

    def step(self, action):
        """One control step; ``info`` holds ``reward_dist`` and ``reward_ctrl`` (they sum)."""
        task = self._episode_task
        assert isinstance(task, PointGoalTask), "call reset() before step()"
        self.do_simulation(action, self.frame_skip)
        observation = self._get_obs()
        reward_dist = -float(np.linalg.norm(self.data.qpos[:2] - task.goal_xy()))
        reward_ctrl = -self._ctrl_cost_weight * _sq_norm(action)
        info = {"reward_dist": reward_dist, "reward_ctrl": reward_ctrl}
        if self.render_mode == "human":
            self.render()
        return observation, reward_dist + reward_ctrl, False, False, info


ENV_CLASSES: dict[str, type[_MetaTaskMixin]] = {
    cls.family: cls
    for cls in (ReacherGoalEnv, PusherGoalEnv, HalfCheetahVelEnv, AntDirEnv, PointGoalEnv)
}
