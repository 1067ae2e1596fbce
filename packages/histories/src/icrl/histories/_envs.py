"""The seam to icrl.metaenvs: task lists, env construction and task (de)serialisation."""

from __future__ import annotations

from typing import Any


def _metaenvs() -> Any:
    import icrl.metaenvs as me

    return me


def env_id(family: str) -> str:
    """The registered Gymnasium id of a family (recorded in the file)."""
    return _metaenvs().env_id(family)


def train_tasks(family: str, n: int | None) -> list[Any]:
    """The first n tasks of the family's canonical train split (all when n is None)."""
    return split_tasks(family, n, "train")


def split_tasks(family: str, n: int | None, split: str = "train") -> list[Any]:
    """The first n tasks of the family's canonical train or test split (n None: the whole train
    split, or the 10 test tasks)."""
    me = _metaenvs()
    if split == "test":
        return list(me.test_tasks(family) if n is None else me.test_tasks(family, n))
    return list(me.train_tasks(family, n))


def task_to_dict(task: Any) -> dict[str, Any]:
    """JSON-ready form of a task."""
    return dict(task.to_dict())


def make_env(family: str, task: Any) -> Any:
    """One gymnasium env of `family` set to `task`, time-limited at its episode length."""
    return _metaenvs().make_env(family, task)


def definition_version() -> str:
    """icrl.metaenvs' version of the task definitions (dynamics, reward, task distribution)."""
    return str(_metaenvs().DEFINITION_VERSION)


def task_from_dict(d: dict[str, Any]) -> Any:
    """A task value from its dict."""
    return _metaenvs().task_from_dict(d)


def episode_length(family: str) -> int:
    """Steps of one episode of `family` (its time limit)."""
    return int(_metaenvs().episode_length(family))
