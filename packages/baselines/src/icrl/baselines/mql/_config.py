"""Typed configuration of MQL and its presets (official hyper-parameters, AD's data volume)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from icrl.histories import PRESETS
from icrl.metaenvs import PAPER_FAMILIES, train_count

# Env steps of AD's source data per family: train tasks × steps per task (paper, Table 4), read
# from where those facts live (metaenvs' train split, histories' presets).
AD_DATA_VOLUME = {f: train_count(f) * PRESETS[f].steps_per_task for f in PAPER_FAMILIES}

PresetSize = Literal["tiny", "small", "paper"]


class MQLConfig(BaseModel):
    """Meta-Q-Learning (Fakoor et al., ICLR 2020): meta-training and test-time adaptation.

    Defaults are the official cheetah-vel values (``run_script.py`` of
    amazon-research/meta-q-learning); :func:`mql_preset` gives the per-family presets.
    """

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid", frozen=True)

    family: str = "ReacherGoal"
    """Meta-task family of ``icrl.metaenvs`` (ReacherGoal, PusherGoal, HalfCheetahVel, AntDir)."""
    n_train_tasks: int | None = Field(default=None, ge=1)
    """Number of canonical train tasks (``metaenvs.train_tasks(family, n)``); None: the default."""
    n_test_tasks: int = Field(default=10, ge=1)
    """Number of canonical test tasks (``metaenvs.test_tasks(family, n)``) to adapt to."""
    seed: int = 0
    """Seed of this run (networks, exploration, task sampling, env resets)."""
    device: str = "auto"
    """Torch device; "auto" picks CUDA when available, else CPU."""

    # -- meta-training budget and data collection ------------------------------------------
    total_env_steps: int = Field(default=5_000_000, ge=1)
    """Env steps of meta-training; official default 5e6, the presets match AD's data volume."""
    burn_in: int = Field(default=10_000, ge=0)
    """Env steps of uniform random actions before the policy acts and learns (official 1e4)."""
    envs_per_iter: int = Field(default=5, ge=1)
    """Episodes collected side by side per iteration, on train tasks drawn with replacement."""
    utd_ratio: float = Field(default=1.0, gt=0)
    """Gradient updates per collected env step (the official schedule gives about 1)."""
    replay_size: int = Field(default=1_000_000, ge=1)
    """Capacity of the shared multi-task replay buffer."""
    snapshot_size: int = Field(default=2000, ge=1)
    """Last transitions kept per train task for the propensity classifier (official 2000)."""

    # -- TD3 ---------------------------------------------------------------------------------
    lr: float = Field(default=1e-3, gt=0)
    """Adam learning rate of actor and critic during meta-training (cheetah 1e-3, ant 3e-4)."""
    batch_size: int = Field(default=256, ge=1)
    """Minibatch size of a TD3 update."""
    gamma: float = Field(default=0.99, gt=0, le=1)
    """Discount factor."""
    tau: float = Field(default=0.005, gt=0, le=1)
    """Polyak rate of the target networks."""
    hidden: tuple[int, ...] = (300, 300)
    """Hidden widths of the actor and each Q head."""
    gru_hidden: int = Field(default=15, ge=1)
    """Hidden size of each context GRU (cheetah 15, ant 30)."""
    hist_len: int = Field(default=20, ge=1)
    """History length H: the context sees the last H (action, reward, observation) tuples."""
    expl_noise: float = Field(default=0.3, ge=0)
    """Std of the Gaussian exploration noise on actions in [-1, 1]."""
    policy_noise: float = Field(default=0.3, ge=0)
    """Std of the target-policy smoothing noise."""
    noise_clip: float = Field(default=0.5, ge=0)
    """Clip of the target-policy smoothing noise."""
    policy_freq: int = Field(default=2, ge=1)
    """Critic updates per actor (and target) update."""

    # -- test-time adaptation ------------------------------------------------------------------
    adapt_rounds: int = Field(default=10, ge=0)
    """Episodes after the first per test task (the evaluation has adapt_rounds + 1 episodes);
    the policy is adapted before each of them, or before every adapt_every-th."""
    adapt_every: int = Field(default=1, ge=1)
    """Adapt before episode r >= 1 only when r - 1 is a multiple of this; the episodes between
    play the last adapted policy (and join the task's data, as every episode does). 1 (default:
    the protocol so far) adapts before every episode; a long evaluation pays one adaptation
    (~3.5 s on an H100 at HalfCheetahVel size) per adapt_every episodes instead of per episode."""
    adapt_lr: float = Field(default=1e-3, gt=0)
    """Adam learning rate of adaptation (the official code re-creates Adam at its default 1e-3)."""
    csc_c: float = Field(default=0.1, gt=0)
    """Inverse L2 strength C of the logistic propensity classifier (cheetah 0.1, ant 0.05)."""
    beta_clip: float = Field(default=1.0, ge=0)
    """Importance weights are capped at exp(beta_clip) (cheetah 1.0, ant 1.2)."""
    snap_iters: int = Field(default=10, ge=0)
    """Phase A: TD3 updates on the new task's data, batch = all of it (cheetah 10, ant 5)."""
    main_snap_iters: int = Field(default=100, ge=0)
    """Phase B: weighted TD3 updates on the meta replay buffer (cheetah 100, ant 400)."""
    sample_mult: int = Field(default=5, ge=1)
    """Phase B batch is sample_mult × batch_size."""
    prox_coef: float = Field(default=0.1, ge=0)
    """Fixed weight λ of the proximal penalty λ‖θ − θ_meta‖² (the official code's default)."""
    use_ess_prox: bool = False
    """Use the paper's λ = 1 − ESS of the batch's weights instead of prox_coef."""

    # -- bookkeeping ---------------------------------------------------------------------------
    cuda_graphs: bool = True
    """On CUDA, replay meta-training updates as captured CUDA graphs (same math, ~5x faster)."""
    checkpoint_every: int = Field(default=100_000, ge=1)
    """Env steps between checkpoints (model, optimisers, replay, RNG), for resume."""
    rollout_device: Literal["cpu", "model"] = "cpu"
    """Where evaluation episodes pick their actions: "cpu" (a copy of the actor, taken after
    each adaptation) or "model" (the device it trains and adapts on). An episode steps one
    observation at a time, which leaves a GPU bound by kernel launches, and the seeds side by
    side time-share it: the CPU copy is the faster one (packages/baselines/README.md)."""

    @model_validator(mode="after")
    def _check(self) -> MQLConfig:
        if self.family not in AD_DATA_VOLUME:
            raise ValueError(
                f"MQLConfig.family: unknown family {self.family!r}; expected one of "
                f"{sorted(AD_DATA_VOLUME)}"
            )
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"MQLConfig.hidden: need >= 1 positive widths, got {self.hidden}")
        return self


