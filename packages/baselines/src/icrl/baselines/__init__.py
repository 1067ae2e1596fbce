"""Meta-RL baselines evaluated like AD: MACAW (offline) and MQL (online).

MACAW (Mitchell et al. 2021): MAML with one second-order inner step and learned per-tensor
rates, advantage-weighted regression with an advantage head, weight-transform layers; meta-trained
offline on the ``icrl.histories`` learning histories of the train tasks, then adapted on each test
task and evaluated episode by episode.

    >>> from icrl.baselines import MacawTrainConfig, MacawEvalConfig, run_macaw
    >>> train = MacawTrainConfig(histories="reacher.h5", steps=20_000)  # doctest: +SKIP
    >>> run_macaw(train, MacawEvalConfig(episodes=10), "runs/macaw-reacher")  # doctest: +SKIP

Results use AD's format: ``returns.csv`` with columns ``method,seed,task,episode,return`` and a
PNG of the mean return ± 95% CI against the episode (`write_results`).
"""

from icrl.baselines._macaw_algo import Macaw, awr_weights, inner_step, meta_step
from icrl.baselines._macaw_config import MacawConfig, MacawEvalConfig, MacawTrainConfig
from icrl.baselines._macaw_data import (
    MacawBuffer,
    buffer_from_history,
    build_macaw_buffer,
    sample_batch,
)
from icrl.baselines._macaw_eval import evaluate_macaw, run_macaw
from icrl.baselines._macaw_nets import MacawMLP, WLinear
from icrl.baselines._macaw_train import TaskData, load_macaw, train_macaw
from icrl.baselines._results import (
    EpisodeResult,
    plot_results,
    read_results_csv,
    write_results,
    write_results_csv,
)

__all__ = [
    "EpisodeResult",
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
    "plot_results",
    "read_results_csv",
    "run_macaw",
    "sample_batch",
    "train_macaw",
    "write_results",
    "write_results_csv",
]
