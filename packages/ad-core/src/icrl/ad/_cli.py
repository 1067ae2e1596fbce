"""Command line: `python -m icrl.ad train|evaluate|preset` (and `torchrun -m icrl.ad train`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ._checkpoint import CheckpointError
from ._config import (
    ConfigError,
    EvalConfig,
    TrainConfig,
    apply_overrides,
    load_config_file,
    validate,
)
from ._presets import SIZES, preset, preset_dict
from ._train import NonFiniteLossError, RunDirError

__all__ = ["main"]

_SET_HELP = 'override one field, "section.field=value" (JSON value), e.g. optim.lr=1e-4; repeatable'


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m icrl.ad",
        description="Algorithm Distillation: train on learning histories, evaluate in context.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser(
        "train",
        help="train an AD model (resumes from the run directory's newest checkpoint)",
        description="Train an AD model. The config comes from --config (TOML/JSON TrainConfig) "
        "or --preset FAMILY[/BACKBONE[/SIZE]] with --histories; --set overrides fields. The "
        "resolved config is saved as RUN_DIR/config.json. Multi-GPU: torchrun --nproc-per-node N "
        "-m icrl.ad train ...",
    )
    t.add_argument("--run-dir", type=Path, required=True, help="run directory (created)")
    t.add_argument("--config", type=Path, help="TrainConfig file (.toml or .json)")
    t.add_argument(
        "--preset",
        help=f"FAMILY[/BACKBONE[/SIZE]], e.g. HalfCheetahVel/mamba/paper; sizes {SIZES}",
    )
    t.add_argument("--histories", type=Path, nargs="+", help="histories HDF5 file(s)")
    t.add_argument("--set", dest="overrides", action="append", default=[], help=_SET_HELP)
    t.add_argument("--stop-after", type=int, help="stop (with a checkpoint) after this step")
    t.add_argument("--print-config", action="store_true", help="print the config and exit")

    e = sub.add_parser(
        "evaluate",
        help="evaluate checkpoints in context on the family's test tasks",
        description="Run each checkpoint (one per training seed) in context on unseen test "
        "tasks; write returns.csv (method,seed,task,episode,return), returns.npz, curves.png.",
    )
    e.add_argument(
        "--checkpoint",
        type=Path,
        nargs="+",
        required=True,
        help="checkpoint files or run directories (newest checkpoint), one per training seed",
    )
    e.add_argument("--out-dir", type=Path, required=True, help="output directory (new)")
    e.add_argument("--config", type=Path, help="EvalConfig file (.toml or .json)")
    e.add_argument("--set", dest="overrides", action="append", default=[], help=_SET_HELP)

    pr = sub.add_parser("preset", help="print a preset as JSON (a starting point for --config)")
    pr.add_argument("name", help="FAMILY[/BACKBONE[/SIZE]]")
    return p


def _split_preset(name: str) -> tuple[str, str, str]:
    parts = name.split("/")
    if not 1 <= len(parts) <= 3:
        raise ConfigError(f"--preset {name!r}: expected FAMILY[/BACKBONE[/SIZE]]")
    defaults = ["", "mamba", "paper"]
    family, backbone, size = parts + defaults[len(parts) :]
    return family, backbone, size


def _train_config(args: argparse.Namespace) -> TrainConfig:
    if args.config and args.preset:
        raise ConfigError("give either --config or --preset, not both")
    if args.preset:
        if not args.histories:
            raise ConfigError("--preset needs --histories FILE [FILE ...]")
        family, backbone, size = _split_preset(args.preset)
        return preset(family, backbone, size, histories=args.histories, overrides=args.overrides)
    if not args.config:
        raise ConfigError("give --config FILE or --preset FAMILY[/BACKBONE[/SIZE]]")
    data = load_config_file(args.config)
    if args.histories:
        data.setdefault("data", {})["paths"] = [str(p) for p in args.histories]
    data = apply_overrides(data, args.overrides)
    return validate(TrainConfig, data, str(args.config))


def _run(args: argparse.Namespace) -> int:
    if args.command == "preset":
        print(json.dumps(preset_dict(*_split_preset(args.name)), indent=2))
        return 0
    if args.command == "train":
        cfg = _train_config(args)
        if args.print_config:
            print(json.dumps(cfg.model_dump(mode="json"), indent=2))
            return 0
        from ._train import train

        result = train(cfg, args.run_dir, stop_after=args.stop_after)
        print(
            f"trained to step {result.step}: loss {result.loss:.5g}; checkpoint {result.checkpoint}"
        )
        return 0
    data = load_config_file(args.config) if args.config else {}
    cfg = validate(EvalConfig, apply_overrides(data, args.overrides), str(args.config or "--set"))
    from ._evaluate import evaluate

    res = evaluate(cfg, args.checkpoint, args.out_dir)
    last = res.returns[..., -1].mean()
    print(
        f"{res.method}: {res.returns.shape[0]} tasks × {len(res.seeds)} seeds × "
        f"{res.returns.shape[2]} episodes; mean return of the last episode {last:.4g}; "
        f"wrote {', '.join(str(p) for p in res.files.values())}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; bad input and file-system errors print one clear line and exit 2.

    Bad input is a ConfigError, CheckpointError, RunDirError, a histories file error or any
    ValueError (they name the file, field or value); an absent CUDA kernel is an ImportError;
    a full or read-only output directory is an OSError naming the path.
    """
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (ConfigError, CheckpointError, RunDirError, ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full or read-only disk; torch.save's errors name no file
        where = err.filename or getattr(args, "run_dir", None) or getattr(args, "out_dir", None)
        print(
            f"error: {err.strerror or err} while writing {where}; free space or choose "
            "another directory (finished checkpoints are kept; rerun to resume)",
            file=sys.stderr,
        )
        return 2
    except NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
