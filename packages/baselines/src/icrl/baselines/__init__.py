"""Meta-RL baselines evaluated like AD: MACAW (offline) and MQL (online).

MACAW (Mitchell et al. 2021): MAML with one second-order inner step and learned per-tensor
rates, advantage-weighted regression with an advantage head, weight-transform layers; meta-trained
offline on the ``icrl.histories`` learning histories of the train tasks, then adapted on each test
task and evaluated episode by episode.

    >>> from icrl.baselines import MacawTrainConfig, MacawEvalConfig, run_macaw
    >>> train = MacawTrainConfig(histories="reacher.h5", steps=20_000)  # doctest: +SKIP
    >>> run_macaw(train, MacawEvalConfig(episodes=10), "runs/macaw-reacher")  # doctest: +SKIP

MQL (Meta-Q-Learning, Fakoor et al. 2020): TD3 whose actor and critics read a GRU context of the
last H (action, reward, observation) tuples, meta-trained online on the train tasks of an
``icrl.metaenvs`` family, adapted at test time with propensity-weighted TD3 and a proximal term.

    >>> from icrl.baselines import mql_preset, run_mql
    >>> cfg = mql_preset("ReacherGoal", "small")
    >>> run_mql(cfg, "runs/mql-reacher", seeds=(0, 1, 2))  # doctest: +SKIP

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
from icrl.baselines._mql_adapt import AdaptStats, mql_adapt
from icrl.baselines._mql_agent import MQLAgent, prox_penalty
from icrl.baselines._mql_buffer import MultiTaskReplay
from icrl.baselines._mql_config import AD_DATA_VOLUME, MQLConfig, mql_preset
from icrl.baselines._mql_propensity import (
    Propensity,
    effective_sample_size,
    fit_propensity,
    propensity_weights,
)
from icrl.baselines._mql_run import evaluate_mql, run_mql, train_mql
from icrl.baselines._results import (
    EpisodeResult,
    plot_results,
    read_results_csv,
    write_results,
    write_results_csv,
)

__all__ = [
    "AD_DATA_VOLUME",
    "AdaptStats",
    "EpisodeResult",
    "MQLAgent",
    "MQLConfig",
    "Macaw",
    "MacawBuffer",
    "MacawConfig",
    "MacawEvalConfig",
    "MacawMLP",
    "MacawTrainConfig",
    "MultiTaskReplay",
    "Propensity",
    "TaskData",
    "WLinear",
    "awr_weights",
    "buffer_from_history",
    "build_macaw_buffer",
    "effective_sample_size",
    "evaluate_macaw",
    "evaluate_mql",
    "fit_propensity",
    "inner_step",
    "load_macaw",
    "meta_step",
    "mql_adapt",
    "mql_preset",
    "plot_results",
    "propensity_weights",
    "prox_penalty",
    "read_results_csv",
    "run_macaw",
    "run_mql",
    "sample_batch",
    "train_macaw",
    "train_mql",
    "write_results",
    "write_results_csv",
]
