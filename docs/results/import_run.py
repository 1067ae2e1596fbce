"""Commit one family of an `apps/reproduce.py` GPU window into docs/results/<Family>/.

    python docs/results/import_run.py /tmp/window-rg/job-latest.tar.gz docs/results/ReacherGoal

JOB is what `docs/results/window-poll.sh` returns (`job.tar.gz`, or the folder it unpacks to):
`reproduce-job.sh`'s OUT, holding `run/` (the app's run directory) and the job's own records.
Copied into DEST: the app's `report.md`, `summary.json` (this family's entry, still keyed by the
family), `figures/fig1_<F>.png` and `fig2_<F>.png` (where report.md links them),
`returns_<F>.csv` (every curve per episode; built from the run's stage CSVs with the app's own
writer when the run predates it), every stage's record as `stages/<stage>.json` (its config
key, summary and wall-clock), MACAW's and MQL's per-seed training logs as
`stages/<stage>/seed_<n>-metrics.csv`, and the job's `command.txt`, `revision.txt`, `machine.txt`,
`stage-times.txt`, `stages.log` and `reproduce.log`; with `reproduce-job.sh`'s TWIN=1, AD-Mamba's
blinded twin (`run-twin/`: its report, summary, Fig. 1, per-episode table and stage records) into
`blinded-twin/`, and twin_compare.py's reading of model against twin (full history: each one's
paired and late gain, the per-task difference) as `twin-compare.txt` with `twin-vs-model.png`,
the zero-action and the source's final return drawn in; with ARM='FLAGS', the
second arm (`run-arm/`: the same, with Fig. 2) into `second-arm/`; with DIAG=1,
`diagnose/`. Nothing already in DEST is overwritten: the import stops,
before writing anything, naming the files in the way.

    python docs/results/import_run.py --twin JOB docs/results/<Family>

imports a window that ran only the blinded twin (`reproduce-job.sh` with the twin's flags, when
the family's own window had no room for it: docs/results/README.md, "Running a window"): its
`run/` into DEST's `blinded-twin/` with the job's records, refused unless every AD training of
the run zeroed the context's rewards. The twin comparison is written by whichever of the two
imports comes second (the family's own, or the twin's), once DEST holds both tables.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from icrl.ad import parse_context
from icrl.apps._config import ReproduceConfig
from icrl.apps._pipeline import FamilyResults
from icrl.apps._presets import contexts
from icrl.apps._report import write_returns_table

TWIN_OUTPUTS = ("twin-compare.txt", "twin-vs-model.png")  # written from the imported tables

JOB_FILES = ("command.txt", "revision.txt", "machine.txt", "stage-times.txt", "stages.log",
             "reproduce.log", "reproduce-twin.log", "reproduce-arm.log",
             "diagnose.log")  # fmt: skip


def _job_root(job: Path, scratch: Path) -> Path:
    """The folder that holds `run/report.md`: JOB itself, or inside its unpacked tarball."""
    if job.is_file():
        with tarfile.open(job) as tar:
            tar.extractall(scratch, filter="data")
        job = scratch
    found = sorted(job.glob("run/report.md")) + sorted(job.glob("*/run/report.md"))
    if not found:
        sys.exit(f"{job}: no run/report.md in it: did the window's reproduce.py finish?")
    return found[0].parent.parent


def _eval_csv(run: Path, family: str, backbone: str, slug: str) -> Path | None:
    """The evaluation the report used: a pass beside the mamba-ssm build may have left a second
    one keyed by episodes=null (reproduce-job.sh); the report's is the one with a count."""
    records = sorted(run.glob(f"stages/eval-{family}-{backbone}-{slug}-*/stage.json"))
    counted = [r for r in records if json.loads(r.read_text())["config"].get("episodes")]
    chosen = counted or records
    return chosen[-1].parent / "eval" / "returns.csv" if chosen else None


def _slug_context(slug: str):
    """The stage-name slug of a context ("episodes16") back to a Context."""
    m = re.fullmatch(r"([a-z]+)(\d*)", slug)
    if m is None:
        raise ValueError(f"unexpected context slug {slug!r} in a stage name")
    return parse_context(f"{m[1]}:{m[2]}" if m[2] else m[1])


