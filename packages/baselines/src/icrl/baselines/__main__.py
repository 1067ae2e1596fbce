"""Command line of the baselines: ``python -m icrl.baselines <method> ...``."""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from icrl.baselines.macaw._cli import add_macaw_parser, main_macaw
from icrl.baselines.mql._cli import add_mql_parser, main_mql
from icrl.histories import runtime
from icrl.histories.runtime import describe_validation_error

# Errors of a full or unwritable output location: the message says to free space or move.


def _run(args: argparse.Namespace) -> int:
    if args.method == "macaw":
        return main_macaw(args)
    return main_mql(args)


def _invalid(err: ValidationError) -> str:
    """A pydantic error as one line: each bad field with its value."""
    return describe_validation_error(
        err,
        head=f"invalid {err.title} settings:",
        see="see --help for the flags",
        layout="line",
        top="(top level)",
    )


def _output_dir(args: argparse.Namespace) -> str:
    """The folder this command writes (a run folder or an output folder)."""
    for name in ("run_dir", "out", "dir"):
        value = getattr(args, name, None)
        if value is not None:
            return str(value)
    return "the output folder"


def _os_error(err: OSError, args: argparse.Namespace) -> str:
    kept = "the last checkpoint is kept; rerun to resume"
    return runtime.os_error_line(err, _output_dir(args), kept)


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` and run the chosen baseline command: its one error boundary.

    Bad input (a missing or damaged histories file, an invalid setting, an unknown family, a
    run folder without a checkpoint, a run folder in use by another process) and OS errors
    print one line naming the file, field or value and exit 2; Ctrl-C exits 130 and says how to
    resume. No traceback.
    """
    parser = argparse.ArgumentParser(prog="python -m icrl.baselines", description=__doc__)
    sub = parser.add_subparsers(dest="method", required=True)
    add_macaw_parser(sub)
    add_mql_parser(sub)
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except ValidationError as err:  # before ValueError: it is one, with a multi-line message
        print(f"error: {_invalid(err)}", file=sys.stderr)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
    except OSError as err:
        print(f"error: {_os_error(err, args)}", file=sys.stderr)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: the last checkpoint in {_output_dir(args)} is kept; rerun the same "
            "command to resume from it",
            file=sys.stderr,
        )
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
