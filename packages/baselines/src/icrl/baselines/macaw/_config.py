"""Typed configuration of MACAW: the algorithm, a training run and an evaluation.

Defaults are the official ones (``eric-mitchell/macaw`` ``config/alg/standard.json`` and
``src/args.py``; see ``shared/research/baselines.md`` §2.5) unless a field says otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class MacawConfig(BaseModel):
    """MACAW's networks and losses (official defaults)."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid", frozen=True)

    hidden_sizes: tuple[int, ...] = (100, 100, 100)
    """Hidden widths of the value and policy MLPs (official 3 × 100)."""
    weight_transform: bool = True
    """Use weight-transform (WLinear) layers everywhere (official ``wlinear=true``)."""
    latent_dim: int = Field(100, ge=1)
    """Latent size of each WLinear layer (hard-coded 100 in the official code)."""
    advantage_head: tuple[int, ...] | None = (32,)
    """Hidden widths of the policy's advantage head (official ``[32, 1]``); None disables it."""
    action_sigma: float = Field(0.2, gt=0)
    """Fixed standard deviation of the Gaussian policy, in normalised action units."""
    gamma: float = Field(0.99, ge=0, le=1)
    """Discount for the Monte-Carlo returns and the terminal bootstrap."""
    value_lr: float = Field(1e-5, gt=0)
    """Outer (Adam) learning rate of the value function."""
    policy_lr: float = Field(1e-4, gt=0)
    """Outer (Adam) learning rate of the policy."""
    lr_lr: float = Field(1e-3, gt=0)
    """Adam learning rate of the learned inner learning rates and advantage coefficient."""
    inner_value_lr: float = Field(1e-3, gt=0)
    """Initial inner learning rate of every value tensor (stored as log(lr), used via softplus)."""
    inner_policy_lr: float = Field(1e-3, gt=0)
    """Initial inner learning rate of every policy tensor (stored as log(lr), used via softplus)."""
    advantage_head_coef: float = Field(0.01, gt=0)
    """Initial weight of the advantage-regression loss (learned, used via softplus(log c))."""
    batch_size: int = Field(256, ge=1)
    """Outer (meta) batch: uniform rows of the task buffer."""
    inner_batch_size: int = Field(256, ge=1)
    """Inner (adaptation) batch during meta-training."""
    contiguous_inner: bool = True
    """Inner batch is consecutive rows of the buffer (official ``contiguous``)."""
    task_batch_size: int = Field(5, ge=1)
    """Train tasks per meta-step (sampled without replacement)."""
    target_value_alpha: float = Field(0.9, ge=0, le=1)
    """Target value after the inner step: ``φ̄ = α φ + (1−α) φ'`` (official ``target_vf_alpha``)."""
    exp_advantage_clip: float = Field(20.0, gt=1)
    """AWR weights are ``exp(min(Ã, log clip))``."""
    temperature: float = Field(1.0, gt=0)
    """AWR temperature applied to the normalised advantages."""
    advantage_eps: float = Field(1e-8, gt=0)
    """Added to the advantage std before normalising (the official code has none and can NaN)."""
    transition_skip: int = Field(7, ge=1)
    """Keep every k-th transition of each task's history (official ``buffer_skip = 7``)."""
    official_terminal_bootstrap: bool = False
    """Bootstrap V(s_T) even after a true termination, as the official code does (default: not)."""


class MacawTrainConfig(BaseModel):
    """One MACAW meta-training run (one seed) on a histories file."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid", frozen=True)

    histories: Path | None = None
    """HDF5 learning-histories file (``icrl.histories``) holding the train tasks (None only when
    the caller passes in-memory buffers to `train_macaw`)."""
    run_dir: Path
    """Output folder: resolved config, checkpoint, metrics; resumed when it holds a checkpoint."""
    tasks: tuple[str, ...] | None = None
    """Task names in the file to train on; None takes every task in the file."""
    algo: MacawConfig = MacawConfig()
    """Algorithm hyper-parameters."""
    steps: int = Field(1000, ge=1)
    """Meta-training steps (official default 1e6; its published checkpoints used 5e5–6.5e5)."""
    seed: int = 0
    """Training seed (networks, task and batch sampling)."""
    device: str = "cpu"
    """Torch device: 'cpu', 'cuda', 'cuda:1' or 'auto'."""
    checkpoint_every: int = Field(500, ge=1)
    """Write the checkpoint (atomically) every this many steps and at the end."""
    log_every: int = Field(50, ge=1)
    """Record losses and learned rates in ``metrics.csv`` every this many steps."""


class MacawEvalConfig(BaseModel):
    """In-context-style evaluation of trained MACAW runs on unseen test tasks."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid", frozen=True)

    family: str | None = None
    """Env family; None takes the family recorded by the training run."""
    n_test_tasks: int = Field(10, ge=1)
    """Number of canonical test tasks (``icrl.metaenvs.test_tasks(family, n)``)."""
    episodes: int = Field(10, ge=1)
    """Episodes per test task; episode 0 is always the un-adapted meta-policy."""
    adaptation: Literal["online", "offline"] = "online"
    """'online': the canonical test tasks; before episode e ≥ 1, adapt (from the meta-parameters)
    on the e episodes collected so far on the task. 'offline': the official protocol on the tasks
    of `test_histories`; adapt once on a batch of the task's own learning history and run
    episodes 1.. with that policy."""
    test_histories: Path | None = None
    """Histories file of held-out tasks (for ``adaptation='offline'``); its first
    `n_test_tasks` tasks are evaluated."""
    allow_train_tasks: bool = False
    """Let offline evaluation use tasks the run was trained on (smoke tests only)."""
    adapt_batch_size: int = Field(256, ge=1)
    """Transitions per adaptation batch (official ``eval_batch_size``); all if fewer exist."""
    adapt_steps: int = Field(1, ge=1)
    """Inner steps at test time (official ``maml_steps = 1``); more re-use the same batch."""
    explore_sigma: float = Field(0.2, ge=0)
    """Gaussian action noise (normalised units) of the evaluated episodes; 0 = mean action.
    Online adaptation needs noise: on its own noiseless actions the AWR gradient is zero."""
    method: str = "MACAW"
    """Value of the ``method`` column in the results CSV."""
    seed: int = 0
    """Evaluation seed (env resets, exploration noise, batch sampling), offset per run."""
    device: str = "cpu"
    """Torch device for evaluation (the adaptations)."""
    rollout_device: Literal["cpu", "model"] = "cpu"
    """Where episodes pick their actions: "cpu" (a copy of the policy and its adapted
    parameters) or "model" (`device`). An episode steps one observation at a time, which leaves
    a GPU bound by kernel launches, and the seeds side by side time-share it: the CPU copy is
    the faster one (packages/baselines/README.md)."""