def rebuilt_results(run: Path, family: str) -> FamilyResults:
    """The curves of one family's report, found again from the run's stage directories."""
    cfg = ReproduceConfig.model_validate(json.loads((run / "config.json").read_text()))
    first = contexts(cfg)[0]
    res = FamilyResults(family, run / "unused.h5", fig1_context=first)
    slugs = {r.parent.name.split("-")[3] for r in run.glob(f"stages/eval-{family}-*/stage.json")}
    for backbone, method in (("mamba", "AD-Mamba"), ("transformer", "AD-Transformer")):
        for slug in sorted(slugs):
            path = _eval_csv(run, family, backbone, slug)
            if path is None:
                continue
            ctx = _slug_context(slug)
            if ctx == first:
                res.curves[method] = path
            if backbone == "mamba":
                res.contexts[ctx] = path
    for method, pattern in (
        ("MACAW", "macaw-{}-*/eval/returns.csv"),
        ("MQL", "mql-{}-*/returns.csv"),
    ):
        found = sorted(run.glob("stages/" + pattern.format(family)))
        if found:
            res.curves[method] = found[-1]
    return res


def plan(root: Path, family: str) -> dict[str, Path | str]:
    """Destination name -> source file (or text) of everything the import writes."""
    run = root / "run"
    summary = json.loads((run / "summary.json").read_text())
    if family not in summary:
        sys.exit(f"{run / 'summary.json'}: no family {family!r} (it has {sorted(summary)})")
    files: dict[str, Path | str] = {
        "report.md": run / "report.md",
        "summary.json": json.dumps({family: summary[family]}, indent=2, sort_keys=True) + "\n",
        f"figures/fig1_{family}.png": run / "figures" / f"fig1_{family}.png",
        f"figures/fig2_{family}.png": run / "figures" / f"fig2_{family}.png",
        f"returns_{family}.csv": run / f"returns_{family}.csv",
    }
    for record in sorted(run.glob("stages/*/stage.json")):
        files[f"stages/{record.parent.name}.json"] = record
    # the baselines' per-seed training logs (wall_s per logged step: a meta-step's cost)
    for log in sorted(run.glob("stages/macaw-*/seed_*/metrics.csv")) + sorted(
        run.glob("stages/mql-*/seed_*/metrics.csv")
    ):
        files[f"stages/{log.parent.parent.name}/{log.parent.name}-metrics.csv"] = log
    for name in JOB_FILES:
        if (root / name).exists():
            files[name] = root / name
    twin = root / "run-twin"  # reproduce-job.sh's TWIN=1: AD-Mamba with every reward zeroed
    if (twin / "summary.json").exists():
        files.update(_side_run(twin, family, "blinded-twin", ["fig1"]))
    arm = root / "run-arm"  # reproduce-job.sh's ARM='FLAGS': the same run with FLAGS appended
    if (arm / "summary.json").exists():
        files.update(_side_run(arm, family, "second-arm", ["fig1", "fig2"]))
    diagnosis = root / "diagnose"  # reproduce-job.sh's DIAG=1
    for path in sorted(diagnosis.glob("*")) if diagnosis.is_dir() else []:
        files[f"diagnose/{path.name}"] = path
    return files


def _side_run(run: Path, family: str, prefix: str, figures: list[str]) -> dict[str, Path | str]:
    """A run beside the family's own (the twin, the second arm) under `prefix`/: its summary
    entry, report, `figures`, per-episode table and stage records."""
    entry = json.loads((run / "summary.json").read_text())[family]
    files: dict[str, Path | str] = {
        f"{prefix}/summary.json": json.dumps({family: entry}, indent=2) + "\n"
    }
    names = ["report.md", *(f"figures/{fig}_{family}.png" for fig in figures),
             f"returns_{family}.csv"]  # fmt: skip
    for name in names:
        files[f"{prefix}/{name}"] = run / name
    for record in sorted(run.glob("stages/*/stage.json")):
        files[f"{prefix}/stages/{record.parent.name}.json"] = record
    return files


