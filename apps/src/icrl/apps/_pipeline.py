"""The reproduce pipeline: one family at a time, every stage cached by its resolved config.

histories -> AD training (backbone × context × seed) -> in-context evaluation -> MACAW -> MQL ->
figures and report. A stage whose directory lacks its completion record is rerun in place, and
the packages' jobs resume from what they left there (histories tasks, training checkpoints,
baseline seeds).
"""

from __future__ import annotations

import json
import shutil
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icrl.ad import Context, ContextDataset, evaluate, load_model, train
from icrl.baselines import run_macaw, run_mql
from icrl.histories import generate
from icrl.histories.runtime import spawned_pool

from . import _presets as P
from ._config import ReproduceConfig
from ._stages import StageCache, StageResult


@dataclass
class FamilyResults:
    """Where one family's results are, for the report."""

    family: str
    histories: Path
    curves: dict[str, Path] = field(default_factory=dict)  # method -> returns.csv
    contexts: dict[Context, Path] = field(default_factory=dict)  # AD-Mamba context -> CSV
    summary_refs: dict[str, float | None] = field(default_factory=dict)
    """source_first / source_final / random / zero, as in the evaluation's summary.json."""
    params: dict[str, int] = field(default_factory=dict)
    wall: dict[str, float] = field(default_factory=dict)
    noise_distillation: dict[str, Any] | None = None
    """The histories' noise-distillation settings (NoiseDistillation.recorded()), None for the
    source's learning runs: the report names its references after what the histories hold."""
    fig1_context: Context | None = None
    """The AD models' training context in Fig. 1 (the first of the run's contexts)."""
    baselines_side_by_side: bool = False
    """Whether MACAW's and MQL's stages ran at the same time (their wall-clocks overlap)."""
    baselines_beside_ad: bool = False
    """Whether the baselines' stages ran beside the AD stages (their wall-clocks overlap)."""
    ad_seeds_side_by_side: int = 1
    """How many of a model's AD seeds trained at once (--ad.seed_processes): above 1, a training
    row's wall-clock is the longest seed's, not their sum."""
    ad_ran: bool = False
    """Whether any AD training or evaluation ran now (not from the cache)."""
    cached: set[str] = field(default_factory=set)
    """The baselines ("MACAW", "MQL") whose stage came from the cache."""


class Progress:
    """One line per stage: its number, name, and whether it ran or came from the cache."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0
        self._lock = threading.Lock()  # the baselines' stages end in their own threads

    def __call__(self, result: StageResult) -> StageResult:
        how = "cached" if result.cached else f"done in {result.wall_s:.1f} s"
        with self._lock:
            self.done += 1
            print(f"[{self.done}/{self.total}] {result.name}: {how}", flush=True)
        return result


def count_stages(cfg: ReproduceConfig) -> int:
    """How many stages a run of `cfg` has (for the progress display)."""
    n_seeds = len(P.seeds(cfg))
    per = 1
    for backbone in cfg.backbones:
        per += len(P.backbone_contexts(cfg, backbone)) * (n_seeds + 1)
    per += int(cfg.macaw.enabled) + int(cfg.mql.enabled)
    return per * len(cfg.families)


def _slug(context: Context) -> str:
    return str(context).replace(":", "")


def _fresh(path: Path) -> Path:
    """An empty directory: an interrupted earlier attempt's partial output is discarded."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


@dataclass
class _Family:
    """What every stage of one family needs: the run's config, cache and progress display."""

    family: str
    cfg: ReproduceConfig
    cache: StageCache
    progress: Progress
    hist: StageResult
    out: FamilyResults

    def stage(
        self, kind: str, what: str, key: Any, fn: Callable[[Path], Any], deps: list[StageResult]
    ) -> StageResult:
        """Run (or reuse) the stage ``<kind>-<family>[-<what>]`` and show it."""
        name = "-".join(filter(None, (kind, self.family, what)))
        result = self.progress(self.cache.run(name, key, fn, deps=deps))
        if kind in ("train", "eval") and not result.cached:
            self.out.ad_ran = True
        return result


