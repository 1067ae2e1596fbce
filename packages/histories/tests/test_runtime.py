"""icrl.histories.runtime: the run plumbing that icrl's packages share, on real files."""

from __future__ import annotations

from pathlib import Path

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
