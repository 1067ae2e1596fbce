"""The HDF5 layout (read back with bare h5py), the reader, windows and the error paths."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from icrl.histories import History, HistoryFile, HistoryFileError, HistoryRecorder
from icrl.histories._generate import write_task_file
from icrl.histories._schema import SCHEMA_VERSION, TaskRecord


def _record(seed: int = 0, k: int = 2) -> TaskRecord:
    """A synthetic run: 2 envs, episodes of random lengths, k-downsampled."""
    rng = np.random.default_rng(seed)
    rec = HistoryRecorder(n_envs=2, k=k, obs_dim=4, act_dim=2)
    left = rng.integers(3, 9, size=2)
    for v in range(120):
        rec.warmup = v < 10
        done = left == 1
        rec.record_step(
            rng.normal(size=(2, 4)),
            rng.uniform(-1, 1, size=(2, 2)),
            rng.normal(size=2),
            rng.normal(size=(2, 4)),
            np.zeros(2, bool),
            done,
            mean_action=rng.uniform(-0.5, 0.5, size=(2, 2)),
        )
        left = np.where(done, rng.integers(3, 9, size=2), left - 1)
    trans, eps = rec.result()
    attrs = {
        "task": {"family": "ReacherGoal", "goal": [0.1, -0.05]},
        "task_index": 0,
        "family": "ReacherGoal",
        "env_id": "icrl/ReacherGoal-v0",
        "algorithm": "sac",
        "hyperparameters": {"lr": 1e-3},
        "k": k,
        "seed": 0,
        "task_seed": 123,
        "n_envs": 2,
        "steps": 240,
        "backend": "tianshou",
        "library_versions": {"h5py": h5py.__version__},
        "n_episodes": len(eps["return"]),
    }
    return TaskRecord(transitions=trans, episodes=eps, attrs=attrs)


@pytest.fixture
def hfile(tmp_path: Path, make_config: Any) -> tuple[Path, TaskRecord]:
    record = _record()
    path = tmp_path / "h.h5"
    write_task_file(path, make_config(), 0, record)
    return path, record


def test_layout_is_plain_hdf5(hfile: tuple[Path, TaskRecord]) -> None:
    path, record = hfile
    with h5py.File(path, "r") as f:  # no icrl code from here on
        assert f.attrs["format"] == "icrl-histories"
        assert f.attrs["schema_version"] == SCHEMA_VERSION
        assert "finish" in f.attrs["episode_order"]
        assert json.loads(f.attrs["generate_config"])["family"] == "ReacherGoal"
        g = f["task_000"]
        assert bool(g.attrs["complete"])
        assert json.loads(g.attrs["task"])["goal"] == [0.1, -0.05]
        assert g.attrs["k"] == 2
        t = g["transitions"]
        n = len(record.transitions["reward"])
        assert t["obs"].shape == (n, 4) and t["obs"].dtype == np.float32
        assert t["action"].shape == (n, 2)
        assert t["mean_action"].shape == (n, 2) and t["mean_action"].dtype == np.float32
        assert g.attrs["schema_version"] == 2
        assert t["terminated"].dtype == np.bool_ and t["episode"].dtype == np.int64
        for name in ("obs", "reward", "episode"):
            assert t[name].compression == "gzip" and t[name].chunks is not None
        e = g["episodes"]
        assert e["return"].shape == (g.attrs["n_episodes"],)
        assert set(e) == {
            "return",
            "length",
            "env_index",
            "end_vstep",
            "warmup_steps",
            "kept",
            "first_row",
        }
        assert np.array_equal(t["reward"][()], record.transitions["reward"])


def test_reader_round_trip_and_windows(hfile: tuple[Path, TaskRecord]) -> None:
    path, record = hfile
    hf = HistoryFile(path)
    assert hf.tasks == ["task_000"]
    meta = hf.meta("task_000")
    assert meta["k"] == 2 and meta["hyperparameters"] == {"lr": 1e-3}
    h = hf.history("task_000")
    assert isinstance(h, History) and len(h) == len(record.transitions["reward"])
    for name, value in record.transitions.items():
        assert np.array_equal(getattr(h, name), value), name
    assert h.family == "ReacherGoal"
    returns, lengths = hf.episode_returns("task_000")
    assert np.array_equal(returns, record.episodes["return"])
    assert np.array_equal(lengths, record.episodes["length"])
    starts = hf.episode_starts("task_000")
    assert np.array_equal(starts, h.episode_starts)

    w = hf.window("task_000", 5, 17)
    assert w.start == 5 and len(w) == 17 and np.array_equal(w.obs, h.obs[5:22])
    rng = np.random.default_rng(0)
    for _ in range(20):
        w = hf.sample_window("task_000", 25, rng)
        assert len(w) == 25 and np.array_equal(w.action, h.action[w.start : w.start + 25])
        a = hf.sample_window("task_000", 25, rng, align="episode")
        assert a.start in set(starts.tolist()) and a.step[0] == 0
    with pytest.raises(ValueError, match="outside"):
        hf.window("task_000", len(h) - 3, 10)
    with pytest.raises(ValueError, match="only"):
        hf.sample_window("task_000", len(h) + 1, rng)


def test_reader_pickles_without_its_handle_and_reopens(hfile: tuple[Path, TaskRecord]) -> None:
    path, _ = hfile
    hf = HistoryFile(path)
    n = hf.n_transitions("task_000")  # opens the handle
    clone = pickle.loads(pickle.dumps(hf))
    assert clone._file is None and clone.n_transitions("task_000") == n
    hf.close()


def test_reader_in_dataloader_workers(hfile: tuple[Path, TaskRecord]) -> None:
    import torch
    from torch.utils.data import DataLoader, Dataset

    path, record = hfile
    hf = HistoryFile(path)
    hf.tasks  # noqa: B018 - open the handle in the parent before the workers fork

    class Windows(Dataset):
        def __len__(self) -> int:
            return 8

        def __getitem__(self, i: int) -> torch.Tensor:
            return torch.from_numpy(hf.window("task_000", i, 10).reward)

    batches = list(DataLoader(Windows(), batch_size=4, num_workers=2))
    got = torch.cat([b for b in batches]).numpy()
    want = np.stack([record.transitions["reward"][i : i + 10] for i in range(8)])
    assert np.array_equal(got, want)


def test_missing_and_non_hdf5_files(tmp_path: Path) -> None:
    with pytest.raises(HistoryFileError, match="no such file"):
        HistoryFile(tmp_path / "absent.h5").tasks  # noqa: B018
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not an hdf5 file at all" * 100)
    with pytest.raises(HistoryFileError, match=r"junk\.h5.*cannot be opened"):
        HistoryFile(junk).tasks  # noqa: B018


def test_truncated_file(hfile: tuple[Path, TaskRecord], tmp_path: Path) -> None:
    path, _ = hfile
    cut = tmp_path / "cut.h5"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(HistoryFileError, match=r"cut\.h5"):
        hf = HistoryFile(cut)
        hf.history(hf.tasks[0])


def test_missing_dataset_names_file_and_task(hfile: tuple[Path, TaskRecord]) -> None:
    path, _ = hfile
    with h5py.File(path, "a") as f:
        del f["task_000/transitions/next_obs"]
    with pytest.raises(HistoryFileError, match=r"h\.h5 \(task 'task_000'\).*transitions/next_obs"):
        HistoryFile(path).history("task_000")


def test_unknown_schema_versions(hfile: tuple[Path, TaskRecord], tmp_path: Path) -> None:
    path, _ = hfile
    other = tmp_path / "v99.h5"
    shutil.copy(path, other)
    with h5py.File(other, "a") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(HistoryFileError, match=r"v99\.h5.*unknown schema version 99"):
        HistoryFile(other).tasks  # noqa: B018
    with h5py.File(path, "a") as f:
        f["task_000"].attrs["schema_version"] = 7
    with pytest.raises(HistoryFileError, match=r"task_000.*unknown schema version 7"):
        HistoryFile(path).meta("task_000")


def test_incomplete_and_unknown_tasks(hfile: tuple[Path, TaskRecord]) -> None:
    path, _ = hfile
    hf = HistoryFile(path)
    with pytest.raises(HistoryFileError, match="no such task"):
        hf.history("task_042")
    hf.close()
    with h5py.File(path, "a") as f:
        f["task_000"].attrs["complete"] = False
    with pytest.raises(HistoryFileError, match="not complete"):
        HistoryFile(path).history("task_000")


def _downgrade_to_schema_1(path: Path) -> None:
    """What a file written before schema 2 looks like: no transitions/mean_action, version 1."""
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = 1
        for name in f:
            del f[name]["transitions/mean_action"]
            f[name].attrs["schema_version"] = 1


def test_schema_1_files_still_read_with_mean_action_none(
    hfile: tuple[Path, TaskRecord], tmp_path: Path
) -> None:
    path, record = hfile
    hf = HistoryFile(path)
    assert hf.has_mean_action("task_000")
    assert np.array_equal(hf.history("task_000").mean_action, record.transitions["mean_action"])
    learning = ~record.transitions["warmup"]
    diff = record.transitions["action"][learning] - record.transitions["mean_action"][learning]
    noise = hf.exploration_noise("task_000")
    assert noise is not None and np.isclose(noise, (diff.astype(np.float64) ** 2).sum(1).mean())
    hf.close()

    old = tmp_path / "v1.h5"
    shutil.copy(path, old)
    _downgrade_to_schema_1(old)
    hf = HistoryFile(old)
    assert hf.attrs["schema_version"] == 1 and hf.meta("task_000")["schema_version"] == 1
    assert not hf.has_mean_action("task_000") and hf.exploration_noise("task_000") is None
    h = hf.history("task_000")
    assert h.mean_action is None
    for name, value in record.transitions.items():
        if name != "mean_action":
            assert np.array_equal(getattr(h, name), value), name
    w = hf.window("task_000", 3, 10)
    assert w.mean_action is None and np.array_equal(w.action, h.action[3:13])


def test_schema_2_requires_a_well_formed_mean_action(
    hfile: tuple[Path, TaskRecord], tmp_path: Path
) -> None:
    path, record = hfile
    n = len(record.transitions["reward"])
    bad = {
        "missing": None,
        "float64": np.zeros((n, 2), np.float64),
        "width": np.zeros((n, 3), np.float32),
        "flat": np.zeros(n, np.float32),
        "short": np.zeros((n - 1, 2), np.float32),
    }
    want = {
        "missing": r"missing dataset 'transitions/mean_action'",
        "float64": r"transitions/mean_action' is float64 \(\d+, 2\); the schema wants float32",
        "width": r"mean_action' is float32 \(\d+, 3\); the schema wants float32 \(T, 2\)",
        "flat": r"transitions/mean_action' is float32 \(\d+,\)",
        "short": r"different lengths",
    }
    for case, data in bad.items():
        other = tmp_path / f"{case}.h5"
        shutil.copy(path, other)
        with h5py.File(other, "a") as f:
            del f["task_000/transitions/mean_action"]
            if data is not None:
                f["task_000/transitions"].create_dataset("mean_action", data=data)
        with pytest.raises(
            HistoryFileError, match=rf"{case}\.h5 \(task 'task_000'\).*{want[case]}"
        ):
            HistoryFile(other).history("task_000")
        if data is not None:  # a malformed mean_action is refused in a schema-1 file too
            with h5py.File(other, "a") as f:
                f.attrs["schema_version"] = f["task_000"].attrs["schema_version"] = 1
            with pytest.raises(HistoryFileError, match=want[case]):
                HistoryFile(other).history("task_000")


def test_a_committed_part_of_schema_1_is_redone(tmp_path: Path, make_config: Any) -> None:
    from icrl.histories._generate import _valid_part

    part = tmp_path / "task_000.h5"
    write_task_file(part, make_config(), 0, _record())
    assert _valid_part(part, "task_000")
    _downgrade_to_schema_1(part)
    assert HistoryFile(part).history("task_000").mean_action is None  # readable, but
    assert not _valid_part(part, "task_000")  # not merged into a schema-2 file
