"""Stage cache: finished stages are skipped, changed configs recompute dependants only."""

import json
import os
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


def test_a_stage_record_holds_the_machine_load_at_its_end(tmp_path: Path) -> None:
    """What tells oversubscribed cores from a slow stage afterwards (the record is all that
    comes back from a GPU window)."""
    result = StageCache(tmp_path).run("a", {"x": 1}, _counting([], "a"))
    load = json.loads((result.path / "stage.json").read_text())["machine_load"]
    assert load["cpus"] == os.cpu_count()
    assert 1 <= load["usable_cpus"] <= load["cpus"]
    one, five, fifteen = load["load_avg_1_5_15min"]
    assert min(one, five, fifteen) >= 0
    # the 15-minute average moves by well under 0.1 in the kernel's 5 s update
    assert abs(fifteen - os.getloadavg()[2]) < 0.5


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
    monkeypatch.setattr(_pipeline, "_baselines_on_gpu", lambda family, cfg: on_gpu)
    cfg = ReproduceConfig.model_validate(
        {"out": str(tmp_path / "run"), "baselines_beside_ad": False}
    )
    out = run_family("ReacherGoal", cfg, StageCache(tmp_path / "run"), Progress(99))
    assert sorted(ran) == ["MACAW", "MQL"] and out.baselines_side_by_side is on_gpu
    assert list(out.curves)[-2:] == ["MACAW", "MQL"]
    assert out.curves["MQL"] == tmp_path / "MQL.csv"


@pytest.mark.parametrize("on_gpu", [True, False])
def test_baselines_run_beside_the_ad_stages_on_a_gpu_only(
    tmp_path: Path, monkeypatch, on_gpu
) -> None:
    """On a GPU both baselines start after the histories, before the AD stages end: the first AD
    run waits at a barrier that only both baselines' arrival opens (run after the AD stages, it
    would time out). Without a GPU they run after the AD stages, one after the other. Either
    way every method gets the episode count that the first AD evaluation runs."""
    import threading

    from icrl.apps import _pipeline
    from icrl.apps._config import ReproduceConfig
    from icrl.apps._pipeline import Progress, run_family

    barrier = threading.Barrier(3, timeout=120) if on_gpu else None
    order: list[str] = []
    given: dict[str, int] = {}

    def baseline(name: str):
        def fn(fam, episodes: int) -> Path:
            if barrier is not None:
                barrier.wait()
            order.append(name)
            given[name] = episodes
            return tmp_path / f"{name}.csv"

        return fn

    def ad_runs(fam, backbone, ctx, episodes):
        if barrier is not None and "AD" not in order:
            barrier.wait()  # the first AD run: the baselines must be running already
        order.append("AD")
        given.setdefault("AD", episodes)
        fam.out.ad_ran = True  # as a stage that ran, not one from the cache
        return tmp_path / f"{backbone}.csv", 7

    monkeypatch.setattr(_pipeline, "generate", lambda gen, path: path)
    monkeypatch.setattr(_pipeline, "_ad_runs", ad_runs)
    monkeypatch.setattr(_pipeline, "_first_context_episodes", lambda fam: 7)
    monkeypatch.setattr(_pipeline, "_macaw", baseline("MACAW"))
    monkeypatch.setattr(_pipeline, "_mql", baseline("MQL"))
    monkeypatch.setattr(_pipeline, "_baselines_on_gpu", lambda family, cfg: on_gpu)
    cfg = ReproduceConfig.model_validate({"out": str(tmp_path / "run")})
    out = run_family("ReacherGoal", cfg, StageCache(tmp_path / "run"), Progress(99))
    assert given["MACAW"] == given["MQL"] == 7
    # on a GPU the first AD evaluation is handed the count the baselines got; else it finds it
    assert given["AD"] == (7 if on_gpu else None)
    assert out.baselines_beside_ad is on_gpu and out.baselines_side_by_side is on_gpu
    if not on_gpu:
        assert order[-2:] == ["MACAW", "MQL"] and set(order[:-2]) == {"AD"}
    assert list(out.curves)[-2:] == ["MACAW", "MQL"]


def test_an_ad_evaluation_that_disagrees_with_the_baselines_count_stops_the_run(
    tmp_path: Path, monkeypatch
) -> None:
    from icrl.apps import _pipeline
    from icrl.apps._config import ReproduceConfig
    from icrl.apps._pipeline import Progress, run_family

    monkeypatch.setattr(_pipeline, "generate", lambda gen, path: path)
    monkeypatch.setattr(_pipeline, "_ad_runs", lambda fam, b, c, e: (tmp_path / f"{b}.csv", 9))
    monkeypatch.setattr(_pipeline, "_first_context_episodes", lambda fam: 7)
    monkeypatch.setattr(_pipeline, "_macaw", lambda fam, e: tmp_path / "MACAW.csv")
    monkeypatch.setattr(_pipeline, "_mql", lambda fam, e: tmp_path / "MQL.csv")
    monkeypatch.setattr(_pipeline, "_baselines_on_gpu", lambda family, cfg: True)
    cfg = ReproduceConfig.model_validate({"out": str(tmp_path / "run")})
    with pytest.raises(RuntimeError, match="ran 9 episodes where 7 were counted from the hist"):
        run_family("ReacherGoal", cfg, StageCache(tmp_path / "run"), Progress(99))


def test_an_ad_failure_beside_the_baselines_is_shown_at_once_and_theirs_after(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """The AD error is printed before the wait for the baselines (it may outlast the machine);
    a baseline that failed meanwhile is named once they have ended; the AD error is raised."""
    import threading

    from icrl.apps import _pipeline
    from icrl.apps._config import ReproduceConfig
    from icrl.apps._pipeline import Progress, run_family

    printed = threading.Event()

    def macaw(fam, episodes):
        raise ValueError("macaw broke")

    def mql(fam, episodes):
        # ends only once the AD error has been shown: printed first, not after the wait
        assert printed.wait(timeout=120)
        return tmp_path / "MQL.csv"

    def ad_runs(fam, b, c, e):
        raise RuntimeError("ad broke")

    real_print_exc = _pipeline.traceback.print_exc

    def print_exc():
        real_print_exc()
        printed.set()

    monkeypatch.setattr(_pipeline.traceback, "print_exc", print_exc)
    monkeypatch.setattr(_pipeline, "generate", lambda gen, path: path)
    monkeypatch.setattr(_pipeline, "_ad_runs", ad_runs)
    monkeypatch.setattr(_pipeline, "_first_context_episodes", lambda fam: 7)
    monkeypatch.setattr(_pipeline, "_macaw", macaw)
    monkeypatch.setattr(_pipeline, "_mql", mql)
    monkeypatch.setattr(_pipeline, "_baselines_on_gpu", lambda family, cfg: True)
    cfg = ReproduceConfig.model_validate({"out": str(tmp_path / "run")})
    with pytest.raises(RuntimeError, match="ad broke"):
        run_family("ReacherGoal", cfg, StageCache(tmp_path / "run"), Progress(99))
    captured = capsys.readouterr()
    assert "ad broke" in captured.err
    assert "MACAW failed too: ValueError('macaw broke')" in captured.out
