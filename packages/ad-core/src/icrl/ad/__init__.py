"""Algorithm Distillation: train a sequence model on learning histories, evaluate it in context.

One token per step holds the previous transition (s, a, r, s') and the current observation with an
episode-start flag; the model (a Mamba or transformer backbone from icrl.seqmodels) predicts the
source algorithm's action with an MSE loss (paper Eq. 6). The evaluator runs the trained model on
unseen test tasks of icrl.metaenvs with no gradient step, one batched model `step` per env step.

    from icrl.ad import EvalConfig, evaluate, preset, train
    cfg = preset("ReacherGoal", "mamba", "tiny", histories="reacher.h5")
    result = train(cfg, "runs/reacher-s0")
    evaluate(EvalConfig(n_tasks=10), [result.checkpoint], "runs/reacher-eval")

`diagnose` probes why a trained model does or does not learn in context (teacher-forced error vs
the source's noise floor, reward ablations, prompted rollouts, train vs test tasks, sampling).

Command line: ``python -m icrl.ad train|evaluate|diagnose|preset --help``.
"""

from icrl.ad._checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, load_model
from icrl.ad._config import (
    ADConfig,
    ConfigError,
    DataConfig,
    EvalConfig,
    OptimConfig,
    TrainConfig,
    apply_overrides,
    load_config_file,
)
from icrl.ad._context import Context, EpisodesContext, FullContext, WindowContext, parse_context
from icrl.ad._data import ContextDataset, DataInfo, StepBatchSampler, collate_contexts
from icrl.ad._diagnose import DIAGNOSE_PARTS, DiagnoseConfig, DiagnoseResult, diagnose
from icrl.ad._evaluate import EvalResult, evaluate, rollout, source_curve
from icrl.ad._lock import DirectoryInUseError, DirLock
from icrl.ad._model import ADModel, NormStats, compute_norm_stats
from icrl.ad._presets import PAPER_SIZES, PAPER_TABLE, SIZES, preset, preset_dict
from icrl.ad._results import (
    CSV_COLUMNS,
    mean_ci,
    method_summary,
    plot_curves,
    read_results,
    reference_summary,
    write_results,
)
from icrl.ad._tokens import TokenBuilder, TokenLayout, history_tokens
from icrl.ad._train import NonFiniteLossError, RunDirError, TrainResult, resolve_device, train

__all__ = [
    "CSV_COLUMNS",
    "DIAGNOSE_PARTS",
    "PAPER_SIZES",
    "PAPER_TABLE",
    "SIZES",
    "ADConfig",
    "ADModel",
    "CheckpointError",
    "ConfigError",
    "Context",
    "ContextDataset",
    "DataConfig",
    "DataInfo",
    "DiagnoseConfig",
    "DiagnoseResult",
    "DirLock",
    "DirectoryInUseError",
    "EpisodesContext",
    "EvalConfig",
    "EvalResult",
    "FullContext",
    "NonFiniteLossError",
    "NormStats",
    "OptimConfig",
    "RunDirError",
    "StepBatchSampler",
    "TokenBuilder",
    "TokenLayout",
    "TrainConfig",
    "TrainResult",
    "WindowContext",
    "apply_overrides",
    "collate_contexts",
    "compute_norm_stats",
    "diagnose",
    "evaluate",
    "history_tokens",
    "latest_checkpoint",
    "load_checkpoint",
    "load_config_file",
    "load_model",
    "mean_ci",
    "method_summary",
    "parse_context",
    "plot_curves",
    "preset",
    "preset_dict",
    "read_results",
    "reference_summary",
    "resolve_device",
    "rollout",
    "source_curve",
    "train",
    "write_results",
]
