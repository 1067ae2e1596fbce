"""MACAW (Mitchell et al. 2021): offline meta-RL on ``icrl.histories`` learning histories.

MAML with one second-order inner step and learned per-tensor rates, advantage-weighted regression
with an advantage head, weight-transform layers. The entry points (configs, `train_macaw`,
`load_macaw`, `evaluate_macaw`, `run_macaw`) are re-exported by ``icrl.baselines``; the algorithm's
pieces (networks, buffers, inner and meta steps) are public here.

Modules: ``_config`` (pydantic configs), ``_nets`` (`WLinear`, `MacawMLP`), ``_data`` (buffers,
returns-to-go, sampling), ``_algo`` (losses, inner step, meta-step), ``_train`` (run folder,
checkpoint/resume), ``_eval`` (adaptation protocols, `evaluate_macaw`, `run_macaw`), ``_cli``.
"""

from icrl.baselines.macaw._algo import Macaw, awr_weights, inner_step, meta_step
from icrl.baselines.macaw._config import MacawConfig, MacawEvalConfig, MacawTrainConfig
from icrl.baselines.macaw._data import (
    MacawBuffer,
    buffer_from_history,
    build_macaw_buffer,
    sample_batch,
)
from icrl.baselines.macaw._eval import evaluate_macaw, run_macaw
from icrl.baselines.macaw._nets import MacawMLP, WLinear
from icrl.baselines.macaw._train import TaskData, load_macaw, train_macaw

__all__ = [
    "Macaw",
    "MacawBuffer",
    "MacawConfig",
    "MacawEvalConfig",
    "MacawMLP",
    "MacawTrainConfig",
    "TaskData",
    "WLinear",
    "awr_weights",
    "buffer_from_history",
    "build_macaw_buffer",
    "evaluate_macaw",
    "inner_step",
    "load_macaw",
    "meta_step",
    "run_macaw",
    "sample_batch",
    "train_macaw",
]
