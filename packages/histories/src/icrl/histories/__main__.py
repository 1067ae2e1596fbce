"""Command line: `python -m icrl.histories generate ...` and `... info FILE`."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from icrl.histories._config import ALGORITHMS, PRESETS, GenerateConfig
from icrl.histories._generate import (
    OutputWriteError,
    RunLockedError,
    TaskFailedError,
    finished_parts,
    parts_dir,
    resume_command,
)
from icrl.histories._schema import HistoryFileError
from icrl.histories.runtime import describe_validation_error, parse_sets, read_config_file

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
    "noise_distillation": "--noise-distilled",
}


def _where(loc: tuple[Any, ...]) -> str:
    """The flag or --set KEY that sets a GenerateConfig field ("" for a check across fields:
    its message names them itself)."""
    loc = tuple(str(part) for part in loc)
    if loc and loc[0] in _FLAGS:
        return _FLAGS[loc[0]]
    if len(loc) >= 3 and loc[0] == "algorithm":  # algorithm.<kind>.<field>
        return f"--set {'.'.join(loc[2:])} (algorithm {loc[1]})"
    return ".".join(loc)


def describe_invalid(exc: ValidationError) -> str:
    """pydantic's errors, each named as the user set it (flag or --set KEY); one line when there
    is one error (the common case), else one line per field."""
    return describe_validation_error(
        exc,
        head="error: invalid configuration:",
        see="see `python -m icrl.histories generate --help` for the flags; --set takes the "
        "algorithm's fields (its Config class in icrl.histories)",
        name=_where,
    )


def build_config(args: argparse.Namespace) -> GenerateConfig:
    """The GenerateConfig that the parsed `generate` arguments describe."""
    data: dict[str, Any] = {}
    if args.config:
        data.update(read_config_file(args.config, fmt="json", holds="GenerateConfig fields"))
    data["family"] = args.family or data.get("family")
    algo_kind = args.algorithm
    overrides = parse_sets(args.set)
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
        if field not in ("family", "noise_distillation") and value is not None:
            data[field] = value
    if args.no_progress:
        data["progress"] = False
    if args.noise_distilled is not None or args.noise_shape is not None:
        noise = data.get("noise_distillation")
        noise = dict(noise) if isinstance(noise, dict) else {}
        if args.noise_distilled is not None:
            noise["episodes"] = args.noise_distilled
        if args.noise_shape is not None:  # without episodes (flag or --config): "Field required"
            noise["noise"] = args.noise_shape
        data["noise_distillation"] = noise
    return GenerateConfig.model_validate(data)


def _info(path: str) -> int:
    """Print a file's tasks; every task is checked against the schema, values included, and a
    malformed one is reported (exit 2) rather than listed as healthy."""
    from icrl.histories._reader import HistoryFile

    parts = parts_dir(Path(path))
    if not Path(path).exists() and parts.is_dir():
        n = len(finished_parts(parts))
        raise HistoryFileError(
            path,
            f"not finished yet: {parts} holds {n} finished task{'s' if n != 1 else ''} of an "
            f"unfinished (or running) generate; resume it with `{resume_command(Path(path))}`",
        )
    hf = HistoryFile(path)
    attrs = hf.attrs
    bad: list[HistoryFileError] = []
    print(
        f"{path}: family {attrs['family']}, env {attrs['env_id']}, schema {attrs['schema_version']}"
    )
    print(
        f"{'group':<10} {'algo':<5} {'k':>3} {'episodes':>8} {'kept rows':>9}  last return  "
        "|a-mu|^2  task parameters"
    )
    for name in hf.tasks:
        try:
            hf.validate(name)
        except HistoryFileError as exc:
            bad.append(exc)
            print(f"{name:<10} MALFORMED: see the error below")
            continue
        print(_info_row(hf, name))
    print("|a-mu|^2: mean squared distance of the executed action from the policy's deterministic")
    print("one over kept non-warm-up rows (the exploration-noise floor; n/a before schema 2)")
    if bad:
        more = f" (and {len(bad) - 1} more malformed tasks)" if len(bad) > 1 else ""
        print(f"error: {bad[0]}{more}", file=sys.stderr)
        return 2
    return 0


def _info_row(hf: Any, name: str) -> str:
    meta = hf.meta(name)
    returns, _ = hf.episode_returns(name)
    last = f"{returns[-1]:11.2f}" if len(returns) else "        n/a"
    noise = hf.exploration_noise(name)
    floor = f"{noise:8.4f}" if noise is not None else "     n/a"
    return (
        f"{name:<10} {meta['algorithm']:<5} {meta['k']:>3} {meta['n_episodes']:>8} "
        f"{hf.n_transitions(name):>9}  {last}  {floor}  {json.dumps(meta['task'])}"
    )


def _kept(out: str | None) -> str:
    """What an interrupted or failed generate leaves for the rerun, and how to resume."""
    if not out:
        return "rerun the command"
    parts = parts_dir(Path(out))
    if not parts.is_dir():
        return "no task had finished, so nothing was kept; rerun the command to start again"
    n = len(finished_parts(parts))
    return (
        f"{n} finished task{'s are' if n != 1 else ' is'} kept in {parts}; rerun the same "
        "command to resume"
    )


_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
_DENIED = {errno.EROFS, errno.EACCES, errno.EPERM}


def describe_os_error(exc: OSError, out: str | None) -> str:
    """One line for an OS error: what failed on which file, and what to do about it."""
    what = exc.strerror or str(exc)
    if not isinstance(exc, OutputWriteError):
        return f"error: {what}: {exc.filename}" if exc.filename else f"error: {exc}"
    if exc.errno in _FULL:
        advice = f"free space (or choose another --out), then {_kept(out)}"
    elif exc.errno in _DENIED:
        advice = "choose an --out in a directory you can write"
    else:
        advice = f"check the --out path; {_kept(out)}"
    return f"error: {what} while writing {exc.filename}; {advice}"


@contextlib.contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """Warnings (a damaged part redone, stale settings replaced) as one `warning:` line each."""

    def show(message: Any, *args: Any, **kwargs: Any) -> None:
        print(f"warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def _run(args: argparse.Namespace) -> int:
    if args.command == "info":
        return _info(args.path)
    from icrl.histories import _generate  # looked up at call time: tests replace generate

    config = build_config(args)
    path = _generate.generate(config, args.out)
    print(f"wrote {path}")
    return 0


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
    gen.add_argument(
        "--noise-distilled",
        type=int,
        metavar="EPISODES",
        help="not the paper's recipe: after each task's learning run, keep EPISODES episodes of "
        "its final policy with noise annealed from uniform random to none (AD-epsilon) instead "
        "of the run itself (batched backend; anneal fraction via --config "
        '{"noise_distillation": {"anneal": 0.8}})',
    )
    gen.add_argument(
        "--noise-shape",
        choices=["uniform", "gaussian"],
        help="with --noise-distilled: the noise blended in (default uniform; gaussian: the "
        "uniform's mean and variance in the shape a Gaussian action head models; "
        "NoiseDistillation.noise)",
    )
    gen.add_argument("--no-progress", action="store_true", help="no progress bar")
    info = sub.add_parser("info", help="list the tasks and metadata of a history file")
    info.add_argument("path")
    args = parser.parse_args(argv)
    out = getattr(args, "out", None)
    with _warnings_as_lines():
        try:
            return _run(args)
        except KeyboardInterrupt:
            print(f"interrupted; {_kept(out)}", file=sys.stderr)
            return 130
        except ValidationError as exc:
            print(describe_invalid(exc), file=sys.stderr)
            return 2
        except TaskFailedError as exc:
            print(f"error: {exc}; {_kept(out)}", file=sys.stderr)
            return 1
        except (HistoryFileError, ValueError, RunLockedError) as exc:  # refusals, device, lock
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except BrokenPipeError as exc:
            if args.command != "info":  # e.g. a dead env worker's pipe: a real failure
                print(describe_os_error(exc, out), file=sys.stderr)
                return 2
            # `info FILE | head` closed our stdout: not an error. Point stdout at /dev/null so
            # that the interpreter's final flush does not complain either.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        except OSError as exc:
            print(describe_os_error(exc, out), file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
