"""``python -m icrl.baselines macaw {train,evaluate,run}``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from icrl.baselines.macaw._config import MacawEvalConfig, MacawTrainConfig
from icrl.baselines.macaw._eval import evaluate_macaw, run_macaw
from icrl.baselines.macaw._train import train_macaw
from icrl.histories.runtime import read_config_file


def _given(args: argparse.Namespace, names: dict[str, str]) -> dict[str, Any]:
    return {field: getattr(args, a) for a, field in names.items() if getattr(args, a) is not None}


_TRAIN_FLAGS = {"histories": "histories", "steps": "steps", "device": "device", "tasks": "tasks"}
_EVAL_FLAGS = {
    "episodes": "episodes",
    "n_test_tasks": "n_test_tasks",
    "adaptation": "adaptation",
    "test_histories": "test_histories",
    "explore_sigma": "explore_sigma",
}


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--histories", type=Path, help="HDF5 learning histories of the train tasks")
    p.add_argument("--steps", type=int, help="meta-training steps")
    p.add_argument("--device", help="torch device (cpu, cuda, auto)")
    p.add_argument("--tasks", nargs="+", help="task names in the file (default: all)")


def _add_eval_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--episodes", type=int, help="episodes per test task (episode 0 un-adapted)")
    p.add_argument("--n-test-tasks", type=int, help="number of canonical test tasks")
    p.add_argument("--adaptation", choices=["online", "offline"], help="test-time data")
    p.add_argument("--test-histories", type=Path, help="histories of held-out tasks (offline)")
    p.add_argument("--explore-sigma", type=float, help="action noise of evaluated episodes")


def add_macaw_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``macaw`` command and its sub-commands."""
    macaw = sub.add_parser("macaw", help="MACAW: offline meta-RL on learning histories")
    cmds = macaw.add_subparsers(dest="macaw_cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="TOML/JSON config (train fields; [eval])")
    common.add_argument("--no-progress", action="store_true", help="hide progress bars")

    train = cmds.add_parser("train", parents=[common], help="meta-train one seed")
    _add_train_flags(train)
    train.add_argument("--run-dir", type=Path, required=True, help="run folder (resumed)")
    train.add_argument("--seed", type=int, default=None)

    ev = cmds.add_parser("evaluate", parents=[common], help="evaluate trained runs")
    _add_eval_flags(ev)
    ev.add_argument("runs", type=Path, nargs="+", help="run folders, one per seed")
    ev.add_argument("--out", type=Path, required=True, help="folder for returns.csv/.png")

    run = cmds.add_parser("run", parents=[common], help="train seeds, then evaluate them")
    _add_train_flags(run)
    _add_eval_flags(run)
    run.add_argument("--out", type=Path, required=True, help="output folder")
    run.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])


def main_macaw(args: argparse.Namespace) -> int:
    """Run a parsed ``macaw`` command."""
    raw = read_config_file(args.config) if args.config else {}
    eval_raw = raw.pop("eval", {})
    progress = not args.no_progress
    if args.macaw_cmd in ("train", "run"):
        train_fields = {**raw, **_given(args, _TRAIN_FLAGS)}
        if args.macaw_cmd == "train":
            train_fields["run_dir"] = args.run_dir
            if args.seed is not None:
                train_fields["seed"] = args.seed
        else:
            train_fields.setdefault("run_dir", args.out / "seed_0")
        train_cfg = MacawTrainConfig.model_validate(train_fields)
    if args.macaw_cmd in ("evaluate", "run"):
        eval_cfg = MacawEvalConfig.model_validate({**eval_raw, **_given(args, _EVAL_FLAGS)})
    if args.macaw_cmd == "train":
        print(train_macaw(train_cfg, progress=progress))
    elif args.macaw_cmd == "evaluate":
        evaluate_macaw(args.runs, eval_cfg, args.out, progress=progress)
        print(args.out / "returns.csv")
    else:
        print(run_macaw(train_cfg, eval_cfg, args.out, args.seeds, progress=progress))
    return 0