def run_family(
    family: str, cfg: ReproduceConfig, cache: StageCache, progress: Progress
) -> FamilyResults:
    """Run every stage of one family; return where its results are."""
    gen = P.histories_config(family, cfg)
    hist = progress(
        cache.run(
            f"histories-{family}",
            gen.identity(),
            lambda d: {"path": generate(gen, d / "histories.h5").name},  # relative to the stage
        )
    )
    noise = gen.noise_distillation
    out = FamilyResults(
        family, hist.path / "histories.h5", noise_distillation=noise and noise.recorded()
    )
    out.wall["histories"] = hist.wall_s
    fam = _Family(family, cfg, cache, progress, hist, out)
    out.fig1_context = P.contexts(cfg)[0]
    jobs: dict[str, Callable[[_Family, int], Path]] = {"MACAW": _macaw, "MQL": _mql}
    jobs = {k: fn for k, fn in jobs.items() if getattr(cfg, k.lower()).enabled}
    on_gpu = bool(jobs) and _baselines_on_gpu(family, cfg)
    episodes: int | None = cfg.evaluate.episodes
    early: dict[str, Future[Path]] = {}
    with ThreadPoolExecutor(max(len(jobs), 1)) as pool:
        if on_gpu and cfg.baselines_beside_ad:
            # Their seeds' processes leave the GPU mostly idle (small updates bound by kernel
            # launches): beside the AD stages, a family takes about the longer of the two
            # instead of their sum. Every rollout's length is known from the histories, as the
            # first AD training counts it.
            episodes = episodes or _first_context_episodes(fam)
            early = {name: pool.submit(fn, fam, episodes) for name, fn in jobs.items()}
        try:
            episodes = _ad_stages(fam, episodes)
        except BaseException:
            if early:
                _wait_after_failure(family, early, pool)
            raise
        if early:
            out.curves |= {name: f.result() for name, f in early.items()}
            out.baselines_beside_ad = out.ad_ran and bool(set(jobs) - out.cached)
        elif on_gpu and len(jobs) > 1:
            # Each leaves the GPU mostly idle (small updates bound by kernel launches; their
            # seeds already run side by side): at the same time, a family takes the longer of
            # the two.
            futures = {name: pool.submit(fn, fam, episodes) for name, fn in jobs.items()}
            out.curves |= {name: f.result() for name, f in futures.items()}
        else:
            out.curves |= {name: fn(fam, episodes) for name, fn in jobs.items()}
    if early or (on_gpu and len(jobs) > 1):
        out.wall |= {n: out.wall.pop(n) for n in jobs if n in out.wall}  # fixed order
        # their wall-clocks overlap only where both ran now
        out.baselines_side_by_side = len(jobs) > 1 and not out.cached & set(jobs)
    return out


def _wait_after_failure(family: str, early: dict[str, Future[Path]], pool: Executor) -> None:
    """An AD stage failed with the baselines running beside it: show its error now (the wait
    for them may outlast the machine), wait for them (their stages are kept for the rerun: a
    terminal's Ctrl-C stops their processes too), then name any of theirs that failed."""
    traceback.print_exc()
    running = [name for name, f in early.items() if not f.done()]
    if running:
        print(f"{family}: an AD stage failed (above); waiting for {' and '.join(running)} to "
              "end before stopping (their stages are kept for the rerun)", flush=True)  # fmt: skip
    pool.shutdown(wait=True)
    for name, f in early.items():
        if not f.cancelled() and f.exception() is not None:
            print(f"{family}: {name} failed too: {f.exception()!r}", flush=True)


