"""Stage cache: finished stages are skipped, changed configs recompute dependants only."""

from pathlib import Path

import pytest

from icrl.apps._stages import StageCache


def _counting(calls: list[str], name: str):
    def fn(path: Path) -> dict:
        calls.append(name)
        (path / "out.txt").write_text(name)
        return {"made": name}

    return fn


def test_rerun_is_cached_and_change_recomputes_dependants(tmp_path: Path) -> None:
    cache, calls = StageCache(tmp_path), []
    a = cache.run("a", {"x": 1}, _counting(calls, "a"))
    b = cache.run("b", {"y": 2}, _counting(calls, "b"), deps=[a])
    assert calls == ["a", "b"] and not a.cached and not b.cached
    a2 = cache.run("a", {"x": 1}, _counting(calls, "a"))
    b2 = cache.run("b", {"y": 2}, _counting(calls, "b"), deps=[a2])
    assert calls == ["a", "b"] and a2.cached and b2.cached and b2.path == b.path
    assert cache.summary(b2) == {"made": "b"}
    a3 = cache.run("a", {"x": 3}, _counting(calls, "a"))
    c = cache.run("c", {"z": 0}, _counting(calls, "c"))
    b3 = cache.run("b", {"y": 2}, _counting(calls, "b"), deps=[a3])
    assert calls == ["a", "b", "a", "c", "b"] and b3.path != b.path and c.path.exists()


def test_interrupted_stage_is_not_read_as_finished(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)

    def boom(path: Path) -> None:
        (path / "partial.txt").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.run("a", {"x": 1}, boom)
    seen: list[bool] = []

    def resume(path: Path) -> None:
        seen.append((path / "partial.txt").exists())  # the retry sees what was left to resume

    res = cache.run("a", {"x": 1}, resume)
    assert seen == [True] and not res.cached
