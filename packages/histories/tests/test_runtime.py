"""icrl.histories.runtime: the run plumbing that icrl's packages share, on real files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from icrl.histories import runtime


def _listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# -- atomic writes -------------------------------------------------------------------------------


def test_atomic_write_writes_bytes_text_and_through_a_function(tmp_path: Path) -> None:
    runtime.atomic_write(tmp_path / "a.bin", b"\x00\x01")
    runtime.atomic_write(tmp_path / "sub" / "b.txt", "héllo\n")  # creates the folder; UTF-8
    runtime.atomic_write(tmp_path / "c.txt", lambda p: p.write_text("via a path"))
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "sub" / "b.txt").read_bytes() == "héllo\n".encode()
    assert (tmp_path / "c.txt").read_text() == "via a path"
    assert _listing(tmp_path) == ["a.bin", "c.txt", "sub"]  # no temporary file left


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "result.csv"
    target.write_text("old, whole\n")

    def half_then_fail(p: Path) -> None:
        p.write_text("new, ha")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        runtime.atomic_write(target, half_then_fail)
    assert target.read_text() == "old, whole\n"  # never half a file
    assert _listing(tmp_path) == ["result.csv"]

    with pytest.raises(KeyboardInterrupt):  # Ctrl-C mid-write cleans up too
        runtime.atomic_write(
            tmp_path / "new.csv", lambda p: (_ for _ in ()).throw(KeyboardInterrupt)
        )
    assert _listing(tmp_path) == ["result.csv"]


def test_ctrl_c_that_breaks_the_writer_on_its_way_out_is_raised_as_ctrl_c(
    tmp_path: Path,
) -> None:
    """torch.save's zip writer, interrupted mid-record, raises RuntimeError closing the archive
    ("unexpected pos ..."), with the KeyboardInterrupt as its context: the AD CLI printed that
    traceback instead of its 'interrupted: rerun to resume' (seen in CI's Ctrl-C test)."""
    import torch

    class Interrupting:  # a file object whose write is hit by Ctrl-C after the first record
        def __init__(self, f: Any) -> None:
            self.f, self.calls = f, 0

        def write(self, b: bytes) -> int:
            self.calls += 1
            if self.calls > 2:
                raise KeyboardInterrupt
            return self.f.write(b)

        def flush(self) -> None:
            self.f.flush()

    def write(p: Path) -> None:
        with open(p, "wb") as f:
            torch.save({"w": torch.zeros(1000)}, Interrupting(f))

    with pytest.raises(KeyboardInterrupt):
        runtime.atomic_write(tmp_path / "ckpt.pt", write)
    assert _listing(tmp_path) == []
    # any other failure is raised as it was
    with pytest.raises(RuntimeError, match="not an interrupt"):
        runtime.atomic_write(tmp_path / "x", lambda p: (_ for _ in ()).throw(
            RuntimeError("not an interrupt")))  # fmt: skip


def test_a_named_temporary_is_used_and_removed_on_failure(tmp_path: Path) -> None:
    tmp = tmp_path / "out.h5.tmp"
    seen: list[Path] = []

    def write(p: Path) -> None:
        seen.append(p)
        p.write_bytes(b"data")

    runtime.atomic_write(tmp_path / "out.h5", write, tmp=tmp)
    assert seen == [tmp] and _listing(tmp_path) == ["out.h5"]

    def fail(p: Path) -> None:
        p.write_bytes(b"da")
        raise OSError(27, "File too large")

    with pytest.raises(OSError):
        runtime.atomic_write(tmp_path / "out.h5", fail, tmp=tmp)
    assert _listing(tmp_path) == ["out.h5"] and (tmp_path / "out.h5").read_bytes() == b"data"


def test_overwrite_false_refuses_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "returns.csv"
    runtime.atomic_write(target, "first\n", overwrite=False)
    with pytest.raises(FileExistsError, match=r"returns\.csv already exists; remove it or choose"):
        runtime.atomic_write(target, "second\n", overwrite=False)
    assert target.read_text() == "first\n"
    runtime.atomic_write(target, "second\n")  # the default replaces
    assert target.read_text() == "second\n" and _listing(tmp_path) == ["returns.csv"]


# -- seeds and devices ---------------------------------------------------------------------------


def test_seed_everything_seeds_python_numpy_and_torch() -> None:
    import random

    import numpy as np
    import torch

    def draw() -> tuple[float, float, float]:
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    runtime.seed_everything(2**40 + 3)  # larger than NumPy's 32-bit seeds
    first = draw()
    runtime.seed_everything(2**40 + 3)
    assert draw() == first


def test_devices_are_checked_and_named_as_the_caller_names_them() -> None:
    import torch

    assert runtime.resolve_device("cpu") == torch.device("cpu")
    auto = runtime.resolve_device("auto", local_rank=0)
    assert auto == torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    with pytest.raises(runtime.DeviceError, match=r"^device='gpu0' is not a torch device \("):
        runtime.resolve_device("gpu0")
    with pytest.raises(ValueError, match=r"^device 'gpu0' \(--device\) is not a torch device .*; "):
        runtime.check_device("gpu0", label="device 'gpu0' (--device)", cpu="--device cpu")
    if not torch.cuda.is_available():
        with pytest.raises(
            runtime.DeviceError,
            match=r"^device='cuda' needs CUDA, but no CUDA device is available on this machine; "
            r"use device='cpu', or run",
        ):
            runtime.resolve_device("cuda", local_rank=0)  # named as the user wrote it
    with pytest.raises(runtime.DeviceError, match=r"'cuda:99'"):
        runtime.check_device("cuda:99")


# -- --config FILE and --set KEY=VALUE -----------------------------------------------------------


def test_set_items_parse_json_values_and_keep_bare_strings() -> None:
    assert runtime.parse_sets(
        ["lr=3e-4", "hidden_sizes=[64, 64]", "device=cuda", "x=", 'n="5"']
    ) == {
        "lr": 3e-4,
        "hidden_sizes": [64, 64],
        "device": "cuda",  # not JSON: the text itself
        "x": "",
        "n": "5",
    }
    base = {"optim": {"lr": 1.0}, "data": {"paths": [Path("a.h5")]}}
    out = runtime.apply_sets(base, ["optim.lr=1e-4", "model.d_model=64", "seed=2"])
    assert out == {
        "optim": {"lr": 1e-4},
        "data": {"paths": ["a.h5"]},  # JSON-normalised copy
        "model": {"d_model": 64},
        "seed": 2,
    }
    assert base["optim"] == {"lr": 1.0}  # the base is not changed


def test_a_bad_set_item_is_named() -> None:
    with pytest.raises(
        runtime.SetError, match=r"^--set expects KEY=VALUE \(VALUE in JSON\), got 'lr'$"
    ):
        runtime.parse_sets(["lr"])
    with pytest.raises(ValueError, match=r"^override expects section\.field=VALUE .*got '=3'$"):
        runtime.apply_sets({}, ["=3"], label="override")
    with pytest.raises(runtime.SetError, match=r"^--set 'seed\.x=1': 'seed' is not a section$"):
        runtime.apply_sets({"seed": 0}, ["seed.x=1"])


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("c.json", None, r"^--config .*c\.json: no such file; give the path of a \.toml or \.json"),
        ("c.json", '{"family": ', r"^--config .*c\.json is not valid JSON \(Expecting"),
        ("c.toml", "k = [", r"^--config .*c\.toml is not valid TOML \("),
        (
            "c.json",
            "[1]",
            r"^--config .*c\.json holds a JSON list; it needs an object of settings$",
        ),
        ("c.yaml", "k: 1", r"^--config .*c\.yaml: expected a \.toml or \.json file$"),
        ("d", "", r"^--config .*d is a directory; give a JSON file$"),
    ],
)
def test_config_file_errors_name_the_file(
    tmp_path: Path, name: str, content: str | None, message: str
) -> None:
    path = tmp_path / name
    if name == "d":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    fmt = "json" if name == "d" else None
    with pytest.raises(runtime.ConfigFileError, match=message):
        runtime.read_config_file(path, fmt=fmt)