def _ad_stages(fam: _Family, episodes: int | None) -> int:
    """Every AD training and evaluation of the family, Fig. 1's context first; returns the
    episode count of every rollout (the first evaluation's, unless given)."""
    out, first = fam.out, fam.out.fig1_context
    for backbone in fam.cfg.backbones:
        for ctx in P.backbone_contexts(fam.cfg, backbone):
            # The Fig. 1 context runs first; its episode count is every later rollout's length.
            csv, ev = _ad_runs(fam, backbone, ctx, episodes)
            if episodes is not None and ev != episodes:
                raise RuntimeError(
                    f"{fam.family}: the evaluation of {backbone} {ctx} ran {ev} episodes where "
                    f"{episodes} were counted from the histories for the baselines started "
                    "beside the AD stages (a bug: please report it); --no-baselines_beside_ad "
                    "starts them after the AD stages, with the evaluation's count"
                )
            episodes = episodes or ev
            if ctx == first:
                out.curves[_method(backbone)] = csv
            if backbone == "mamba":
                out.contexts[ctx] = csv
    assert episodes is not None
    return episodes


def _first_context_episodes(fam: _Family) -> int:
    """The episodes that the first AD training's context covers, counted from the histories as
    that training counts them (icrl.ad's dataset over the same files, tasks and context): the
    evaluator's default episode count, before any model is trained."""
    cfg = fam.cfg
    backbone = cfg.backbones[0]
    ctx = P.backbone_contexts(cfg, backbone)[0]
    tc = P.ad_config(fam.family, backbone, ctx, P.seeds(cfg)[0], fam.out.histories, cfg)
    d = tc.data
    dataset = ContextDataset.from_files(
        d.paths, d.tasks, context=d.context, seed=tc.seed, action_target=tc.action_target
    )
    return dataset.info.context_episodes


def _baselines_on_gpu(family: str, cfg: ReproduceConfig) -> bool:
    """Whether MACAW and MQL both train on a GPU with every seed in a spawned process (then
    their stages may run at the same time as each other and as the AD stages: each seeds torch
    process-wide, so a seed run in this process would share its random streams with another
    stage's)."""
    # (the episode count only fills the evaluation configs; the devices do not depend on it)
    macaw_train, _ = P.macaw_configs(family, Path("."), Path("."), 1, cfg)
    devices = (macaw_train.device, P.mql_config(family, 1, cfg).device)
    # more than one process per stage only on a GPU (_seed_processes)
    return all(_seed_processes(device, P.seeds(cfg)) > 1 for device in devices)


def _method(backbone: str) -> str:
    return {"mamba": "AD-Mamba", "transformer": "AD-Transformer"}[backbone]


