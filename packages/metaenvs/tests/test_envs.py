"""The four environments: Gymnasium conformance and faithfulness to their definitions."""

from __future__ import annotations

import json
import math
import pickle
import warnings

import gymnasium
import mujoco
import numpy as np
import pytest

from icrl.metaenvs import (
    FAMILIES,
    AntDirTask,
    HalfCheetahVelTask,
    PusherGoalTask,
    ReacherGoalTask,
    env_id,
    env_metadata,
    episode_length,
    make_env,
    make_vector_env,
    reference_returns,
    register_envs,
    sample_tasks,
    test_tasks,
    train_tasks,
)
from icrl.metaenvs.testing import (
    ConformanceError,
    check_conformance,
    gymnasium_check_env,
    rollout,
)

OBS_DIM = {"ReacherGoal": 8, "PusherGoal": 17, "HalfCheetahVel": 17, "AntDir": 27, "PointGoal": 4}
ACT_DIM = {"ReacherGoal": 2, "PusherGoal": 7, "HalfCheetahVel": 6, "AntDir": 8, "PointGoal": 2}
TASK_FEATURES = {
    "ReacherGoal": 2,
    "PusherGoal": 4,
    "HalfCheetahVel": 1,
    "AntDir": 2,
    "PointGoal": 2,
}


def random_actions(env: gymnasium.Env, n: int, seed: int) -> np.ndarray:
    space = env.action_space
    rng = np.random.default_rng(seed)
    return rng.uniform(space.low, space.high, size=(n, *space.shape)).astype(space.dtype)


@pytest.mark.parametrize("family", FAMILIES)
def test_gymnasium_check_env_passes(family: str) -> None:
    gymnasium_check_env(family, train_tasks(family)[0])


@pytest.mark.parametrize("family", FAMILIES)
def test_conformance(family: str) -> None:
    check_conformance(family, test_tasks(family, 2))


@pytest.mark.parametrize("family", FAMILIES)
def test_spaces_and_registration(family: str) -> None:
    env = make_env(family, train_tasks(family)[0])
    assert env.spec is not None and env.spec.id == env_id(family)
    assert env.spec.max_episode_steps == episode_length(family)
    assert env.observation_space.shape == (OBS_DIM[family],)
    assert env.action_space.shape == (ACT_DIM[family],)
    # Registered ids work through gymnasium.make directly, also with the module:id form that
    # imports this package first.
    spec = gymnasium.envs.registration.EnvSpec.from_json(env.spec.to_json())
    assert gymnasium.make(spec).unwrapped.task == train_tasks(family)[0]
    for eid in (env_id(family), f"icrl.metaenvs:{env_id(family)}"):
        other = gymnasium.make(eid, task=train_tasks(family)[1])
        assert other.unwrapped.task == train_tasks(family)[1]
        other.close()
    env.close()


