"""The HalfCheetahVel noise-distilled recipe through reproduce.py: --histories.noise_distillation
(batched backend only, refused before anything runs otherwise) and --evaluate.sample, what they
reach, and which cached stages they invalidate."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from icrl.apps import _pipeline, main
from icrl.apps import _presets as P
from icrl.apps._cli import parse
from icrl.apps._config import ReproduceConfig
from icrl.apps._stages import StageCache
from icrl.histories import HistoryFile, NoiseDistillation

H5 = Path("h.h5")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cpu_machine(monkeypatch):
    """A 16-core machine without CUDA: "auto" resolves to the tianshou backend."""
    monkeypatch.setattr(P, "_cuda", lambda: False)
    monkeypatch.setattr(P.os, "cpu_count", lambda: 16)


def test_noise_distillation_flag_reaches_the_generate_config(cpu_machine) -> None:
    noise_flag = ["--histories.noise_distillation", '{"episodes": 4, "noise": "gaussian"}']
    cfg = parse(["--families", '["HalfCheetahVel"]', "--histories.backend", "batched", *noise_flag])
    noise = cfg.histories.noise_distillation
    assert isinstance(noise, NoiseDistillation)
    assert (noise.episodes, noise.anneal, noise.noise) == (4, 0.8, "gaussian")
    gen = P.histories_config("HalfCheetahVel", cfg)
    assert gen.noise_distillation == noise and (gen.backend, gen.device) == ("batched", "cpu")
    assert gen.identity()["noise_distillation"] == {"episodes": 4, "anneal": 0.8,
                                                    "noise": "gaussian"}  # fmt: skip
    # the saved config.json holds it as JSON, and reads back as the same value
    dumped = cfg.model_dump(mode="json")
    assert dumped["histories"]["noise_distillation"]["episodes"] == 4
    again = ReproduceConfig.model_validate(json.loads(json.dumps(dumped)))
    assert again.histories.noise_distillation == noise
    # unset: the learning run, as before (no field in the file's identity)
    plain = P.histories_config("HalfCheetahVel", parse(["--histories.backend", "batched"]))
    assert plain.noise_distillation is None and "noise_distillation" not in plain.identity()


def test_a_bad_noise_distillation_is_a_bad_option(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["--histories.noise_distillation", '{"episodes": 1}', "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--histories.noise_distillation.episodes" in err and "Traceback" not in err
    assert not out.exists()
    # not a JSON object: the error says which form the flag takes
    assert main(["--histories.noise_distillation", "4", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--histories.noise_distillation takes a JSON object, e.g." in err
    assert """'{"episodes": 250}'""" in err and "Traceback" not in err and not out.exists()


@pytest.mark.parametrize("backend", [[], ["--histories.backend", "tianshou"]])
def test_noise_distillation_without_the_batched_backend_stops_before_any_stage(
    cpu_machine, tmp_path: Path, capsys, backend
) -> None:
    out = tmp_path / "run"
    argv = ["--families", '["HalfCheetahVel"]', "--histories.noise_distillation",
            '{"episodes": 4}', *backend, "--out", str(out)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid stage config: HalfCheetahVel, stage histories:")
    assert "--histories.noise_distillation needs the batched backend" in err
    assert "pass --histories.backend batched" in err and "Traceback" not in err
    assert ("no CUDA" in err) == (not backend)  # "auto" says why it resolved to tianshou
    assert not out.exists()  # nothing written, nothing run
    argv = [a for a in argv if a != "--out" and a != str(out)]
    assert main(["--show-preset", "tiny", *argv]) == 2  # --show-preset says so too


@pytest.mark.parametrize(("flag", "sample"), [([], None), (["false"], False), (["true"], True)])
def test_evaluate_sample_reaches_the_eval_config(flag, sample) -> None:
    cfg = parse(["--evaluate.sample", *flag] if flag else [])
    assert cfg.evaluate.sample is sample
    assert P.eval_config(H5, 12, cfg).sample is sample


def test_sampling_an_mse_head_is_refused_before_any_stage(tmp_path: Path, capsys) -> None:
    assert main(["--evaluate.sample", "true", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "stage evaluate" in err and "model.action_head=gaussian" in err
    assert not (tmp_path / "run").exists()
    gaussian = ["--evaluate.sample", "true", "--ad.overrides", '["model.action_head=gaussian"]']
    P.validate(parse(gaussian))  # with Gaussian heads it resolves


# --- the stage cache: which stages a changed field reruns (stages faked, keys real) ----------


@pytest.fixture
def fake_stages(monkeypatch):
    """Every package job replaced by a stub that writes what the pipeline reads back."""
    import torch

    def generate(gen, path):  # no file: icrl.ad's preset then leaves its family check
        return Path(path)

    def train(tc, run_dir):
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "model.pt").write_text("")
        return SimpleNamespace(checkpoint=run_dir / "model.pt", loss=0.0)

    def evaluate(ec, ckpts, out):
        (out / "summary.json").write_text(json.dumps({"references": {}}))
        return SimpleNamespace(references={}, returns=np.zeros((1, len(ckpts), 3)))

    monkeypatch.setattr(_pipeline, "generate", generate)
    monkeypatch.setattr(_pipeline, "train", train)
    model = torch.nn.Module()
    model.backbone = SimpleNamespace(position_parameters=lambda: 0)  # an ADModel's, in short
    meta = {"data": {"context_episodes": 3}}  # the 3 episodes `evaluate` below returns
    monkeypatch.setattr(_pipeline, "load_model", lambda *a: (model, meta))
    monkeypatch.setattr(_pipeline, "evaluate", evaluate)
    monkeypatch.setattr(_pipeline, "run_macaw", lambda *a, **k: None)
    monkeypatch.setattr(_pipeline, "run_mql", lambda *a, **k: None)


def _stages_run(root: Path, **fields) -> set[str]:
    """Run one family's pipeline into `root`; return the stages it ran (not from the cache)."""
    base = {"families": ["ReacherGoal"], "backbones": ["mamba"], "contexts": ["full"],
            "seeds": [0], "progress": False}  # fmt: skip
    cfg = ReproduceConfig.model_validate(base | fields)
    before = set((root / "stages").glob("*")) if (root / "stages").exists() else set()
    _pipeline.run_family("ReacherGoal", cfg, StageCache(root), _pipeline.Progress(0))
    return {p.name.rsplit("-", 1)[0] for p in set((root / "stages").glob("*")) - before}


