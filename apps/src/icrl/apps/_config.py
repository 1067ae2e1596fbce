"""The reproduce command's configuration: what to run, with per-stage overrides of the preset.

Every field is a CLI flag (``--ad.max_steps 500``) and a TOML key (``[ad] max_steps = 500``);
a field left unset takes the preset's value (see ``_presets.py``). The resolved per-stage configs
are saved in the run directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from icrl.metaenvs import PAPER_FAMILIES

_OPTS = ConfigDict(use_attribute_docstrings=True, extra="forbid")
PresetName = Literal["tiny", "small", "paper"]


def _context(spec: Any) -> Any:
    """A context spec ("full", "episodes:4", "window:800") -> icrl.ad's typed value: parsed once,
    here at the edge; the stages get the value."""
    # icrl.ad loads torch: imported when a context is given, so that --help stays light.
    from icrl.ad import EpisodesContext, FullContext, WindowContext, parse_context

    if isinstance(spec, FullContext | EpisodesContext | WindowContext):
        return spec  # a config built in Python
    if not isinstance(spec, str):
        raise ValueError(f"context {spec!r} is not a spec such as 'full' or 'episodes:4'")
    return parse_context(spec)


def _noise_distillation(value: Any) -> Any:
    """JSON data ({"episodes": 250}) -> icrl.histories.NoiseDistillation, validated by that class
    itself, so every field it has (or gains) is accepted and checked there."""
    # icrl.histories loads torch: imported when the field is given, so that --help stays light.
    from icrl.histories import NoiseDistillation

    if isinstance(value, NoiseDistillation):
        return value  # a config built in Python
    return NoiseDistillation.model_validate(value)


def _dump_noise_distillation(value: Any) -> dict[str, Any]:
    return value.model_dump(mode="json")


if TYPE_CHECKING:
    from icrl.ad import Context as ContextSpec
    from icrl.histories import NoiseDistillation as NoiseDistillationSpec
else:
    # Spelled as text on the command line, in TOML and in the saved config ("episodes:4").
    ContextSpec = Annotated[str, PlainValidator(_context), PlainSerializer(str, return_type=str)]
    # A JSON object on the command line ('{"episodes": 250}'), a table in TOML; the value is an
    # icrl.histories.NoiseDistillation.
    NoiseDistillationSpec = Annotated[
        dict[str, Any],
        PlainValidator(_noise_distillation),
        PlainSerializer(_dump_noise_distillation, return_type=dict[str, Any]),
    ]


class HistoriesOptions(BaseModel):
    """Learning-history generation (icrl.histories); unset fields come from the preset."""

    model_config = _OPTS

    tasks: int | None = Field(None, ge=1)
    """Number of train tasks (the first n of the canonical split); paper: 70/35/15/30."""
    steps_per_task: int | None = Field(None, ge=1)
    """Source-RL env steps per task, warm-up included (paper Table 4)."""
    k: int | None = Field(None, ge=1)
    """Keep one episode of every k (paper Table 5)."""
    n_envs: int | None = Field(None, ge=1)
    """Parallel envs per task (paper: 5)."""
    hidden_sizes: tuple[int, ...] | None = None
    """Hidden layers of the source algorithm's networks."""
    batch_size: int | None = Field(None, ge=1)
    """Source algorithm's mini-batch size."""
    workers: int | None = Field(None, ge=0)
    """Worker processes: one task each at a time (tianshou backend), or env-stepping processes
    (batched backend). Default: sized to this machine (every core; batched: all but the one
    that drives the learners)."""
    device: str | None = None
    """Torch device of the source learners; default: "cuda" for the batched backend on a GPU
    machine, else "cpu"."""
    backend: Literal["auto", "tianshou", "batched"] = "auto"
    """Learner backend. "batched" trains every task's learner at once on one device (on an H200:
    ~40k env-steps/s, ~55x "tianshou" on 16 cores); "tianshou" runs one Tianshou learner per task
    and process; "auto": batched where CUDA is available, else tianshou. Both write the same
    file format, but not the same numbers (different random streams)."""
    gradient_steps: int | None = Field(None, ge=1)
    """SAC/DroQ updates per vector step of n_envs envs. Paper SAC: 1 (0.2 per transition); the
    small preset uses 5 for SAC families (one per transition at the default 5 envs: a source
    strong enough for AD to distil, docs/results/ReacherGoal/icrl-record; with other n_envs set
    this too). Not a PPO field."""
    init_alpha: float | None = Field(None, gt=0)
    """SAC/DroQ initial entropy temperature (paper: 1.0; small preset, SAC families: 0.1)."""
    noise_distillation: NoiseDistillationSpec | None = None
    """Not the paper's recipe. None (the paper's): the histories are the source's learning runs,
    every k-th episode kept. Set, as JSON of icrl.histories.NoiseDistillation's fields, e.g.
    '{"episodes": 250}' (also "anneal", "noise"): after its learning run on a task the source's
    final policy plays that many episodes with noise annealed from uniform-random to none, and
    those are the history (k does not apply). Needs the batched backend (--histories.backend
    batched; it also runs on a CPU). The recipe of AD's first in-context gain on HalfCheetahVel,
    with --ad.overrides '["model.action_head=gaussian"]' and --evaluate.sample false:
    docs/results/HalfCheetahVel/icrl-record/report.md, "Fourth window"."""