def test_register_envs_is_idempotent() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # re-registering would warn "Overriding environment"
        register_envs()
        register_envs()
    assert all(env_id(f) in gymnasium.registry for f in FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
def test_include_task_in_obs_appends_the_task(family: str) -> None:
    task = train_tasks(family)[0]
    env = make_env(family, task, include_task_in_obs=True)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.shape == (OBS_DIM[family] + TASK_FEATURES[family],)
    assert np.array_equal(obs[OBS_DIM[family] :], task.obs_features())
    obs, *_ = env.step(env.action_space.sample())
    assert np.array_equal(obs[OBS_DIM[family] :], task.obs_features())
    plain = make_env(family, task)
    plain_obs, _ = plain.reset(seed=0)
    env.reset(seed=0)
    assert np.array_equal(env.unwrapped._get_obs()[: OBS_DIM[family]], plain_obs)


def test_wrong_task_for_the_env_is_refused() -> None:
    env = make_env("AntDir")
    with pytest.raises(ValueError, match="this env is AntDir; it cannot take a HalfCheetahVel"):
        env.unwrapped.set_task(HalfCheetahVelTask(velocity=1.0))
    with pytest.raises(ValueError, match=r"AntDirTask\.direction=7\.0"):
        env.reset(options={"task": {"direction": 7.0}})
    with pytest.raises(ValueError, match="unknown options"):
        env.reset(options={"tsak": AntDirTask(direction=1.0)})
    with pytest.raises(ValueError, match="unknown task family"):
        make_env("Ant")


@pytest.mark.parametrize("family", FAMILIES)
def test_default_task_is_drawn_from_the_reset_seed_and_persists(family: str) -> None:
    a, b = make_env(family), make_env(family)
    a.reset(seed=3)
    b.reset(seed=3)
    assert a.unwrapped.task is not None and a.unwrapped.task == b.unwrapped.task
    first = a.unwrapped.task
    a.reset(seed=4)
    assert a.unwrapped.task == first


@pytest.mark.parametrize("family", FAMILIES)
def test_env_pickles_with_its_task(family: str) -> None:
    task = test_tasks(family)[3]
    env = make_env(family, train_tasks(family)[0])
    env.unwrapped.task = task
    clone = pickle.loads(pickle.dumps(env.unwrapped))
    assert clone.task == task
    clone.close()


# --- faithfulness: rewards recomputed from MuJoCo's state ---------------------------------------


def body_pos(env: gymnasium.Env, name: str) -> np.ndarray:
    u = env.unwrapped
    return u.data.xpos[mujoco.mj_name2id(u.model, mujoco.mjtObj.mjOBJ_BODY, name)].copy()


def test_reacher_reward_goal_and_obs_from_state() -> None:
    task = ReacherGoalTask(goal=(-0.12, 0.05))
    env = make_env("ReacherGoal", task)
    obs, _ = env.reset(seed=0)
    assert np.allclose(body_pos(env, "target")[:2], task.goal, atol=1e-12)
    for action in random_actions(env, 50, 0):
        obs, reward, terminated, truncated, info = env.step(action)
        tip, target = body_pos(env, "fingertip"), body_pos(env, "target")
        assert np.allclose(target[:2], task.goal, atol=1e-12)  # the goal never moves
        a = action.astype(np.float64)
        expected = -np.linalg.norm(tip - target) - 1.0 * a @ a  # control weight 1 (v5 code)
        assert reward == pytest.approx(expected, rel=1e-12, abs=1e-12)
        assert info["reward_dist"] == pytest.approx(-np.linalg.norm(tip - target), rel=1e-12)
        q = env.unwrapped.data.qpos[:2]
        assert np.allclose(obs, [*np.cos(q), *np.sin(q), *env.unwrapped.data.qvel[:2], *tip[:2]])
        assert not terminated
    assert truncated


def test_pusher_reward_and_bodies_from_state() -> None:
    task = PusherGoalTask(object=(-0.25, 0.1), goal=(-0.05, 0.2))
    env = make_env("PusherGoal", task)
    env.reset(seed=0)
    # Slide joints are (y, x): world position = rest (0.45, −0.05) + (dx, dy).
    assert np.allclose(body_pos(env, "object")[:2], [0.45 + 0.1, -0.05 - 0.25], atol=1e-12)
    assert np.allclose(body_pos(env, "goal")[:2], [0.45 + 0.2, -0.05 - 0.05], atol=1e-12)
    assert np.allclose(body_pos(env, "goal")[:2], task.goal_xy(), atol=1e-12)
    assert np.allclose(body_pos(env, "object")[:2], task.object_xy(), atol=1e-12)
    for action in random_actions(env, 100, 1):
        _, reward, terminated, truncated, _ = env.step(action)
        obj, goal, tip = body_pos(env, "object"), body_pos(env, "goal"), body_pos(env, "tips_arm")
        a = action.astype(np.float64)
        expected = -np.linalg.norm(obj - goal) - 0.1 * a @ a - 0.5 * np.linalg.norm(obj - tip)
        assert reward == pytest.approx(expected, rel=1e-12, abs=1e-12)
        assert not terminated
    assert truncated
    # Pusher-v5 mutates init_qpos on reset; ours must not leak one task's layout into the next.
    env.reset(seed=0, options={"task": PusherGoalTask(object=(-0.1, -0.1), goal=(-0.15, 0.25))})
    assert np.allclose(body_pos(env, "object")[:2], [0.35, -0.15], atol=1e-12)
    assert not env.unwrapped.init_qpos.any()


def test_cheetah_reward_from_state() -> None:
    task = HalfCheetahVelTask(velocity=1.7)
    env = make_env("HalfCheetahVel", task)
    env.reset(seed=0)
    dt = env.unwrapped.dt
    assert dt == pytest.approx(0.05)
    for action in random_actions(env, 200, 2):
        x_before = env.unwrapped.data.qpos[0]
        _, reward, terminated, truncated, info = env.step(action)
        v = (env.unwrapped.data.qpos[0] - x_before) / dt
        a = action.astype(np.float64)
        assert reward == pytest.approx(-abs(v - 1.7) - 0.05 * a @ a, rel=1e-12, abs=1e-12)
        assert info["x_velocity"] == pytest.approx(v, rel=1e-12)
        assert not terminated
    assert truncated


def test_ant_reward_from_state() -> None:
    task = AntDirTask(direction=2.0)
    env = make_env("AntDir", task, terminate_when_unhealthy=False)
    env.reset(seed=0)
    u = env.unwrapped
    dt = u.dt
    assert dt == pytest.approx(0.05)
    direction = np.array([math.cos(2.0), math.sin(2.0)])
    steps = 0
    for action in random_actions(env, 200, 3):
        xy_before = body_pos(env, "torso")[:2]
        _, reward, terminated, truncated, info = env.step(action)
        steps += 1
        xy_after = body_pos(env, "torso")[:2]
        z = u.data.qpos[2]
        healthy = float(0.2 <= z <= 1.0 and np.isfinite(u.state_vector()).all())
        contact = 5e-4 * np.sum(np.square(np.clip(u.data.cfrc_ext, -1.0, 1.0)))
        a = action.astype(np.float64)
        expected = (xy_after - xy_before) / dt @ direction + healthy - 0.5 * a @ a - contact
        assert reward == pytest.approx(expected, rel=1e-12, abs=1e-12)
        assert info["reward_survive"] == healthy
        assert not terminated  # termination disabled
        if truncated:
            break
    assert steps == 200


def test_ant_terminates_when_unhealthy_by_default() -> None:
    env = make_env("AntDir", AntDirTask(direction=0.0))
    run = rollout(env, random_actions(env, 200, 0), seed=0)
    assert run["terminated"][-1] and len(run["reward"]) < 200
    assert not 0.2 <= env.unwrapped.data.qpos[2] <= 1.0


# --- hidden task: same seed and actions, different tasks ------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_observations_do_not_depend_on_the_task(family: str) -> None:
    task_a, task_b = sample_tasks(family, 2, seed=11)
    kwargs = {"terminate_when_unhealthy": False} if family == "AntDir" else {}
    env = make_env(family, **kwargs)
    actions = random_actions(env, episode_length(family), 5)
    if family == "PusherGoal":
        actions[:] = 0.0  # a still arm never reaches the object, so the whole episode is comparable
    run_a = rollout(env, actions, 9, {"task": task_a})
    run_b = rollout(env, actions, 9, {"task": task_b})
    assert len(run_a["reward"]) == len(run_b["reward"]) == episode_length(family)
    assert np.array_equal(run_a["obs"], run_b["obs"])
    assert not np.allclose(run_a["reward"], run_b["reward"])


def reach_for_the_object(env: gymnasium.Env, steps: int) -> np.ndarray:
    """A Jacobian-transpose controller driving the arm tip to the object; returns its actions."""
    u = env.unwrapped
    tip = u.model.body("tips_arm").id
    jacp = np.zeros((3, u.model.nv))
    actions = []
    for _ in range(steps):
        mujoco.mj_jacBody(u.model, u.data, jacp, None, tip)
        err = body_pos(env, "object") - body_pos(env, "tips_arm")
        action = np.clip(10 * jacp[:, :7].T @ err - u.data.qvel[:7], -2, 2).astype(np.float32)
        actions.append(action)
        env.step(action)
    return np.stack(actions)


def test_pusher_observations_diverge_only_after_the_arm_touches_the_object() -> None:
    task_a = sample_tasks("PusherGoal", 1, seed=0)[0]
    task_b = PusherGoalTask(object=(-0.3, 0.2), goal=(0.0, -0.1))
    env = make_env("PusherGoal", task_a)
    env.reset(seed=0)
    actions = reach_for_the_object(env, 100)  # closed loop on task_a, replayed open loop below
    run_a = rollout(env, actions, 0, {"task": task_a})
    run_b = rollout(env, actions, 0, {"task": task_b})
    contact = [
        a["object_contact"] or b["object_contact"]
        for a, b in zip(run_a["infos"], run_b["infos"], strict=True)
    ]
    assert any(contact), "the reaching controller should touch the object of task_a"
    first = contact.index(True)
    assert first > 5
    # Observation t+1 follows step t: identical up to the step of first contact, not after.
    assert np.array_equal(run_a["obs"][: first + 1], run_b["obs"][: first + 1])
    assert not np.array_equal(run_a["obs"], run_b["obs"])


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_task_and_actions_give_identical_trajectories(family: str) -> None:
    task = test_tasks(family)[0]
    env_a, env_b = make_env(family, task), make_env(family, task)
    actions = random_actions(env_a, episode_length(family), 4)
    run_a, run_b = rollout(env_a, actions, 21), rollout(env_b, actions, 21)
    for key in ("obs", "reward", "terminated", "truncated"):
        assert np.array_equal(run_a[key], run_b[key])
    run_c = rollout(env_a, actions, 22)
    assert not np.array_equal(run_a["obs"][0], run_c["obs"][0])  # the seed matters


@pytest.mark.parametrize("family", FAMILIES)
def test_episode_lengths_under_zero_actions(family: str) -> None:
    env = make_env(family, train_tasks(family)[0])
    run = rollout(env, np.zeros((300, *env.action_space.shape), np.float32), seed=0)
    assert len(run["reward"]) == episode_length(family)
    assert run["truncated"][-1] and not run["terminated"].any()


# --- vector envs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("asynchronous", [False, True])
def test_vector_env_holds_one_task_per_sub_env(asynchronous: bool) -> None:
    tasks = train_tasks("HalfCheetahVel", 3)
    vec = make_vector_env("HalfCheetahVel", tasks, asynchronous=asynchronous)
    try:
        obs, _ = vec.reset(seed=[5, 5, 5])
        assert obs.shape == (3, 17)
        assert list(vec.get_attr("task")) == tasks
        actions = np.zeros((3, 6), np.float32)
        _, reward, *_ = vec.step(actions)
        # Same seed and action in each sub-env: identical motion, so rewards differ only by task.
        _, _, _, _, info = vec.step(actions)
        v = info["x_velocity"]
        assert np.allclose(v, v[0])
        new = test_tasks("HalfCheetahVel", 3)
        vec.set_attr("task", new)
        assert list(vec.get_attr("task")) == new
        vec.reset(seed=0)
        assert list(vec.get_attr("task")) == new  # persists across the vector reset
    finally:
        vec.close()
    assert len(set(reward.tolist())) == 3


# --- reference returns and metadata ------------------------------------------------------------


def test_reference_returns_are_reproducible_and_ordered() -> None:
    tasks = test_tasks("ReacherGoal", 2)
    zero = reference_returns("ReacherGoal", tasks, "zero", episodes=2, seed=0)
    rand, lengths = reference_returns(
        "ReacherGoal", tasks, "random", episodes=2, seed=0, with_lengths=True
    )
    assert zero.shape == rand.shape == lengths.shape == (2, 2)
    assert (lengths == 50).all()
    assert np.array_equal(rand, reference_returns("ReacherGoal", tasks, "random", 2, seed=0))
    assert not np.array_equal(rand, reference_returns("ReacherGoal", tasks, "random", 2, seed=1))
    # The random policy pays 1·E‖a‖² = 2/3 per step in control cost alone.
    assert (rand < zero).all() and (zero < 0).all()
    with pytest.raises(ValueError, match="policy must be 'zero' or 'random'"):
        reference_returns("ReacherGoal", tasks, "greedy")


def test_ant_standing_still_earns_about_200() -> None:
    zero = reference_returns("AntDir", test_tasks("AntDir", 1), "zero")
    assert 185 < zero[0, 0] < 200  # +1 healthy per step, minus a small contact cost


@pytest.mark.parametrize("family", FAMILIES)
def test_env_metadata_is_json(family: str) -> None:
    meta = env_metadata(family)
    assert json.loads(json.dumps(meta)) == meta
    assert meta["env_id"] == env_id(family) and meta["obs_dim"] == OBS_DIM[family]
    assert meta["terminates"] == (family == "AntDir")
    assert env_metadata("AntDir", terminate_when_unhealthy=False)["terminates"] is False


def test_vector_env_under_spawn_pickles_its_sub_envs() -> None:
    # "spawn" pickles each sub-env's factory into a fresh interpreter (fork would not).
    tasks = test_tasks("ReacherGoal", 2)
    vec = make_vector_env("ReacherGoal", tasks, asynchronous=True, context="spawn")
    try:
        vec.reset(seed=0)
        assert list(vec.get_attr("task")) == tasks
        _, reward, *_ = vec.step(np.zeros((2, 2), np.float32))
        assert reward.shape == (2,) and reward[0] != reward[1]
    finally:
        vec.close()


def test_conformance_check_catches_a_task_leak() -> None:
    with pytest.raises(ConformanceError, match=r"observation 0 differs.*depends on the task"):
        check_conformance("HalfCheetahVel", include_task_in_obs=True)
    check_conformance("HalfCheetahVel", include_task_in_obs=True, check_hidden=False)


def test_a_new_task_takes_effect_at_the_next_reset() -> None:
    old, new = HalfCheetahVelTask(velocity=0.5), HalfCheetahVelTask(velocity=2.5)
    env_a, env_b = make_env("HalfCheetahVel", old), make_env("HalfCheetahVel", old)
    env_a.reset(seed=0)
    env_b.reset(seed=0)
    action = np.zeros(6, np.float32)
    env_a.unwrapped.set_task(new)  # mid-episode: the running episode keeps `old`
    assert env_a.unwrapped.task == new and env_a.unwrapped.episode_task == old
    assert env_a.step(action)[1] == env_b.step(action)[1]
    env_a.reset(seed=0)
    env_b.reset(seed=0, options={"task": new})
    assert env_a.unwrapped.episode_task == new
    assert env_a.step(action)[1] == env_b.step(action)[1]


def test_reference_returns_script_prints_a_markdown_table(monkeypatch, capsys) -> None:
    import pathlib
    import runpy
    import sys

    script = pathlib.Path(__file__).parents[1] / "benchmarks" / "reference_returns.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--n-tasks", "1", "--episodes", "1"])
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + len(FAMILIES) + 1  # header, one per family, AntDir without termination
    assert all(f"| {family} |" in out for family in FAMILIES)
