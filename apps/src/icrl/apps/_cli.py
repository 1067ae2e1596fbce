"""Command line of apps/reproduce.py: parse flags (+ an optional TOML file), run, summarise."""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import CliApp, SettingsError

from ._config import ReproduceConfig
from ._stages import RunLock, RunLockedError, write_json_atomic


def _set_fields(model: Any) -> dict[str, Any]:
    """The fields a user set (recursively), so a TOML file only fills the rest."""
    out = {}
    for name in model.model_fields_set:
        value = getattr(model, name)
        out[name] = _set_fields(value) if hasattr(value, "model_fields_set") else value
    return out


def _explain(err: ValidationError) -> str:
    """One line per bad field: which flag, what was given, what is expected."""
    from icrl.histories.runtime import describe_validation_error  # loads torch: not for --help

    return describe_validation_error(
        err,
        head="error: invalid options:",
        see="see: reproduce.py --help",
        layout="lines",
        name=lambda loc: "--" + ".".join(str(p) for p in loc),
    )


def parse(argv: list[str]) -> ReproduceConfig:
    """Flags first; a --config TOML file fills what the flags left unset."""
    cli = CliApp.run(ReproduceConfig, cli_args=argv)
    if cli.config is None:
        return cli
    # loads torch: only with --config
    from icrl.histories.runtime import merge_nested, read_config_file

    data = read_config_file(cli.config, fmt="toml")  # ConfigFileError, a ValueError
    return ReproduceConfig.model_validate(merge_nested(data, _set_fields(cli)))


class OutDirError(ValueError):
    """--out cannot hold a run."""


def _check_out(out: Path) -> None:
    """--out must be a directory we can create and write in; say so before any work."""
    if out.exists() and not out.is_dir():
        raise OutDirError(f"--out {out} is a file; give a directory (new or a run to resume)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutDirError(f"--out {out} cannot be created ({err.strerror}); give another") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise OutDirError(f"--out {out} is not writable; give a directory you can write in")


def run(cfg: ReproduceConfig, command: str) -> Path:
    """Run every family's stages, then the report; return the report's path."""
    import torch

    from ._pipeline import Progress, StageCache, count_stages, run_family
    from ._presets import validate
    from ._report import write_report

    if not torch.cuda.is_available():
        # The CPU presets use small tensors, for which extra intra-op threads only contend with
        # the history workers (measured: a tiny Mamba step 150x slower with 2 threads under load).
        torch.set_num_threads(1)
    validate(cfg)  # every stage's config, before config.json is written or anything runs
    _check_out(cfg.out)
    with RunLock(cfg.out):
        write_json_atomic(cfg.out / "config.json", cfg.model_dump(mode="json"))
        cache, progress = StageCache(cfg.out), Progress(count_stages(cfg))
        results = [run_family(f, cfg, cache, progress) for f in cfg.families]
        return write_report(results, cfg.out, cfg.preset, command)


def _command(argv: list[str]) -> str:
    return " ".join(["uv run apps/reproduce.py", *([shlex.join(argv)] if argv else [])])


def main(argv: list[str] | None = None) -> int:
    """Entry point of apps/reproduce.py: one line per error, never a traceback for bad input,
    OS errors (full disk, permissions) or Ctrl-C."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # The only flag with a dash in its name: accept the spelling people type.
    argv = [a.replace("--show-preset", "--show_preset", 1) if a.startswith("--show-preset")
            else a for a in argv]  # fmt: skip
    try:
        cfg = parse(argv)
    except ValidationError as err:
        print(_explain(err), file=sys.stderr)
        return 2
    except SettingsError as err:
        return _fail(f"{err}{_settings_hint(err)}\nsee: reproduce.py --help", 2)
    except ValueError as err:  # a --config file that cannot be read (runtime.ConfigFileError)
        return _fail(str(err), 2)
    from ._presets import StageConfigError, show_preset  # heavy imports: not for --help

    if cfg.show_preset is not None:
        try:
            print(show_preset(cfg.model_copy(update={"preset": cfg.show_preset})))
        except StageConfigError as err:
            return _fail(f"invalid stage config: {err}", 2)
        return 0
    start = time.perf_counter()
    try:
        report = run(cfg, _command(argv))
    except StageConfigError as err:
        return _fail(f"invalid stage config: {err}\nsee: reproduce.py --help", 2)
    except OutDirError as err:
        return _fail(str(err), 2)
    except RunLockedError as err:
        return _fail(str(err), 1)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted; finished stages are kept in {cfg.out}: rerun the same command to "
            "resume where it stopped",
            file=sys.stderr,
        )
        return 130
    except OSError as err:
        return _fail(f"{_os_error(err)}; nothing finished was lost: fix it and rerun the same "
                     "command to resume", 1)  # fmt: skip
    except ValueError as err:  # a package refused its input (a history file, a run directory)
        return _fail(" ".join(str(err).split()), 1)
    except Exception as err:  # a failed stage (non-finite loss, failed source run, CUDA OOM, ...)
        log = _save_traceback(cfg.out)
        what = f"{type(err).__name__}: {' '.join(str(err).split())}"
        return _fail(f"{what}; the traceback is in {log}; finished stages are kept: rerun the "
                     "same command to resume", 1)  # fmt: skip
    wall = time.perf_counter() - start
    print(f"\nfinished in {wall:.0f} s; report: {report}\nfigures: {report.parent / 'figures'}")
    return 0


# Flags whose value is a JSON object: pydantic-settings reads anything else as "k=v" pairs and
# says only "not enough values to unpack", so the error names the form expected.
_JSON_OBJECT_FLAGS = {"histories.noise_distillation": '{"episodes": 250}'}


def _settings_hint(err: SettingsError) -> str:
    """What the flag in a pydantic-settings parsing error expects, where we know it ("" if not)."""
    for name, example in _JSON_OBJECT_FLAGS.items():
        if f"encountered for {name}:" in str(err):
            return f"; --{name} takes a JSON object, e.g. --{name} '{example}'"
    return ""


def _fail(message: str, code: int) -> int:
    """Print `error: message` on stderr and return the exit code."""
    print(f"error: {message}", file=sys.stderr)
    return code


def _save_traceback(out: Path) -> Path | str:
    """Write the current exception's traceback to `<out>/error.log` (one line on the terminal,
    the whole story on disk); "not saved" if even that fails."""
    import traceback

    path = out / "error.log"
    try:
        path.write_text(traceback.format_exc())
    except OSError:
        return "(not saved: the run directory is not writable)"
    return path


def _os_error(err: OSError) -> str:
    if err.filename is None:
        return str(err)
    what = err.strerror or str(err)
    return f"{err.filename}: {what}" if err.strerror else what
