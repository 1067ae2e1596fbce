"""``python -m icrl.baselines mql {train,evaluate,run}``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from icrl.baselines._results import write_results_csv
from icrl.baselines.mql._config import mql_preset
from icrl.baselines.mql._run import evaluate_mql, run_mql, train_mql
from icrl.histories.runtime import parse_sets, read_config_file


def _config(args: argparse.Namespace) -> Any:
    """Preset for --family/--size, then a TOML/JSON --config file, then --set field=JSON."""
    fields: dict[str, Any] = read_config_file(args.config) if args.config else {}
    fields.update(parse_sets(args.set, form="FIELD=VALUE"))  # bare strings such as device=cuda
    return mql_preset(args.family, args.size, **fields)


def add_mql_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``mql`` command and its sub-commands."""
    mql = sub.add_parser("mql", help="MQL: online meta-RL (TD3 + GRU context) on the train tasks")
    cmds = mql.add_subparsers(dest="mql_cmd", required=True)
    for name, text in (
        ("train", "meta-train one seed into RUN_DIR (resumes)"),
        ("evaluate", "adapt the run in RUN_DIR to the test tasks; write RUN_DIR/returns.csv"),
        ("run", "train + evaluate --seeds into OUT; write OUT/returns.csv and curves.png"),
    ):
        p = cmds.add_parser(name, help=text)
        p.add_argument("dir", type=Path, help="run directory (train/evaluate) or output (run)")
        p.add_argument("--family", default="ReacherGoal", help="icrl.metaenvs family")
        p.add_argument("--size", default="small", choices=["tiny", "small", "paper"])
        p.add_argument("--config", type=Path, help="TOML/JSON file of MQLConfig fields")
        p.add_argument("--set", nargs="*", default=[], help="FIELD=VALUE overrides")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        if name == "run":
            p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])


def main_mql(args: argparse.Namespace) -> int:
    """Run the parsed ``mql`` sub-command."""
    cfg = _config(args)
    progress = not args.no_progress
    if args.mql_cmd == "train":
        print(train_mql(cfg, args.dir, progress=progress))
    elif args.mql_cmd == "evaluate":
        out = args.dir / "returns.csv"
        write_results_csv(evaluate_mql(cfg, args.dir, progress=progress), out)
        print(out)
    else:
        csv_path, png_path = run_mql(cfg, args.dir, seeds=args.seeds, progress=progress)
        print(csv_path, png_path)
    return 0
