"""docs/results/import_run.py on a job folder laid out as reproduce-job.sh leaves it (built from a
committed probe's files): what it copies, the twin comparison it writes, and its refusal to
overwrite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = ROOT / "docs/results/HalfCheetahVel/probes/small-2000-steps-mamba-twin"
F = "HalfCheetahVel"


def _job(tmp: Path) -> Path:
    job = tmp / "out"
    for run, src in (("run", PROBE), ("run-twin", PROBE / "blinded-twin")):
        for name in ("report.md", "summary.json", f"returns_{F}.csv", f"figures/fig1_{F}.png"):
            (job / run / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / name, job / run / name)
    shutil.copyfile(PROBE / f"figures/fig2_{F}.png", job / "run" / f"figures/fig2_{F}.png")
    for name in ("command.txt", "revision.txt"):
        shutil.copyfile(PROBE / name, job / name)
    return job


def _import(job: Path, dest: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "docs/results/import_run.py"), *flags, str(job), str(dest)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _twin_only_job(tmp: Path, src: Path) -> Path:
    """A job whose run/ is `src`'s run (a window that ran only the twin, when src is one)."""
    job = tmp / "twin-job"
    for name in ("report.md", "summary.json", f"returns_{F}.csv", f"figures/fig1_{F}.png"):
        (job / "run" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / name, job / "run" / name)
    for record in (src / "stages").glob("*.json"):  # committed flat; a run has them in folders
        (job / "run/stages" / record.stem).mkdir(parents=True)
        shutil.copyfile(record, job / "run/stages" / record.stem / "stage.json")
    shutil.copyfile(PROBE / "command.txt", job / "command.txt")
    return job


def test_import_writes_the_twin_comparison_and_refuses_to_overwrite(tmp_path) -> None:
    job, dest = _job(tmp_path), tmp_path / "results" / F
    proc = _import(job, dest)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (dest / "blinded-twin" / f"returns_{F}.csv").read_bytes() == (
        PROBE / "blinded-twin" / f"returns_{F}.csv"
    ).read_bytes()
    text = (dest / "twin-compare.txt").read_text()
    assert text.startswith("(in this folder) python docs/results/twin_compare.py returns_")
    assert "--zero -316.8 --target -202.3" in text  # the run's own references
    assert "with rewards: paired gain +49.3 ± 14.3" in text  # the app's summary: gain 49.25
    assert "model - twin, last 10 per task: +13.4 ± 13.5" in text
    assert (dest / "twin-vs-model.png").stat().st_size > 10_000
    (dest / "blinded-twin" / f"returns_{F}.csv").unlink()
    again = _import(job, dest)
    assert again.returncode == 1 and "twin-compare.txt" in again.stderr, again.stderr[-2000:]
    assert not (dest / "blinded-twin" / f"returns_{F}.csv").exists()  # nothing written


def test_a_twin_only_window_goes_into_blinded_twin_beside_the_family(tmp_path) -> None:
    dest = tmp_path / "results" / F
    dest.mkdir(parents=True)
    for name in ("summary.json", f"returns_{F}.csv"):  # the family, imported before
        shutil.copyfile(PROBE / name, dest / name)
    proc = _import(_twin_only_job(tmp_path, PROBE / "blinded-twin"), dest, "--twin")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (dest / "blinded-twin" / f"returns_{F}.csv").read_bytes() == (
        PROBE / "blinded-twin" / f"returns_{F}.csv"
    ).read_bytes()
    assert (dest / "blinded-twin/command.txt").is_file()
    assert len(list((dest / "blinded-twin/stages").glob("train-*.json"))) == 3
    text = (dest / "twin-compare.txt").read_text()
    assert "with rewards: paired gain +49.3 ± 14.3" in text
    assert "pre-registered endpoint: model paired gain per task" in text


def test_a_run_that_sees_rewards_is_refused_as_a_twin(tmp_path) -> None:
    dest = tmp_path / "results" / F
    proc = _import(_twin_only_job(tmp_path, PROBE), dest, "--twin")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "not a blinded twin" in proc.stderr and "reward_ablation=zero" in proc.stderr
    assert not dest.exists()


def test_the_twin_comparison_follows_whichever_import_comes_second(tmp_path) -> None:
    dest = tmp_path / "results" / F
    twin = _import(_twin_only_job(tmp_path, PROBE / "blinded-twin"), dest, "--twin")
    assert twin.returncode == 0, twin.stderr[-2000:]
    assert not (dest / "twin-compare.txt").exists()  # the family is not there yet
    job = _job(tmp_path)
    shutil.rmtree(job / "run-twin")  # the family's own window, without a twin
    proc = _import(job, dest)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "with rewards: paired gain +49.3 ± 14.3" in (dest / "twin-compare.txt").read_text()


def test_a_twin_into_another_familys_folder_writes_nothing(tmp_path) -> None:
    dest = tmp_path / "results" / "Other"
    dest.mkdir(parents=True)
    (dest / "summary.json").write_text('{"Other": {}}')
    (dest / f"returns_{F}.csv").write_text("method,seed,task,episode,return\n")
    job = _twin_only_job(tmp_path, PROBE / "blinded-twin")
    proc = _import(job, dest, "--twin", "--family", F)
    assert proc.returncode == 1 and f"no {F} entry with references" in proc.stderr, proc.stderr
    assert not (dest / "blinded-twin").exists()