class ADOptions(BaseModel):
    """AD training (icrl.ad); unset fields come from the preset."""

    model_config = _OPTS

    max_steps: int | None = Field(None, ge=1)
    """Optimizer steps per model (replaces the preset's epochs)."""
    epochs: float | None = Field(None, gt=0)
    """Passes over the training contexts (paper: 450); replaces max_steps."""
    batch_size: int | None = Field(None, ge=1)
    """Contexts per optimizer step."""
    lr: float | None = Field(None, gt=0)
    """Peak learning rate of the cosine schedule."""
    d_model: int | None = Field(None, ge=1)
    """Backbone width (both backbones)."""
    n_layers: int | None = Field(None, ge=1)
    """Backbone depth (both backbones)."""
    device: str | None = None
    """Training device: auto, cpu, cuda."""
    seed_processes: int = Field(1, ge=1)
    """A model's seeds trained side by side in up to this many spawned processes (1: one after
    the other). On a GPU a `small` model's steps leave it mostly idle, so seeds side by side may
    finish in about the time of one (not yet measured there; 12M models gained nothing). Their
    progress bars are off; the report says so, its training rows then the longest seed's. A seed's
    model is the same either way (not part of a stage key)."""
    overrides: list[str] = []
    """Extra icrl.ad TrainConfig overrides as "section.field=value" strings."""


class EvalOptions(BaseModel):
    """In-context evaluation on unseen test tasks (AD, MACAW and MQL alike)."""

    model_config = _OPTS

    n_tasks: int | None = Field(None, ge=1)
    """Unseen test tasks per family (paper: 10)."""
    episodes: int | None = Field(None, ge=1)
    """In-context episodes per rollout; default: what the full-history context covers."""
    device: str | None = None
    """Evaluation device: auto, cpu, cuda."""
    sample: bool | None = None
    """AD's action rule (icrl.ad.EvalConfig.sample). None: sample a Gaussian action head's
    distribution (an MSE head has nothing to sample and acts with its prediction); false: act with
    the Gaussian's mean, as the noise-distilled HalfCheetahVel result does
    (docs/results/HalfCheetahVel/icrl-record/report.md, "Fourth window"); true: sample, and
    refuse an MSE head. MACAW and MQL act by their own rules."""


class MacawOptions(BaseModel):
    """MACAW baseline (offline, on the same histories)."""

    model_config = _OPTS

    enabled: bool = True
    """Run MACAW."""
    steps: int | None = Field(None, ge=1)
    """Meta-training steps per seed."""