def test_config_files_are_read_by_suffix_or_as_the_given_format(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('family = "AntDir"\n[eval]\nepisodes = 3\n')
    (tmp_path / "b.json").write_text('{"family": "AntDir", "k": 4}')
    (tmp_path / "c.cfg").write_text('{"k": 4}')
    assert runtime.read_config_file(tmp_path / "a.toml") == {
        "family": "AntDir",
        "eval": {"episodes": 3},
    }
    assert runtime.read_config_file(tmp_path / "b.json") == {"family": "AntDir", "k": 4}
    assert runtime.read_config_file(tmp_path / "c.cfg", fmt="json") == {"k": 4}
    with pytest.raises(runtime.ConfigFileError, match=r"^config file .*a\.toml is not valid JSON"):
        runtime.read_config_file(tmp_path / "a.toml", label="config file", fmt="json")


# -- validation errors ---------------------------------------------------------------------------


def _errors() -> Any:
    from pydantic import BaseModel, Field, ValidationError, model_validator

    class Inner(BaseModel):
        lr: float = Field(1.0, gt=0)

    class Settings(BaseModel):
        steps: int = Field(1, ge=1)
        optim: Inner = Inner()
        tags: list[str] = []

        @model_validator(mode="after")
        def _enough(self) -> Settings:
            if self.steps == 2:
                raise ValueError("steps=2 is too few for tags")
            return self

    def error(**data: Any) -> ValidationError:
        with pytest.raises(ValidationError) as info:
            Settings.model_validate(data)
        return info.value

    return error


def test_validation_errors_one_line_or_one_per_field() -> None:
    error = _errors()
    one = error(steps=0)
    assert runtime.describe_validation_error(one, head="error: bad:", see="see --help") == (
        "error: bad: steps: Input should be greater than or equal to 1 (got 0); see --help"
    )
    two = error(steps=0, optim={"lr": -1}, tags="x" * 100)
    text = runtime.describe_validation_error(two, head="invalid Settings:", layout="lines")
    lines = text.split("\n")
    assert lines[:3] == [
        "invalid Settings:",
        "  steps: Input should be greater than or equal to 1 (got 0)",
        "  optim.lr: Input should be greater than 0 (got -1)",
    ]
    assert lines[3] == "  tags: Input should be a valid list (got '" + "x" * 76 + "...)"  # 80 chars
    flags = runtime.describe_validation_error(
        two, layout="line", name=lambda loc: "--" + ".".join(map(str, loc))
    )
    assert flags.startswith("--steps: Input should be") and "; --optim.lr: " in flags


def test_a_check_across_fields_is_its_message_or_named_top() -> None:
    across = _errors()(steps=2)
    assert runtime.describe_validation_error(across) == "steps=2 is too few for tags"
    named = runtime.describe_validation_error(across, top="(top level)")
    assert named.startswith("(top level): Value error, steps=2 is too few for tags (got ")


# -- run-directory locks ---------------------------------------------------------------------------


def test_a_held_directory_is_refused_with_the_callers_words(tmp_path: Path) -> None:
    with runtime.DirLock(tmp_path / "run") as held:
        assert held.created and held.path.read_text().strip().isdigit()  # the holder's pid
        with pytest.raises(runtime.DirectoryInUseError, match=r"in use by another process \(pid"):
            runtime.DirLock(tmp_path / "run").acquire()
        mine = runtime.DirLock(tmp_path / "run", refuse=lambda pid: KeyError(f"busy {pid}"))
        with pytest.raises(KeyError, match=r"busy \d+"):
            mine.acquire()
    assert held.path.read_text() == ""  # kept, emptied: the next holder locks the same file
    again = runtime.DirLock(tmp_path / "run").acquire()
    assert not again.created
    again.release()
    again.release()  # idempotent


def test_a_removed_lock_file_goes_on_release(tmp_path: Path) -> None:
    lock = runtime.DirLock(tmp_path / "out.parts", name="lock", remove=True).acquire()
    assert _listing(tmp_path / "out.parts") == ["lock"]
    lock.release()
    assert _listing(tmp_path / "out.parts") == []


# -- the resume rule -------------------------------------------------------------------------------


def test_config_changes_list_dotted_fields_less_those_that_may_change() -> None:
    old = {"seed": 0, "optim": {"lr": 1e-3, "steps": 10}, "device": "cpu", "gone": None}
    new = {"seed": 0, "optim": {"lr": 2e-3, "steps": 20}, "device": "cuda"}
    changes = runtime.config_changes(old, new, may_change=("device", "optim.steps"))
    assert changes == [runtime.FieldChange("optim.lr", 1e-3, 2e-3)]  # "gone": None == absent
    every = runtime.config_changes(old, new, absent="<absent>")
    assert [c.field for c in every] == ["device", "gone", "optim.lr", "optim.steps"]
    assert runtime.describe_changes(every[:1]) == "device: existing 'cpu', requested 'cuda'"
    listing = runtime.describe_changes(every[2:], "{field}: {old} vs {new}", sep=", ")
    assert listing == "optim.lr: 0.001 vs 0.002, optim.steps: 10 vs 20"
    assert runtime.config_changes({"a": 1}, None) == [runtime.FieldChange("", {"a": 1}, None)]
