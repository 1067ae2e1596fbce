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

from icrl.ad._checkpoint import CheckpointError, latest_checkpoint, load_model
from icrl.ad._config import (
    ADConfig,
    ConfigError,
    DataConfig,
    EvalConfig,
    OptimConfig,
    TrainConfig,
)
from icrl.ad._context import Context, EpisodesContext, FullContext, WindowContext, parse_context
from icrl.ad._data import ContextDataset
from icrl.ad._diagnose import DiagnoseConfig, DiagnoseResult, diagnose
from icrl.ad._evaluate import EvalResult, evaluate
from icrl.ad._lock import DirectoryInUseError
from icrl.ad._presets import PAPER_SIZES, PAPER_TABLE, SIZES, preset, preset_dict
from icrl.ad._results import method_summary, plot_curves, read_results
from icrl.ad._tokens import TokenLayout, history_tokens
from icrl.ad._train import NonFiniteLossError, RunDirError, TrainResult, train

# What a user calls. Internals (the data pipeline's sampler and collate, the model class and its
# normalisation, the evaluator's rollout and token builder, results writers and statistics, the
# run-directory lock, device and config-file helpers) are imported from their modules.
__all__ = [
    "PAPER_SIZES",
    "PAPER_TABLE",
    "SIZES",
    "ADConfig",
    "CheckpointError",
    "ConfigError",
    "Context",
    "ContextDataset",
    "DataConfig",
    "DiagnoseConfig",
    "DiagnoseResult",
    "DirectoryInUseError",
    "EpisodesContext",
    "EvalConfig",
    "EvalResult",
    "FullContext",
    "NonFiniteLossError",
    "OptimConfig",
    "RunDirError",
    "TokenLayout",
    "TrainConfig",
    "TrainResult",
    "WindowContext",
    "diagnose",
    "evaluate",
    "history_tokens",
    "latest_checkpoint",
    "load_model",
    "method_summary",
    "parse_context",
    "plot_curves",
    "preset",
    "preset_dict",
    "read_results",
    "train",
]
