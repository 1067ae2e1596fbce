"""Typed configuration: source-algorithm hyper-parameters, per-family presets, GenerateConfig."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from icrl.histories import runtime

_MODEL = ConfigDict(use_attribute_docstrings=True, extra="forbid", frozen=True)
# A hidden layer's width: checked here so that a bad value is refused before any file is written.
_Width = Annotated[int, Field(ge=1)]


class _OffPolicyConfig(BaseModel):
    """Fields SAC and DroQ share (paper Tables 2 and 3 give the same values for both)."""

    model_config = _MODEL

    lr: float = Field(1e-4, ge=0)
    """Adam learning rate of actor, critics and entropy temperature (Tables 2-3); 0 freezes the
    nets (tests use it), a negative rate is refused here rather than by Adam inside a task."""
    batch_size: int = Field(256, ge=1)
    """Mini-batch size of each gradient step (Tables 2-3)."""
    gamma: float = Field(0.99, gt=0, le=1)
    """Discount factor (Tables 2-3)."""
    tau: float = Field(0.005, gt=0, le=1)
    """Polyak coefficient of the target critics (not in the paper; SB3/Tianshou default)."""
    buffer_size: int = Field(1_000_000, ge=1)
    """Replay buffer capacity in transitions (Tables 2-3)."""
    warmup_steps: int = Field(400, ge=0)
    """Env steps (summed over the parallel envs) of uniform random actions before learning."""
    hidden_sizes: tuple[_Width, ...] = (256, 256)
    """Hidden layers of actor and critics (not in the paper; SB3's / the DroQ paper's default)."""
    target_entropy: float | None = None
    """Entropy target of the automatic temperature; None means -action_dim."""
    init_alpha: float = Field(1.0, gt=0)
    """Initial entropy temperature α (Tianshou's default log α = 0, i.e. 1; not in the paper).
    With rewards of order 1 per step, α = 1 keeps the policy near-uniform for thousands of
    updates; a smaller start lets the source improve sooner."""


class SACConfig(_OffPolicyConfig):
    """Soft Actor-Critic (Tianshou `SAC`), paper Table 2; other values are SB3/Tianshou defaults."""

    kind: Literal["sac"] = "sac"
    """Discriminator."""
    gradient_steps: int = Field(1, ge=1)
    """Gradient steps per vector-env step (one transition from each env), SB3's convention."""


class DroQConfig(_OffPolicyConfig):
    """DroQ (Hiraoka et al. 2022) on Tianshou's REDQ: dropout + layer-norm critics, Table 3."""

    kind: Literal["droq"] = "droq"
    """Discriminator."""
    gradient_steps: int = Field(3, ge=1)
    """Critic gradient steps per vector-env step (Table 3: 3)."""
    policy_delay: int = Field(3, ge=1)
    """Critic steps per actor (and temperature) step (Table 3 'policy update freq.': 3)."""
    dropout: float = Field(0.01, ge=0, lt=1)
    """Dropout rate in the critics, active in the target critics too (DroQ paper: 0.01)."""
    n_critics: int = Field(2, ge=2)
    """Critic ensemble size; the target is the min over all of them (DroQ: 2)."""


class PPOConfig(BaseModel):
    """Proximal Policy Optimisation (Tianshou `PPO`), paper Table 1; other values SB3 defaults."""

    model_config = _MODEL

    kind: Literal["ppo"] = "ppo"
    """Discriminator."""
    lr: float = Field(1e-4, ge=0)
    """Adam learning rate (Table 1)."""
    steps_per_env: int = Field(500, ge=1)
    """Rollout length per env between updates (Table 1)."""
    epochs: int = Field(10, ge=1)
    """Passes over each rollout (Table 1)."""
    batch_size: int = Field(64, ge=1)
    """Mini-batch size (Table 1)."""
    gamma: float = Field(0.99, gt=0, le=1)
    """Discount factor (Table 1)."""
    gae_lambda: float = Field(0.95, ge=0, le=1)
    """GAE lambda (Table 1)."""
    clip: float = Field(0.2, gt=0)
    """Ratio clip epsilon (Table 1)."""
    vf_coef: float = Field(0.5, ge=0)
    """Value-loss coefficient (Table 1)."""
    ent_coef: float = Field(5e-3, ge=0)
    """Entropy coefficient (Table 1)."""
    max_grad_norm: float | None = Field(0.5, gt=0)
    """Gradient-norm clip (SB3 default)."""
    hidden_sizes: tuple[_Width, ...] = (64, 64)
    """Hidden layers of actor and critic, tanh activations (SB3's default MLP policy)."""


AlgorithmConfig = Annotated[SACConfig | PPOConfig | DroQConfig, Field(discriminator="kind")]

ALGORITHMS: dict[str, type[BaseModel]] = {"sac": SACConfig, "ppo": PPOConfig, "droq": DroQConfig}


class Preset(BaseModel):
    """The paper's source-algorithm settings for one family (Tables 1-5)."""

    model_config = _MODEL

    algorithm: AlgorithmConfig
    """Source algorithm and its hyper-parameters."""
    steps_per_task: int
    """Env steps per training task (Table 4), warm-up included."""
    k: int
    """Keep one episode of every k (Table 5)."""


PRESETS: dict[str, Preset] = {
    "ReacherGoal": Preset(algorithm=SACConfig(), steps_per_task=100_000, k=4),
    "PusherGoal": Preset(algorithm=PPOConfig(), steps_per_task=500_000, k=10),
    "HalfCheetahVel": Preset(algorithm=SACConfig(), steps_per_task=400_000, k=8),
    "AntDir": Preset(algorithm=DroQConfig(), steps_per_task=500_000, k=10),
    # The sanity family (not in the paper): small nets, a faster learning rate, 2 updates per
    # vector step and a low initial temperature, so that the source goes from the zero-action
    # level (-12) to about -6 within its 150 episodes; k = 2 keeps 75 of them (1,500 tokens).
    "PointGoal": Preset(
        algorithm=SACConfig(
            lr=1e-3,
            batch_size=128,
            hidden_sizes=(64, 64),
            warmup_steps=200,
            gradient_steps=2,
            init_alpha=0.05,
        ),
        steps_per_task=3_000,
        k=2,
    ),
}

# Fields that do not change what is written (a rerun may differ in them).
NON_IDENTITY_FIELDS = frozenset({"workers", "progress"})


# Std of Uniform[-1, 1]: the scale of NoiseDistillation's "gaussian" noise.
GAUSSIAN_NOISE_STD = 1.0 / np.sqrt(3.0)


class NoiseDistillation(BaseModel):
    """Record a noise-distilled history instead of the learning run (AD-epsilon; not the paper's
    recipe).

    After the source's learning run on a task, its final policy mu plays `episodes` more episodes
    with actions (1 - eps) * mu(s) + eps * u, u uniform over the action box (in the policy's
    [-1, 1] units), eps falling linearly from 1 (uniform random) at the first episode to 0 at the
    `anneal` fraction of them and 0 after: a synthetic learning history whose improvement is
    smooth and paced by the schedule, not by the learner (Zisman et al. 2023, "Emergence of
    in-context reinforcement learning from noise distillation"; Polubarov et al. 2025, Vintix,
    for continuous actions). These episodes are what the file keeps, all of them (k does not
    apply); `mean_action` records mu(s), the denoised action.
    """

    model_config = _MODEL

    episodes: int = Field(ge=2)
    """Noise-distilled episodes per task (the history's length; e.g. the context the AD model
    should cover). At least this many are recorded (n_envs play them in parallel)."""
    anneal: float = Field(0.8, gt=0, le=1)
    """Fraction of the episodes over which eps falls from 1 to 0; the rest play mu with eps 0."""
    noise: Literal["uniform", "gaussian"] = "uniform"
    """Shape of the noise blended in. "uniform" (AD-epsilon / Vintix): (1 - eps) * mu + eps * u,
    u ~ Uniform[-1, 1]^A, already inside the box since |mu| <= 1. "gaussian": (1 - eps) * mu +
    eps * sigma * z, z ~ N(0, 1)^A, sigma = 1/sqrt(3) (the uniform's std), so the mean
    (1 - eps) * mu and the variance match the uniform blend but the shape is the one a Gaussian
    action head models exactly (the uniform blend it fits in two moments only, so its sampled
    actions differ from the history's); clipped to [-1, 1] in the policy's units."""

    def epsilon(self, episode: np.ndarray) -> np.ndarray:
        """eps of each episode index (0-based, in the order the episodes start)."""
        span = max(1.0, self.anneal * (self.episodes - 1))
        return np.clip(1.0 - episode / span, 0.0, 1.0)

    def recorded(self) -> dict[str, Any]:
        """The settings as JSON data, without `noise` when it is "uniform" (the default), so files
        written before the field existed keep matching (config identity and task attributes)."""
        data = self.model_dump(mode="json")
        if data["noise"] == "uniform":
            del data["noise"]
        return data


class GenerateConfig(BaseModel):
    """Everything that decides a history file; missing algorithm/steps/k come from the preset."""

    model_config = _MODEL

    family: str
    """Task family, one of icrl.metaenvs.FAMILIES (e.g. "ReacherGoal")."""
    algorithm: AlgorithmConfig
    """Source algorithm and hyper-parameters; default: the family's preset (paper Tables 1-4)."""
    steps_per_task: int = Field(ge=1)
    """Env steps per task summed over the parallel envs, warm-up included; default: preset."""
    k: int = Field(ge=1)
    """Keep one episode of every k; default: the family's preset (paper Table 5)."""
    n_envs: int = Field(5, ge=1)
    """Parallel envs per task (paper: 5), all set to the same task."""
    seed: int = Field(0, ge=0)
    """Run seed; task i is trained with a seed derived from (seed, i) (numpy's SeedSequence,
    which takes non-negative integers only)."""
    tasks: int | None = Field(None, ge=1)
    """Number of tasks: the first n of the split; None: all of it (the test split has 10)."""
    split: Literal["train", "test"] = "train"
    """Which canonical task split to learn on: "train" (what AD is trained on) or "test" (held-out
    histories for `icrl.ad diagnose`; never train on them)."""
    workers: int = Field(1, ge=0)
    """Parallel worker processes (0: run in this process, for debugging and tests)."""
    backend: Literal["tianshou", "batched"] = "tianshou"
    """Learner backend (recorded in the file): "tianshou" runs one Tianshou learner per task and
    process; "batched" trains all tasks at once on `device` (see the batched sub-package), with
    `workers` env worker processes (0: envs stepped in the driver)."""
    device: str = "cpu"
    """Torch device of the learner. Batched backend: "cuda" splits the tasks over every visible
    GPU, one process each; "cuda:0,cuda:1" over those; "cuda:1" or "cpu" uses that one device."""
    progress: bool = True
    """Show a progress bar (tasks done, env-steps/s, ETA)."""
    noise_distillation: NoiseDistillation | None = None
    """None (the paper's recipe): the file keeps every k-th episode of the source's learning run.
    Set: it keeps a noise-distilled history of the source's final policy instead (batched
    backend only; see NoiseDistillation)."""

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        family = data.get("family")
        if family not in PRESETS:
            raise ValueError(f"family must be one of {sorted(PRESETS)}, got {family!r}")
        preset = PRESETS[family]
        data = dict(data)
        algo = data.get("algorithm")
        if algo is None:
            data["algorithm"] = preset.algorithm
        elif isinstance(algo, str):
            if algo not in ALGORITHMS:
                raise ValueError(f"algorithm must be one of {sorted(ALGORITHMS)}, got {algo!r}")
            data["algorithm"] = ALGORITHMS[algo]()
        data.setdefault("steps_per_task", preset.steps_per_task)
        data.setdefault("k", preset.k)
        return data

    @model_validator(mode="after")
    def _check_steps(self) -> GenerateConfig:
        algo = self.algorithm
        unit = self.n_envs * (algo.steps_per_env if isinstance(algo, PPOConfig) else 1)
        warm = getattr(algo, "warmup_steps", 0)
        if warm % self.n_envs:
            raise ValueError(
                f"algorithm.warmup_steps ({warm}) must be a multiple of n_envs ({self.n_envs})"
            )
        if (self.steps_per_task - warm) % unit or self.steps_per_task <= warm:
            raise ValueError(
                f"steps_per_task ({self.steps_per_task}) minus warm-up ({warm}) must be a positive "
                f"multiple of {unit} (n_envs"
                + (" x algorithm.steps_per_env)" if isinstance(algo, PPOConfig) else ")")
            )
        self._check_one_episode(unit, warm)
        if self.noise_distillation is not None and self.backend != "batched":
            raise ValueError(
                "noise_distillation needs backend='batched' (the tianshou backend records the "
                "learning run only); add --backend batched"
            )
        return self

    def _check_one_episode(self, unit: int, warm: int) -> None:
        """Refuse a run too short for any episode to finish: its history would be empty.

        The n_envs envs share steps_per_task and all start together, so one episode finishes
        only once each env has taken the family's episode length of steps."""
        from icrl.metaenvs import episode_length

        length = episode_length(self.family)
        need = self.n_envs * length
        if self.steps_per_task >= need:
            return
        smallest = warm + max(1, -(-(need - warm) // unit)) * unit  # the next valid value
        raise ValueError(
            f"steps_per_task (--steps) {self.steps_per_task} is less than one episode: "
            f"{self.family} episodes are {length} steps, and the {self.n_envs} parallel envs "
            f"share the steps ({self.steps_per_task // self.n_envs} each), so no episode would "
            f"finish and the history would be empty; use at least {smallest}"
        )

    def identity(self) -> dict[str, Any]:
        """The fields that decide the file's content (all but workers/progress), as JSON data."""
        ident = self.model_dump(mode="json", exclude=set(NON_IDENTITY_FIELDS))
        if self.noise_distillation is None:  # files written before the field existed match
            del ident["noise_distillation"]
        else:  # likewise for its `noise` field at the default
            ident["noise_distillation"] = self.noise_distillation.recorded()
        return ident


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable list of the fields where two config dumps differ (runtime.config_changes;
    every identity field counts: `identity()` already leaves out those that may change)."""
    # "<absent>": a field one side lacks is a difference here, even against a None value
    changes = runtime.config_changes(old, new, absent="<absent>")
    return [runtime.describe_changes([c]) for c in changes]