def plan_twin(root: Path, family: str) -> dict[str, Path | str]:
    """Destination name -> source of a twin-only job (its `run/` is the blinded twin)."""
    run = root / "run"
    trainings = sorted(run.glob("stages/train-*/stage.json"))
    ablations = {r.parent.name: json.loads(r.read_text())["config"]["data"].get("reward_ablation")
                 for r in trainings}  # fmt: skip
    seeing = [name for name, ablation in ablations.items() if ablation != "zero"]
    if not trainings or seeing:
        sys.exit(f"{run}: not a blinded twin: its AD trainings {seeing or '(none)'} do not zero "
                 "the context's rewards (data.reward_ablation=zero); import it without "
                 "--twin")  # fmt: skip
    summary = json.loads((run / "summary.json").read_text())
    if family not in summary:
        sys.exit(f"{run / 'summary.json'}: no family {family!r} (it has {sorted(summary)})")
    files = _side_run(run, family, "blinded-twin", ["fig1"])
    for name in JOB_FILES:
        if (root / name).exists():
            files[f"blinded-twin/{name}"] = root / name
    return files


def _family_there(dest: Path, family: str) -> bool:
    """Whether DEST holds the family's own import (summary entry with references, and table);
    a summary without that entry stops the import before anything is written."""
    summary, table = dest / "summary.json", dest / f"returns_{family}.csv"
    if not (summary.exists() and table.exists()):
        return False
    entry = json.loads(summary.read_text()).get(family)
    if not entry or "references" not in entry:
        sys.exit(f"{summary}: no {family} entry with references: is {dest} the folder of "
                 f"{family}? (nothing written)")  # fmt: skip
    return True


def compare_twin(dest: Path, family: str) -> None:
    """twin_compare.py on the imported tables of AD-Mamba and its blinded twin: its printout,
    under the command that gives it again, as `twin-compare.txt`, and its figure."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import twin_compare

    refs = json.loads((dest / "summary.json").read_text())[family]["references"]
    argv = [f"returns_{family}.csv", "AD-Mamba", f"blinded-twin/returns_{family}.csv",
            "AD-Mamba", TWIN_OUTPUTS[1], "--zero", f"{refs['zero']:.1f}",
            "--target", f"{refs['source_final']:.1f}"]  # fmt: skip
    out = io.StringIO()
    with contextlib.chdir(dest), contextlib.redirect_stdout(out):
        twin_compare.main(argv)
    command = "python docs/results/twin_compare.py " + " ".join(argv)
    (dest / TWIN_OUTPUTS[0]).write_text(f"(in this folder) {command}\n\n{out.getvalue()}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("job", type=Path, help="window-poll.sh's job.tar.gz, or its unpacked folder")
    ap.add_argument("dest", type=Path, help="docs/results/<Family>/ (its name is the family)")
    ap.add_argument("--family", help="the family to import (default: DEST's folder name)")
    ap.add_argument(
        "--twin", action="store_true", help="JOB ran only AD-Mamba's twin: into DEST/blinded-twin/"
    )
    args = ap.parse_args(argv)
    family = args.family or args.dest.resolve().name
    with tempfile.TemporaryDirectory() as scratch:
        root = _job_root(args.job, Path(scratch))
        files = plan_twin(root, family) if args.twin else plan(root, family)
        # the comparison needs both tables: in this job, or imported before it (either order)
        model = f"returns_{family}.csv" in files or _family_there(args.dest, family)
        twin_table = args.dest / "blinded-twin" / f"returns_{family}.csv"
        twin = ("blinded-twin/summary.json" in files or twin_table.exists()) and model
        outputs = [*files, *(TWIN_OUTPUTS if twin else ())]
        in_the_way = sorted(n for n in outputs if (args.dest / n).exists())
        if in_the_way:
            sys.exit(f"{args.dest}: already holds {in_the_way}; move them first (nothing written)")
        csv_name = f"returns_{family}.csv"
        missing = [
            str(src)
            for n, src in files.items()
            if isinstance(src, Path) and not src.exists() and n != csv_name
        ]
        if missing:
            sys.exit(f"{args.job}: lacks {missing}: did its run finish? (nothing written)")
        for name, source in files.items():
            target = args.dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(source, str):
                target.write_text(source)
            elif name == csv_name and not source.exists():  # a run made before the app wrote it
                write_returns_table(rebuilt_results(root / "run", family), target)
            else:
                shutil.copyfile(source, target)
        if twin:
            compare_twin(args.dest, family)
        print(f"{len(outputs)} files into {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