def mql_preset(family: str, size: PresetSize = "paper", **overrides: object) -> MQLConfig:
    """The MQL config for `family` at a preset size, with field `overrides` applied.

    - ``paper``: official hyper-parameters (ant-dir's for AntDir, cheetah-vel's otherwise) and
      ``total_env_steps`` = AD's source data volume for the family (train tasks × steps per task,
      paper Table 4), so MQL sees as many env steps as the histories AD learns from.
    - ``small``: same hyper-parameters, 1/20 of that budget (a GPU hour or less).
    - ``tiny``: a CPU smoke run: tiny networks, a few thousand steps, 2 adaptation rounds.
    """
    if family not in AD_DATA_VOLUME:
        raise ValueError(
            f"mql_preset: unknown family {family!r}; expected {sorted(AD_DATA_VOLUME)}"
        )
    base: dict[str, object] = {"family": family, "total_env_steps": AD_DATA_VOLUME[family]}
    if family == "AntDir":
        base.update(
            lr=3e-4,
            gru_hidden=30,
            hist_len=25,
            expl_noise=0.2,
            policy_noise=0.4,
            policy_freq=4,
            csc_c=0.05,
            beta_clip=1.2,
            snap_iters=5,
            main_snap_iters=400,
        )
    if size == "small":
        base["total_env_steps"] = AD_DATA_VOLUME[family] // 20
    elif size == "tiny":
        base.update(
            n_train_tasks=4,
            n_test_tasks=2,
            total_env_steps=1_200,
            burn_in=400,
            envs_per_iter=4,
            utd_ratio=0.25,
            replay_size=5_000,
            snapshot_size=500,
            hidden=(32, 32),
            gru_hidden=8,
            hist_len=5,
            batch_size=64,
            adapt_rounds=2,
            snap_iters=4,
            main_snap_iters=8,
            sample_mult=2,
            checkpoint_every=1_000,
        )
    elif size != "paper":
        raise ValueError(f"mql_preset: size must be tiny, small or paper, got {size!r}")
    base.update(overrides)
    return MQLConfig(**base)
