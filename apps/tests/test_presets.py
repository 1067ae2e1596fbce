"""What the presets resolve to: the histories backend, the source of the small preset, and
settings refused before any stage runs."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from icrl.ad import EpisodesContext, FullContext, WindowContext, parse_context
from icrl.ad._results import write_results
from icrl.apps import _presets as P
from icrl.apps import main
from icrl.apps._config import ReproduceConfig
from icrl.apps._pipeline import FamilyResults
from icrl.apps._report import context_label, family_summary, write_returns_table

FULL, FOUR = FullContext(), EpisodesContext(n_episodes=4)


def _cfg(**fields) -> ReproduceConfig:
    return ReproduceConfig.model_validate(fields)


@pytest.mark.parametrize(("cuda", "backend", "device"), [(False, "tianshou", "cpu"),
                                                         (True, "batched", "cuda")])  # fmt: skip
def test_auto_backend_is_batched_on_a_gpu_machine(monkeypatch, cuda, backend, device) -> None:
    monkeypatch.setattr(P, "_cuda", lambda: cuda)
    monkeypatch.setattr(P.os, "cpu_count", lambda: 16)
    gen = P.histories_config("ReacherGoal", _cfg(preset="small"))
    assert (gen.backend, gen.device) == (backend, device)
    assert gen.workers == (15 if cuda else 16)  # batched: one core drives the learners


def test_forced_backend_and_workers_win(monkeypatch) -> None:
    monkeypatch.setattr(P, "_cuda", lambda: True)
    cfg = _cfg(preset="small", histories={"backend": "tianshou", "workers": 3})
    gen = P.histories_config("ReacherGoal", cfg)
    assert (gen.backend, gen.device, gen.workers) == ("tianshou", "cpu", 3)


def test_small_preset_uses_the_strengthened_sac_source_and_paper_keeps_the_paper_one() -> None:
    small = P.histories_config("HalfCheetahVel", _cfg(preset="small")).algorithm
    paper = P.histories_config("HalfCheetahVel", _cfg(preset="paper")).algorithm
    assert (small.gradient_steps, small.init_alpha) == (5, 0.1)
    assert (paper.gradient_steps, paper.init_alpha) == (1, 1.0)
    mine = _cfg(preset="paper", histories={"gradient_steps": 3, "init_alpha": 0.2})
    algo = P.histories_config("ReacherGoal", mine).algorithm
    assert (algo.gradient_steps, algo.init_alpha) == (3, 0.2)


def test_a_stage_setting_is_refused_before_anything_runs(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    argv = ["--families", '["PusherGoal"]', "--histories.gradient_steps", "5", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "PusherGoal" in err and "gradient_steps" in err and "ppo" in err
    assert "Traceback" not in err and not out.exists()


def test_an_invalid_stage_config_does_not_touch_an_existing_run(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text('{"kept": true}')
    assert main(["--out", str(out), "--ad.overrides", '["optim.lr=-1"]']) == 2
    assert "optim.lr" in capsys.readouterr().err
    assert (out / "config.json").read_text() == '{"kept": true}'


def test_out_pointing_at_a_file_is_one_line(tmp_path: Path, capsys) -> None:
    out = tmp_path / "file"
    out.write_text("x")
    assert main(["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "is a file" in err and "Traceback" not in err
    assert out.read_text() == "x"


def test_a_second_run_into_one_out_is_refused(tmp_path: Path, capsys) -> None:
    from icrl.apps._stages import RunLock

    out = tmp_path / "run"
    out.mkdir()
    with RunLock(out):
        assert main(["--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "in use by another reproduce.py" in err and "--out" in err
    assert not (out / "config.json").exists()


def test_show_preset_prints_every_stage_and_runs_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    argv = ["--show-preset", "small", "--families", '["ReacherGoal"]', "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    plan = json.loads(text[text.index("{") :])
    fam = plan["ReacherGoal"]
    assert plan["preset"] == "small" and fam["histories"]["tasks"] == 35
    assert fam["train mamba (first context, first seed)"]["model"]["d_model"] == 168
    assert {"evaluate", "macaw", "mql"} <= set(fam) and not out.exists()


def test_context_labels_are_plain_words() -> None:
    assert context_label(parse_context("full")) == "full history"
    assert context_label(parse_context("episodes:4")) == "last 4 episodes"
    assert context_label(parse_context("window:800")) == "last 800 transitions"


def test_family_summary_has_the_fields_programs_read(tmp_path: Path) -> None:
    tasks = [{"family": "ReacherGoal", "goal": [0.1, 0.1]}] * 2
    returns = np.arange(2 * 2 * 12, dtype=float).reshape(2, 2, 12)
    write_results(tmp_path, "AD-Mamba", [0, 1], tasks, returns)
    refs = {"source_first": -30.0, "source_final": -5.0, "random": -42.0, "zero": -11.0}
    res = FamilyResults("ReacherGoal", tmp_path / "h.h5", curves={"AD-Mamba": tmp_path /
                        "returns.csv"}, summary_refs=refs)  # fmt: skip
    summary = family_summary(res)
    assert summary["references"] == refs
    ad = summary["AD-Mamba"]
    fields = {"first_mean", "first_ci95", "last10_mean", "last10_ci95", "gain_mean", "gain_ci95"}
    assert fields <= set(ad)
    assert ad["first_mean"] == pytest.approx(returns[..., 0].mean())
    assert ad["last10_mean"] == pytest.approx(returns[..., -10:].mean())
    # every rollout's last 10 of 12 episodes average 6.5 above its first: no spread at all
    assert ad["gain_mean"] == pytest.approx(6.5) and ad["gain_ci95"] == pytest.approx(0.0)


def test_returns_table_holds_every_curve_of_both_figures_once(tmp_path: Path) -> None:
    tasks = [{"family": "ReacherGoal", "goal": [0.1, 0.1]}] * 2
    paths = {}
    for i, (name, where) in enumerate([("AD-Mamba", "full"), ("AD-Mamba", "four"),
                                       ("AD-Transformer", "tf"), ("MQL", "mql")]):  # fmt: skip
        returns = np.full((2, 1, 3), float(i))
        paths[where] = write_results(tmp_path / where, name, [7], tasks, returns)["csv"]
    res = FamilyResults(
        "ReacherGoal", tmp_path / "h.h5", fig1_context=FULL,
        curves={"AD-Mamba": paths["full"], "AD-Transformer": paths["tf"], "MQL": paths["mql"]},
        contexts={FULL: paths["full"], FOUR: paths["four"]},
    )  # fmt: skip
    out = write_returns_table(res, tmp_path / "returns_ReacherGoal.csv")
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == ("method", "context", "seed", "task", "episode", "return")
    groups = {(r["method"], r["context"]): set() for r in rows}
    for r in rows:
        groups[(r["method"], r["context"])].add(float(r["return"]))
    assert groups == {("AD-Mamba", "full history"): {0.0}, ("AD-Mamba", "last 4 episodes"): {1.0},
                      ("AD-Transformer", "full history"): {2.0}, ("MQL", ""): {3.0}}  # fmt: skip
    assert len(rows) == 4 * 2 * 3 and {r["seed"] for r in rows} == {"7"}


def test_a_failed_stage_is_one_line_and_its_traceback_is_kept(tmp_path: Path, capsys,
                                                                monkeypatch) -> None:  # fmt: skip
    from icrl.ad import NonFiniteLossError
    from icrl.apps import _pipeline

    def boom(*args, **kwargs):
        raise NonFiniteLossError("non-finite loss at step 7; the last good checkpoint is c.pt")

    monkeypatch.setattr(_pipeline, "run_family", boom)
    out = tmp_path / "run"
    assert main(["--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NonFiniteLossError: non-finite loss at step 7" in err
    assert "Traceback" not in err and "rerun the same command" in err
    assert "Traceback" in (out / "error.log").read_text()


def test_a_missing_config_file_is_a_bad_option(tmp_path: Path, capsys) -> None:
    assert main(["--config", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "r")]) == 2
    assert "--config" in capsys.readouterr().err and not (tmp_path / "r").exists()


# --- unit tests of _presets.py: building configs only (no training, no env stepping) ---------

H5 = Path("h.h5")


@pytest.fixture
def cpu_machine(monkeypatch):
    """A 16-core machine without CUDA, so backend, device and workers do not depend on this one."""
    monkeypatch.setattr(P, "_cuda", lambda: False)
    monkeypatch.setattr(P.os, "cpu_count", lambda: 16)


@pytest.mark.parametrize(
    ("preset", "family", "tasks", "steps", "k", "kind"),
    [
        ("tiny", "ReacherGoal", 4, 1_100, 4, "sac"),
        ("tiny", "PusherGoal", 4, 2_000, 4, "ppo"),
        ("tiny", "AntDir", 4, 2_100, 4, "droq"),
        ("small", "ReacherGoal", 35, 30_400, 4, "sac"),
        ("small", "PusherGoal", 20, 100_000, 10, "ppo"),
        ("small", "HalfCheetahVel", 15, 60_400, 8, "sac"),
        ("small", "AntDir", 15, 40_400, 5, "droq"),
        ("paper", "ReacherGoal", None, 100_000, 4, "sac"),
        ("paper", "PusherGoal", None, 500_000, 10, "ppo"),
        ("paper", "AntDir", None, 500_000, 10, "droq"),
    ],
)
def test_histories_config_per_preset_and_family(
    cpu_machine, preset, family, tasks, steps, k, kind
) -> None:
    gen = P.histories_config(family, _cfg(preset=preset, families=[family]))
    assert (gen.family, gen.tasks, gen.steps_per_task, gen.k) == (family, tasks, steps, k)
    assert gen.algorithm.kind == kind
    assert (gen.seed, gen.n_envs, gen.backend, gen.device) == (0, 5, "tianshou", "cpu")
    assert gen.workers == (2 if preset == "tiny" else 16)
    if preset == "paper":  # the paper's source, unchanged (icrl.histories.PRESETS)
        src = P.SOURCE_PRESETS[family]
        assert gen.algorithm == src.algorithm
        assert (gen.steps_per_task, gen.k) == (src.steps_per_task, src.k)


def test_tiny_preset_shrinks_every_source_algorithm(cpu_machine) -> None:
    sac = P.histories_config("ReacherGoal", _cfg()).algorithm
    assert (sac.hidden_sizes, sac.batch_size, sac.warmup_steps) == ((32, 32), 64, 100)
    assert (sac.gradient_steps, sac.init_alpha) == (1, 1.0)  # tiny keeps the paper's SAC values
    ppo = P.histories_config("PusherGoal", _cfg()).algorithm
    assert (ppo.hidden_sizes, ppo.steps_per_env, ppo.batch_size) == ((32, 32), 100, 64)
    droq = P.histories_config("AntDir", _cfg()).algorithm
    assert (droq.hidden_sizes, droq.gradient_steps, droq.warmup_steps) == ((32, 32), 3, 100)


def test_small_preset_strengthens_sac_only(cpu_machine) -> None:
    small = _cfg(preset="small")
    for family in ("ReacherGoal", "HalfCheetahVel"):
        algo = P.histories_config(family, small).algorithm
        assert (algo.kind, algo.gradient_steps, algo.init_alpha) == ("sac", 5, 0.1)
        assert (algo.hidden_sizes, algo.batch_size) == ((256, 256), 256)  # otherwise the paper's
    droq = P.histories_config("AntDir", small).algorithm  # DroQ is not "SAC" here
    assert (droq.gradient_steps, droq.init_alpha) == (3, 1.0)
    ppo = P.histories_config("PusherGoal", small).algorithm
    assert ppo == P.SOURCE_PRESETS["PusherGoal"].algorithm


def test_user_histories_fields_reach_the_generate_config(cpu_machine) -> None:
    cfg = _cfg(
        preset="small",
        histories={"tasks": 3, "steps_per_task": 800, "k": 2, "n_envs": 2, "workers": 1,
                   "hidden_sizes": (8,), "batch_size": 16, "gradient_steps": 2,
                   "init_alpha": 0.5},
        progress=False,
    )  # fmt: skip
    gen = P.histories_config("ReacherGoal", cfg)
    assert (gen.tasks, gen.steps_per_task, gen.k, gen.n_envs, gen.workers) == (3, 800, 2, 2, 1)
    algo = gen.algorithm
    assert (algo.hidden_sizes, algo.batch_size, algo.gradient_steps, algo.init_alpha) == (
        (8,), 16, 2, 0.5)  # fmt: skip
    assert gen.progress is False
    # the tiny preset's sizes give way too
    tiny = P.histories_config("PusherGoal", _cfg(histories={"steps_per_task": 1_000, "workers": 1}))
    assert (tiny.steps_per_task, tiny.workers, tiny.tasks) == (1_000, 1, 4)


def test_a_field_the_source_algorithm_lacks_is_refused(cpu_machine) -> None:
    with pytest.raises(ValueError, match=r"--histories.init_alpha: PusherGoal's .*\(ppo\)"):
        P.histories_config("PusherGoal", _cfg(histories={"init_alpha": 0.1}))


@pytest.mark.parametrize(
    ("preset", "n_seeds", "shorter"),
    [
        ("tiny", 2, ["episodes:2"]),
        ("small", 3, ["episodes:16", "episodes:4"]),  # Fig. 2: two shorter contexts (issue 19)
        ("paper", 3, ["episodes:16", "episodes:4"]),
    ],
)
def test_seeds_and_contexts_defaults(preset, n_seeds, shorter) -> None:
    cfg = _cfg(preset=preset)
    assert P.seeds(cfg) == list(range(n_seeds))
    assert [str(c) for c in P.contexts(cfg)] == ["full", *shorter]
    mine = _cfg(preset=preset, seeds=[7], contexts=["window:50"])
    assert (P.seeds(mine), P.contexts(mine)) == ([7], [parse_context("window:50")])


def test_a_bad_context_spec_is_refused_by_the_config() -> None:
    with pytest.raises(ValueError, match="not understood"):
        _cfg(contexts=["episodes:0"])


@pytest.mark.parametrize(
    ("preset", "mamba", "transformer", "lr", "length"),
    [
        ("tiny", (32, 2, 8), (32, 2, 8, 64), 1e-3, {"max_steps": 40, "epochs": None}),
        ("small", (168, 4, 32), (128, 4, 32, 512), 1e-3, {"max_steps": 2000, "epochs": None}),
    ],
)
def test_ad_config_model_and_length(preset, mamba, transformer, lr, length) -> None:
    cfg = _cfg(preset=preset)
    m = P.ad_config("ReacherGoal", "mamba", FULL, 0, H5, cfg)
    assert m.model.kind == "mamba"
    assert (m.model.backbone.d_model, m.model.backbone.n_layers, m.model.embed_dim) == mamba
    t = P.ad_config("ReacherGoal", "transformer", FULL, 0, H5, cfg)
    assert t.model.kind == "transformer"
    bb = t.model.backbone
    assert (bb.d_model, bb.n_layers, t.model.embed_dim, bb.d_ff) == transformer
    for tc in (m, t):
        assert {"max_steps": tc.max_steps, "epochs": tc.epochs} == length
        assert (tc.optim.lr, tc.optim.weight_decay) == (lr, 1e-4)  # ReacherGoal: Table 5's 1e-4
        assert tc.data.paths == (H5,)


@pytest.mark.parametrize(
    ("family", "backbone"),
    [("ReacherGoal", "mamba"), ("ReacherGoal", "transformer"), ("AntDir", "transformer")],
)
def test_paper_ad_config_is_the_papers_model(family, backbone) -> None:
    from icrl.ad import PAPER_SIZES, PAPER_TABLE
    from icrl.seqmodels import PAPER_CONFIGS

    tc = P.ad_config(family, backbone, FULL, 2, H5, _cfg(preset="paper", families=[family]))
    ref = PAPER_CONFIGS[PAPER_SIZES[family][backbone]]
    assert (tc.model.kind, tc.model.backbone.d_model, tc.model.backbone.n_layers) == (
        backbone, ref.d_model, ref.n_layers)  # fmt: skip
    embed = 32 if backbone == "mamba" else PAPER_TABLE[family]["dt_embed"]
    assert tc.model.embed_dim == embed
    assert (tc.epochs, tc.max_steps, tc.seed, tc.batch_size) == (450, None, 2, 8)
    assert (tc.optim.lr, tc.optim.weight_decay) == (3e-4, PAPER_TABLE[family]["weight_decay"])


@pytest.mark.parametrize(
    ("spec", "context", "n_episodes", "window"),
    [("full", "full", None, None), ("episodes:4", "episodes", 4, None),
     ("window:800", "window", None, 800)],
)  # fmt: skip
def test_ad_config_context_and_seed(spec, context, n_episodes, window) -> None:
    tc = P.ad_config(
        "HalfCheetahVel", "mamba", parse_context(spec), 5, H5, _cfg(preset="small", progress=False)
    )
    flat = tc.data.model_dump()  # the context's dict form: context, n_episodes, window
    assert (flat["context"], flat["n_episodes"], flat["window"]) == (context, n_episodes, window)
    assert (tc.seed, tc.progress) == (5, False)


def test_user_ad_fields_reach_the_train_config() -> None:
    ad = {"max_steps": 7, "batch_size": 3, "lr": 5e-4, "d_model": 64, "n_layers": 3,
          "device": "cpu", "overrides": ["optim.warmup_steps=2", "data.num_workers=1"]}  # fmt: skip
    tc = P.ad_config("ReacherGoal", "transformer", FOUR, 0, H5, _cfg(preset="small", ad=ad))
    assert (tc.max_steps, tc.epochs) == (7, None)  # max_steps replaces the preset's epochs
    assert (tc.batch_size, tc.optim.lr, tc.device) == (3, 5e-4, "cpu")
    assert (tc.model.backbone.d_model, tc.model.backbone.n_layers) == (64, 3)
    assert (tc.optim.warmup_steps, tc.data.num_workers) == (2, 1)
    assert tc.data.context == EpisodesContext(n_episodes=4)
    epochs = P.ad_config(
        "ReacherGoal", "mamba", FULL, 0, H5, _cfg(preset="paper", ad={"epochs": 2})
    )
    assert (epochs.epochs, epochs.max_steps) == (2, None)


def test_a_backbone_knob_reaches_the_train_config_by_its_key() -> None:
    ad = {"d_model": 64, "overrides": ["model.mixer=mamba2", "model.headdim=32"]}
    tc = P.ad_config("ReacherGoal", "mamba", FULL, 0, H5, _cfg(preset="small", ad=ad))
    bb = tc.model.backbone
    assert (bb.d_model, bb.n_layers, bb.mixer, bb.headdim) == (64, 4, "mamba2", 32)


def test_epochs_replace_the_tiny_presets_step_cap() -> None:
    # --ad.epochs "replaces max_steps" on every preset; tiny's plumbing cap of 40 steps used to
    # stay beside it and fail validation ("set exactly one of epochs and max_steps")
    tc = P.ad_config("ReacherGoal", "mamba", FULL, 0, H5, _cfg(preset="tiny", ad={"epochs": 3}))
    assert (tc.epochs, tc.max_steps) == (3, None)


def test_a_user_override_wins_over_the_context_spec() -> None:
    ad = {"overrides": ['data.context="window"', "data.window=100"]}
    tc = P.ad_config("ReacherGoal", "mamba", FULL, 0, H5, _cfg(preset="small", ad=ad))
    assert tc.data.context == WindowContext(window=100)


@pytest.mark.parametrize(
    ("preset", "n_tasks", "reference_episodes", "asynchronous"),
    [("tiny", 3, 1, False), ("small", 10, 3, True), ("paper", 10, 3, True)],
)
def test_eval_config(preset, n_tasks, reference_episodes, asynchronous) -> None:
    ev = P.eval_config(H5, 12, _cfg(preset=preset))
    assert (ev.n_tasks, ev.episodes, ev.device, ev.histories) == (n_tasks, 12, "auto", H5)
    assert (ev.reference_episodes, ev.asynchronous) == (reference_episodes, asynchronous)
    mine = _cfg(preset=preset, evaluate={"n_tasks": 4, "episodes": 6, "device": "cpu"})
    ev = P.eval_config(H5, 12, mine)
    assert (ev.n_tasks, ev.episodes, ev.device) == (4, 6, "cpu")


@pytest.mark.parametrize(
    ("preset", "steps", "checkpoint_every", "latent_dim", "n_test_tasks"),
    [
        ("tiny", 100, 50, 8, 3),
        ("small", 2_000, 200, 100, 10),
        ("paper", 500_000, 50_000, 100, 10),
    ],
)
def test_macaw_configs(
    cpu_machine, preset, steps, checkpoint_every, latent_dim, n_test_tasks
) -> None:
    train, ev = P.macaw_configs("HalfCheetahVel", H5, Path("run"), 5, _cfg(preset=preset))
    assert (train.histories, train.run_dir, train.device) == (H5, Path("run"), "cpu")
    assert (train.steps, train.checkpoint_every, train.algo.latent_dim) == (
        steps, checkpoint_every, latent_dim)  # fmt: skip
    assert (ev.family, ev.n_test_tasks, ev.episodes, ev.device) == (
        "HalfCheetahVel", n_test_tasks, 5, "cpu")  # fmt: skip
    mine = _cfg(preset=preset, macaw={"steps": 300}, evaluate={"n_tasks": 2})
    train, ev = P.macaw_configs("HalfCheetahVel", H5, Path("run"), 5, mine)
    assert (train.steps, train.checkpoint_every, ev.n_test_tasks) == (300, 50, 2)


def test_mql_config(cpu_machine) -> None:
    from icrl.baselines.mql import AD_DATA_VOLUME

    tiny = P.mql_config("ReacherGoal", 5, _cfg())
    assert (tiny.total_env_steps, tiny.burn_in, tiny.n_test_tasks, tiny.adapt_rounds) == (
        1_200, 400, 3, 4)  # fmt: skip
    assert (tiny.n_train_tasks, tiny.hidden, tiny.device) == (4, (32, 32), "cpu")
    small = P.mql_config("AntDir", 1, _cfg(preset="small"))
    assert (small.total_env_steps, small.n_test_tasks, small.adapt_rounds) == (
        P.SMALL_MQL_ENV_STEPS, 10, 1)  # fmt: skip
    assert P.SMALL_MQL_ENV_STEPS == 60_000 < AD_DATA_VOLUME["AntDir"] // 20
    assert (small.hist_len, small.gru_hidden) == (25, 30)  # the official ant-dir values
    paper = P.mql_config("ReacherGoal", 3, _cfg(preset="paper"))
    assert (paper.total_env_steps, paper.adapt_rounds) == (70 * 100_000, 2)
    # at most P.MQL_ADAPTATIONS (5) adaptations per task beyond tiny: 151 rounds -> every 31st
    long = P.mql_config("ReacherGoal", 152, _cfg(preset="small"))
    assert (long.adapt_rounds, long.adapt_every, P.MQL_ADAPTATIONS) == (151, 31, 5)
    assert P.mql_config("ReacherGoal", 6, _cfg(preset="small")).adapt_every == 1
    assert (paper.adapt_rounds, paper.adapt_every) == (2, 1)
    assert P.mql_config("ReacherGoal", 152, _cfg()).adapt_every == 1  # tiny: every episode
    mine = _cfg(preset="paper", mql={"total_env_steps": 900}, evaluate={"n_tasks": 2})
    paper = P.mql_config("ReacherGoal", 3, mine)
    assert (paper.total_env_steps, paper.n_test_tasks) == (900, 2)


def test_validate_names_the_stage_of_a_bad_setting() -> None:
    P.validate(_cfg(families=["ReacherGoal", "PusherGoal"]))  # the defaults resolve
    bad = _cfg(families=["ReacherGoal"], ad={"overrides": ["optim.lr=-1"]})
    with pytest.raises(P.StageConfigError, match="ReacherGoal, stage train mamba full seed 0"):
        P.validate(bad)


@pytest.mark.parametrize(("batch", "full", "cut", "expected"),
                         [(8, 35, 1330, 272), (8, 35, 350, 72), (8, 15, 51, 32), (8, 2, 6, 8),
                          (2, 2, 6, 6)])  # fmt: skip
def test_a_shorter_context_takes_the_full_historys_steps(batch, full, cut, expected) -> None:
    """small ReacherGoal's last 4 / last 16 of 152 episodes (35 tasks), an AntDir-like uneven
    count (51 contexts over 15 histories), and batches that already cover a short epoch."""
    got = P.context_batch(batch, full, cut)
    assert got == expected and got % batch == 0
    assert -(-cut // got) == -(-full // batch)  # the same steps per epoch


def test_a_shorter_context_batches_more_contexts_unless_the_batch_is_given(tmp_path: Path) -> None:
    """A context of the last 4 of 12 kept episodes tiles each of 2 histories 3 times: tiny's batch
    of 2 becomes 6 (one step an epoch, as the full history's); a batch the user sets is kept."""
    from icrl.histories import GenerateConfig, SACConfig, generate

    sac = SACConfig(warmup_steps=595, hidden_sizes=(8, 8), batch_size=8)
    gen = GenerateConfig(family="ReacherGoal", tasks=2, steps_per_task=600, k=1, workers=0,
                         progress=False, algorithm=sac)  # fmt: skip
    h5 = generate(gen, tmp_path / "h.h5")
    cfg = _cfg(preset="tiny")
    full = P.ad_config("ReacherGoal", "mamba", FULL, 0, h5, cfg)
    four = P.ad_config("ReacherGoal", "mamba", FOUR, 0, h5, cfg)
    assert (full.batch_size, four.batch_size) == (2, 6)
    for given in ({"batch_size": 4}, {"overrides": ["batch_size=4"]}):
        tc = P.ad_config("ReacherGoal", "mamba", FOUR, 0, h5, _cfg(preset="tiny", ad=given))
        assert tc.batch_size == 4