def _ad_runs(fam: _Family, backbone: str, ctx: Context, episodes: int | None) -> tuple[Path, int]:
    """Train one model per seed, then evaluate them together; return the CSV and episodes."""
    cfg, h5, out = fam.cfg, fam.out.histories, fam.out
    seeds = P.seeds(cfg)
    configs = [P.ad_config(fam.family, backbone, ctx, seed, h5, cfg) for seed in seeds]
    n = min(cfg.ad.seed_processes, len(seeds))
    if n > 1:
        runs = _train_side_by_side(fam, backbone, ctx, seeds, configs, n)
    else:
        runs = [
            _train_stage(fam, backbone, ctx, seed, tc, _train_fn(tc))
            for seed, tc in zip(seeds, configs, strict=True)
        ]
    # (seeds that all came from the cache may have trained one by one)
    side_by_side = n > 1 and not all(r.cached for r in runs)
    walls = [r.wall_s for r in runs]
    out.wall[f"train {backbone} {ctx}"] = max(walls) if side_by_side else sum(walls)
    if side_by_side:
        out.ad_seeds_side_by_side = n
    trained = fam.cache.summary(runs[0])
    # (runs trained before position_params was recorded count their position table in)
    out.params[_method(backbone)] = int(trained["params"]) - int(trained.get("position_params", 0))
    if episodes is None:
        # Resolved here as the evaluator would (the most episodes a seed's context covers), so
        # the key holds the count: a run of the same config without another backbone's context
        # first (reproduce-job.sh's pass beside the mamba-ssm build) shares this evaluation.
        # (runs trained before context_episodes was recorded leave it to the evaluator)
        counts = [fam.cache.summary(r).get("context_episodes") for r in runs]
        episodes = max(counts) if None not in counts else None
    ec = P.eval_config(h5, episodes, cfg)
    # (older runs recorded absolute checkpoint paths; joining keeps those as they were)
    ckpts = [r.path / fam.cache.summary(r)["checkpoint"] for r in runs]
    # batch_seeds changes how the seeds are rolled out, not their returns (tested in icrl.ad)
    key_cfg = _stage_key(ec, exclude={"progress", "histories", "batch_seeds"})
    if ec.reward_ablation is None:
        # The evaluation follows the models' training setting (EvalConfig's default since it
        # became None): key the value it resolves to, as keys written before that recorded it,
        # so old runs resume and a blinded run (through ad.overrides) never matches an unblinded.
        # (every seed's config is the same but for its seed)
        key_cfg["reward_ablation"] = configs[0].data.reward_ablation
    res = fam.stage("eval", f"{backbone}-{_slug(ctx)}", key_cfg, _eval_fn(ec, ckpts), runs)
    out.wall[f"evaluate {backbone} {ctx}"] = res.wall_s
    summary = fam.cache.summary(res)
    evaluation = json.loads((res.path / "eval" / "summary.json").read_text())
    out.summary_refs = evaluation["references"]
    return res.path / "eval" / "returns.csv", int(summary["episodes"])


def _train_stage(
    fam: _Family, backbone: str, ctx: Context, seed: int, tc: Any, fn: Callable[[Path], Any]
) -> StageResult:
    """One seed's training stage, keyed by its config (without what does not change the model)."""
    # (data.num_workers only changes how batches are built, not which: icrl.ad tests they match)
    key_cfg = _stage_key(tc, exclude={"progress": True, "data": {"paths", "num_workers"}})
    return fam.stage("train", f"{backbone}-{_slug(ctx)}-s{seed}", key_cfg, fn, [fam.hist])


def _train_side_by_side(
    fam: _Family, backbone: str, ctx: Context, seeds: list[int], configs: list[Any], n: int
) -> list[StageResult]:
    """Every seed's training stage at once, each trained in a spawned process (train() seeds
    torch process-wide, and a forked child would inherit a CUDA context it cannot use); the
    first failure is raised once the others have ended (their stages are kept)."""
    with spawned_pool(n) as procs, ThreadPoolExecutor(n) as stages:

        def in_process(tc: Any) -> Callable[[Path], Any]:
            quiet = tc.model_copy(update={"progress": False})  # side-by-side bars interleave
            return lambda d: procs.submit(_train_in, quiet, d).result()

        futures = [
            stages.submit(_train_stage, fam, backbone, ctx, seed, tc, in_process(tc))
            for seed, tc in zip(seeds, configs, strict=True)
        ]
        return [f.result() for f in futures]  # waits for all (the pools' exit), then raises


# Fields added to the icrl.ad and MQL configs after stage keys were first written, with their
# defaults: at the default a key leaves them out, so runs made before they existed resume as
# they were.
_ADDED_LATER = {
    "action_token_noise_std": 0.0,
    "sample_noise": "gaussian",
    "adapt_every": 1,
    "action_target": "executed",
}


def _stage_key(config: Any, exclude: Any) -> dict[str, Any]:
    """An icrl.ad or MQL config as a stage key: its JSON dump without `exclude` and without the
    fields in `_ADDED_LATER` that hold their default."""
    key = config.model_dump(mode="json", exclude=exclude)
    return {k: v for k, v in key.items() if k not in _ADDED_LATER or v != _ADDED_LATER[k]}


def _train_fn(tc: Any) -> Callable[[Path], dict[str, Any]]:
    return lambda d: _train_in(tc, d)