def test_unset_fields_keep_old_keys_and_each_reruns_only_its_dependants(
    cpu_machine, fake_stages, tmp_path: Path
) -> None:
    batched = {"backend": "batched"}
    every = {"histories-ReacherGoal", "train-ReacherGoal-mamba-full-s0",
             "eval-ReacherGoal-mamba-full", "macaw-ReacherGoal", "mql-ReacherGoal"}  # fmt: skip
    assert _stages_run(tmp_path, histories=batched) == every
    # A run made before the fields existed resumes as it was: unset adds nothing to any key.
    record = json.loads(next((tmp_path / "stages").glob("histories-*/stage.json")).read_text())
    assert "noise_distillation" not in record["config"]
    record = json.loads(next((tmp_path / "stages").glob("train-*/stage.json")).read_text())
    assert "action_token_noise_std" not in record["config"]  # TrainConfig's, added later
    record = json.loads(next((tmp_path / "stages").glob("eval-*/stage.json")).read_text())
    assert record["config"]["sample"] is None
    assert "sample_noise" not in record["config"]  # EvalConfig's field added later, at its default
    # keys written before EvalConfig.reward_ablation defaulted to None (following the model)
    # held "none": the key holds the resolved value, so those runs resume too
    assert record["config"]["reward_ablation"] == "none"
    explicit = {"histories": batched | {"noise_distillation": None}, "evaluate": {"sample": None}}
    assert _stages_run(tmp_path, **explicit) == set()
    # --evaluate.sample: the evaluation only
    assert _stages_run(tmp_path, histories=batched, evaluate={"sample": False}) == {
        "eval-ReacherGoal-mamba-full"
    }
    # --histories.noise_distillation: everything that reads the histories (MQL does not)
    noise = batched | {"noise_distillation": {"episodes": 4}}
    assert _stages_run(tmp_path, histories=noise) == every - {"mql-ReacherGoal"}
    assert _stages_run(tmp_path, histories=noise) == set()  # and then it is cached
    # a model blinded through --ad.overrides is trained and evaluated anew, keyed "zero"
    blind = {"overrides": ["data.reward_ablation=zero"]}
    assert _stages_run(tmp_path, histories=noise, ad=blind) == {
        "train-ReacherGoal-mamba-full-s0",
        "eval-ReacherGoal-mamba-full",
    }
    keys = [json.loads(p.read_text())["config"].get("reward_ablation")
            for p in (tmp_path / "stages").glob("eval-*/stage.json")]  # fmt: skip
    assert sorted(keys) == ["none", "none", "none", "zero"]


# --- end to end, tiny (~15 s on 2 cores): the recipe's flags on ReacherGoal's short episodes ---


def _reproduce(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # a subprocess: run() sets torch's thread count for the whole process
    env = {**os.environ, "TQDM_DISABLE": "1"}
    cmd = [sys.executable, str(ROOT / "apps/reproduce.py"), "--out", str(out), "--no-progress",
           "--histories.tasks", "1", "--histories.workers", "0", "--backbones", '["mamba"]',
           "--contexts", '["full"]', "--seeds", "[0]", "--ad.max_steps", "2",
           "--evaluate.n_tasks", "1", "--evaluate.episodes", "2", "--no-macaw.enabled",
           "--no-mql.enabled", "--ad.overrides", '["model.action_head=gaussian"]',
           *args]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def test_noise_distilled_recipe_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "run"
    recipe = ["--histories.backend", "batched", "--histories.noise_distillation",
              '{"episodes": 4}']  # fmt: skip
    first = _reproduce(out, *recipe, "--evaluate.sample", "false")
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.count("done in") == 3  # histories, train, eval
    (h5,) = (out / "stages").glob("histories-*/histories.h5")
    hf = HistoryFile(h5)
    meta = hf.meta(hf.tasks[0])
    assert meta["k"] == 1 and meta["noise_distillation"] == {"episodes": 4, "anneal": 0.8}
    assert hf.attrs["generate_config"]["noise_distillation"]["episodes"] == 4
    (ev,) = (out / "stages").glob("eval-*/stage.json")
    assert json.loads(ev.read_text())["config"]["sample"] is False
    # the report says what its histories are, and names the references after them
    (report,) = out.glob("**/report.md")
    text = report.read_text()
    assert "Histories: **noise-distilled**" in text and '"episodes": 4' in text
    assert "its first 10 episodes (train tasks, eps near 1)" in text
    assert "stochastic" not in text
    # the Gaussian's sample instead of its mean: the evaluation reruns, nothing else
    again = _reproduce(out, *recipe)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count(": cached") == 2 and again.stdout.count("done in") == 1
    assert "eval-ReacherGoal-mamba-full: done in" in again.stdout
