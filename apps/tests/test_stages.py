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


@pytest.mark.parametrize("on_gpu", [True, False])
def test_baselines_run_at_the_same_time_on_a_gpu_only(tmp_path: Path, monkeypatch, on_gpu) -> None:
    """MACAW's and MQL's stages overlap where both train on a GPU: each waits at a barrier that
    only the other's arrival opens (run one after the other, the first would time out)."""
    import threading

    from icrl.apps import _pipeline
    from icrl.apps._config import ReproduceConfig
    from icrl.apps._pipeline import Progress, run_family

    barrier = threading.Barrier(2 if on_gpu else 1, timeout=120)
    ran: list[str] = []

    def baseline(name: str):
        def fn(fam, episodes: int) -> Path:
            barrier.wait()
            ran.append(name)
            return tmp_path / f"{name}.csv"

        return fn

    monkeypatch.setattr(_pipeline, "generate", lambda gen, path: path)
    monkeypatch.setattr(_pipeline, "_ad_runs", lambda fam, b, c, e: (tmp_path / f"{b}.csv", 5))
    monkeypatch.setattr(_pipeline, "_macaw", baseline("MACAW"))
    monkeypatch.setattr(_pipeline, "_mql", baseline("MQL"))
    monkeypatch.setattr(_pipeline, "_baselines_on_gpu", lambda family, cfg, episodes: on_gpu)
    cfg = ReproduceConfig.model_validate({"out": str(tmp_path / "run")})
    out = run_family("ReacherGoal", cfg, StageCache(tmp_path / "run"), Progress(99))
    assert sorted(ran) == ["MACAW", "MQL"] and out.baselines_side_by_side is on_gpu
    assert list(out.curves)[-2:] == ["MACAW", "MQL"]
    assert out.curves["MQL"] == tmp_path / "MQL.csv"