def _train_in(tc: Any, d: Path) -> dict[str, Any]:
    """Train one model into the stage directory `d`; its summary for stage.json (module level:
    a spawned process runs it)."""
    result = train(tc, d / "run")
    model, meta = load_model(result.checkpoint, "cpu")
    params = sum(p.numel() for p in model.parameters())
    # a transformer's learned position table grows with the context: the report leaves it
    # out, as icrl.seqmodels counts the paper's sizes (and small's matched pair)
    positions = model.backbone.position_parameters()
    # Relative to the stage directory, so a run directory can move (another machine).
    checkpoint = str(Path(result.checkpoint).resolve().relative_to(d.resolve()))
    return {
        "checkpoint": checkpoint,
        "loss": result.loss,
        "params": params,
        "position_params": positions,
        # the episodes its context covers: the evaluation's count, known before it runs
        "context_episodes": int(meta["data"]["context_episodes"]),
    }


def _eval_fn(ec: Any, ckpts: list[Path]) -> Callable[[Path], dict[str, Any]]:
    def fn(d: Path) -> dict[str, Any]:
        res = evaluate(ec, ckpts, _fresh(d / "eval"))
        return {"references": res.references, "episodes": res.returns.shape[2]}

    return fn


def _seed_processes(device: str, seeds: list[int]) -> int:
    """Baseline seeds side by side on a GPU, which one seed's small updates leave mostly idle
    (MQL: 3 ReacherGoal seeds in 419 s on one H100, packages/baselines/README.md); one at a time
    on a CPU, where they would only share the cores. Not part of a stage key: a seed's results
    do not depend on it."""
    return len(seeds) if device.startswith("cuda") else 1


def _macaw(fam: _Family, episodes: int) -> Path:
    """MACAW, offline on the same histories, evaluated for the same episodes."""
    cfg, seeds = fam.cfg, P.seeds(fam.cfg)
    train_cfg, eval_cfg = P.macaw_configs(fam.family, fam.out.histories, Path("."), episodes, cfg)
    key = {
        "train": train_cfg.model_dump(mode="json", exclude={"histories", "run_dir"}),
        # where the episodes' actions are computed moves returns by float rounding only
        "eval": eval_cfg.model_dump(mode="json", exclude={"rollout_device"}),
        "seeds": seeds,
    }

    def fn(d: Path) -> dict[str, Any]:
        if (d / "eval").exists():  # evaluation is cheap: redo it whole after an interruption
            shutil.rmtree(d / "eval")
        tc = train_cfg.model_copy(update={"run_dir": d})
        procs = _seed_processes(train_cfg.device, seeds)
        run_macaw(tc, eval_cfg, d, seeds, progress=cfg.progress, processes=procs)
        return {}

    res = fam.stage("macaw", "", key, fn, [fam.hist])
    fam.out.wall["MACAW"] = res.wall_s
    if res.cached:
        fam.out.cached.add("MACAW")
    return res.path / "eval" / "returns.csv"


def _mql(fam: _Family, episodes: int) -> Path:
    """MQL, online on the same train tasks, evaluated for the same episodes."""
    seeds = P.seeds(fam.cfg)
    mc = P.mql_config(fam.family, episodes, fam.cfg)
    # (rollout_device: where the episodes' actions are computed moves returns by rounding only)
    key = {"config": _stage_key(mc, exclude={"rollout_device"}), "seeds": seeds}

    def fn(d: Path) -> dict[str, Any]:
        for stale in ("returns.csv", "curves.png"):  # an interrupted run's combined output
            (d / stale).unlink(missing_ok=True)
        procs = _seed_processes(mc.device, seeds)
        run_mql(mc, d, seeds, progress=fam.cfg.progress, processes=procs)
        return {}

    res = fam.stage("mql", "", key, fn, [])
    fam.out.wall["MQL"] = res.wall_s
    if res.cached:
        fam.out.cached.add("MQL")
    return res.path / "returns.csv"
