"""Command line of the baselines: ``python -m icrl.baselines <method> ...``."""

from __future__ import annotations

import argparse
import sys

from icrl.baselines._macaw_cli import add_macaw_parser, main_macaw
from icrl.baselines._mql_cli import add_mql_parser, main_mql


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` and run the chosen baseline command."""
    parser = argparse.ArgumentParser(prog="python -m icrl.baselines", description=__doc__)
    sub = parser.add_subparsers(dest="method", required=True)
    add_macaw_parser(sub)
    add_mql_parser(sub)
    args = parser.parse_args(argv)
    if args.method == "macaw":
        return main_macaw(args)
    if args.method == "mql":
        return main_mql(args)
    parser.error(f"unknown method {args.method}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
