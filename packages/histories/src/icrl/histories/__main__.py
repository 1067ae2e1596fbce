"""Command line: `python -m icrl.histories generate ...` and `... info FILE`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from icrl.histories._config import ALGORITHMS, PRESETS, GenerateConfig
from icrl.histories._schema import HistoryFileError

_EPILOG = """\
presets (paper, Tables 1-5): ReacherGoal SAC 1e5 steps k=4; PusherGoal PPO 5e5 k=10;
HalfCheetahVel SAC 4e5 k=8; AntDir DroQ 5e5 k=10; 5 parallel envs each.

examples:
  python -m icrl.histories generate --family ReacherGoal --out reacher.h5 --workers 2
  python -m icrl.histories generate --family ReacherGoal --out tiny.h5 --tasks 2 \\
      --steps 1400 --set hidden_sizes=[64,64] --set lr=3e-4
  python -m icrl.histories info reacher.h5

A rerun with the same arguments resumes (finished tasks are skipped); a rerun with other
arguments into the same --out is refused and the differences are listed.
"""


def _parse_set(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE (VALUE in JSON), got {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


# GenerateConfig fields set by their own flags (the rest come from --config or --set).
_FLAGS = {
    "family": "--family",
    "steps_per_task": "--steps",
    "k": "--k",
    "n_envs": "--n-envs",
    "seed": "--seed",
    "tasks": "--tasks",
    "split": "--split",
    "workers": "--workers",
    "device": "--device",
    "backend": "--backend",
}


def describe_invalid(exc: ValidationError) -> str:
    """pydantic's errors as one line per field, named as the user set it (flag or --set KEY)."""
    lines = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        if loc and loc[0] in _FLAGS:
            where = _FLAGS[loc[0]]
        elif len(loc) >= 3 and loc[0] == "algorithm":  # algorithm.<kind>.<field>
            where = f"--set {'.'.join(loc[2:])} (algorithm {loc[1]})"
        else:
            where = ".".join(loc) or "the configuration"
        got = repr(err.get("input"))
        got = got if len(got) <= 80 else got[:77] + "..."
        lines.append(f"  {where}: {err['msg']} (got {got})")
    return (
        "error: invalid configuration:\n"
        + "\n".join(lines)
        + "\nsee `python -m icrl.histories generate --help` for the flags; --set takes the "
        "algorithm's fields (its Config class in icrl.histories)"
    )


def build_config(args: argparse.Namespace) -> GenerateConfig:
    """The GenerateConfig that the parsed `generate` arguments describe."""
    data: dict[str, Any] = {}
    if args.config:
        data.update(json.loads(Path(args.config).read_text()))
    data["family"] = args.family or data.get("family")
    algo_kind = args.algorithm
    overrides = _parse_set(args.set)
    if algo_kind or overrides:
        base = data.get("algorithm")
        if isinstance(base, dict) and (algo_kind is None or base.get("kind") == algo_kind):
            algo = dict(base)
        elif algo_kind is None and data["family"] in PRESETS:
            algo = PRESETS[data["family"]].algorithm.model_dump()
        else:
            algo = {"kind": algo_kind}
        algo.update(overrides)
        data["algorithm"] = algo
    for field, flag in _FLAGS.items():
        value = getattr(args, flag.removeprefix("--").replace("-", "_"))
        if field != "family" and value is not None:
            data[field] = value
    if args.no_progress:
        data["progress"] = False
    return GenerateConfig.model_validate(data)


def _info(path: str) -> None:
    from icrl.histories._reader import HistoryFile

    hf = HistoryFile(path)
    attrs = hf.attrs
    print(
        f"{path}: family {attrs['family']}, env {attrs['env_id']}, schema {attrs['schema_version']}"
    )
    print(
        f"{'task':<10} {'algo':<5} {'k':>3} {'episodes':>8} {'kept rows':>9}  last return  "
        "|a-mu|^2  task"
    )
    for name in hf.tasks:
        meta = hf.meta(name)
        returns, _ = hf.episode_returns(name)
        last = f"{returns[-1]:11.2f}" if len(returns) else "        n/a"
        noise = hf.exploration_noise(name)
        floor = f"{noise:8.4f}" if noise is not None else "     n/a"
        print(
            f"{name:<10} {meta['algorithm']:<5} {meta['k']:>3} {meta['n_episodes']:>8} "
            f"{hf.n_transitions(name):>9}  {last}  {floor}  {json.dumps(meta['task'])}"
        )
    print("|a-mu|^2: mean squared distance of the executed action from the policy's deterministic")
    print("one over kept non-warm-up rows (the exploration-noise floor; n/a before schema 2)")


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m icrl.histories`."""
    parser = argparse.ArgumentParser(
        prog="python -m icrl.histories",
        description="Generate and inspect learning-history files (Tianshou source RL -> HDF5).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser(
        "generate",
        help="run the source algorithm on the train tasks and write the file (resumable)",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    gen.add_argument("--family", choices=sorted(PRESETS), help="task family (required)")
    gen.add_argument("--out", required=True, help="output HDF5 file")
    gen.add_argument("--config", help="JSON file with GenerateConfig fields (flags override it)")
    gen.add_argument("--algorithm", choices=sorted(ALGORITHMS), help="default: family preset")
    gen.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="algorithm hyper-parameter override, VALUE as JSON (repeatable), "
        "e.g. --set lr=3e-4 --set hidden_sizes=[64,64]",
    )
    gen.add_argument("--steps", type=int, help="env steps per task, warm-up included")
    gen.add_argument("--k", type=int, help="keep one episode of every k")
    gen.add_argument("--n-envs", type=int, help="parallel envs per task (default 5)")
    gen.add_argument("--seed", type=int, help="run seed (default 0)")
    gen.add_argument("--tasks", type=int, help="first N tasks of the split (default: all of it)")
    gen.add_argument(
        "--split",
        choices=["train", "test"],
        help="canonical task split (default train); test: held-out histories for `icrl.ad "
        "diagnose`, never for training",
    )
    gen.add_argument("--workers", type=int, help="worker processes (default 1; 0 = in-process)")
    gen.add_argument("--device", help="torch device of the learners (default cpu)")
    gen.add_argument(
        "--backend",
        choices=["tianshou", "batched"],
        help="tianshou (default): one learner per task and process; batched: all tasks at once "
        "on --device, --workers env processes",
    )
    gen.add_argument("--no-progress", action="store_true", help="no progress bar")
    info = sub.add_parser("info", help="list the tasks and metadata of a history file")
    info.add_argument("path")
    args = parser.parse_args(argv)
    try:
        if args.command == "info":
            _info(args.path)
            return 0
        from icrl.histories._generate import generate

        config = build_config(args)
        path = generate(config, args.out)
        print(f"wrote {path}")
        return 0
    except ValidationError as exc:
        print(describe_invalid(exc), file=sys.stderr)
        return 2
    except (HistoryFileError, ValueError, OSError) as exc:  # OSError: full/read-only --out dir
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