class MQLOptions(BaseModel):
    """MQL baseline (online, on the same train tasks)."""

    model_config = _OPTS

    enabled: bool = True
    """Run MQL."""
    total_env_steps: int | None = Field(None, ge=1)
    """Meta-training env steps per seed (preset: AD's data volume, scaled by the preset)."""


class ReproduceConfig(BaseSettings):
    """Reproduce 'Scaling Algorithm Distillation for Continuous Control with Mamba'. Stages, per
    family: (1) histories: source RL (SAC/PPO/DroQ) learning runs, k-downsampled, in HDF5;
    (2) train: AD-Mamba and AD-transformer, every context and seed; (3) evaluate: each model in
    context on unseen test tasks, no gradient step; (4) baselines: MACAW (offline, same
    histories) and MQL (online, same train tasks); (5) report: Fig. 1, Fig. 2 and report.md.
    Each stage is cached by the hash of its resolved config: a rerun skips finished stages and
    resumes an interrupted one. Presets: tiny (CPU, minutes: plumbing, not science), small (one
    GPU, meant to fit 25 minutes per family; ReacherGoal measured: 22.7 min on one H200), paper
    (Tables 4-7).
    Every field below overrides the preset."""

    model_config = SettingsConfigDict(
        use_attribute_docstrings=True,
        extra="forbid",
        cli_parse_args=False,
        cli_prog_name="reproduce.py",
        cli_kebab_case=False,
        cli_implicit_flags=True,
        cli_use_class_docs_for_groups=True,
        env_prefix="ICRL_",
    )

    preset: PresetName = "tiny"
    """Budget preset: tiny (CPU, minutes, plumbing only), small (one GPU, meant for
    25 minutes per family; ReacherGoal: 22.7 min on one H200), paper (the paper's Tables 4-7)."""
    families: list[str] = ["ReacherGoal"]
    """Env families to run (ReacherGoal, PusherGoal, HalfCheetahVel, AntDir)."""
    out: Path = Path("runs/reproduce")
    """Run directory (stages, figures, report). Reusing it resumes and skips finished stages."""
    config: Path | None = None
    """A TOML file of these same fields (CLI flags win over it)."""
    seeds: list[int] | None = None
    """Training seeds of every method (paper: 3)."""
    backbones: list[Literal["mamba", "transformer"]] = ["mamba", "transformer"]
    """AD backbones to train."""
    contexts: list[ContextSpec] | None = None
    """AD-Mamba training contexts for Fig. 2: "full", "episodes:N" or "window:C"; the first
    is the one compared in Fig. 1 (and the transformer's)."""
    histories: HistoriesOptions = HistoriesOptions()
    """Learning-history generation."""
    ad: ADOptions = ADOptions()
    """AD training."""
    evaluate: EvalOptions = EvalOptions()
    """In-context evaluation."""
    macaw: MacawOptions = MacawOptions()
    """MACAW baseline."""
    mql: MQLOptions = MQLOptions()
    """MQL baseline."""
    baselines_beside_ad: bool = True
    """On a GPU (MACAW's and MQL's seeds in processes of their own), start both baselines right
    after the histories, beside the AD stages, instead of after them: their small updates leave
    the GPU mostly idle, so a family takes about the longer of the two rather than their sum.
    Their episode count is then read from the histories, as the first AD training counts it.
    Not part of any stage key: no result depends on it."""
    progress: bool = True
    """Show progress bars."""
    show_preset: PresetName | None = None
    """Print what a preset sets -- every stage's resolved config for --families, with the other
    flags applied -- and exit without running anything (also spelled --show-preset)."""

    @field_validator("families")
    @classmethod
    def _known_families(cls, value: list[str]) -> list[str]:
        # The paper's pipeline (baselines, presets) exists for the paper's families; the sanity
        # family PointGoal is run with icrl.histories / icrl.ad directly.
        unknown = [f for f in value if f not in PAPER_FAMILIES]
        if unknown or not value:
            raise ValueError(
                f"unknown env family {unknown}; choose from {list(PAPER_FAMILIES)} (PointGoal, "
                "the sanity family, runs with python -m icrl.histories / icrl.ad)"
            )
        return value
