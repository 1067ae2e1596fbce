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

This namespace holds what a user calls: the configs, the train/evaluate/run functions and the
results format. The algorithms' internals (networks, buffers, inner and meta steps, the TD3 agent,
propensity weights) are public in the sub-packages ``icrl.baselines.macaw`` and
``icrl.baselines.mql``.
"""

from icrl.baselines._results import (
    EpisodeResult,
    plot_results,
    read_results_csv,
    write_results,
    write_results_csv,
)
from icrl.baselines.macaw import (
    MacawConfig,
    MacawEvalConfig,
    MacawTrainConfig,
    evaluate_macaw,
    load_macaw,
    run_macaw,
    train_macaw,
)
from icrl.baselines.mql import MQLConfig, evaluate_mql, mql_preset, run_mql, train_mql

__all__ = [
    "EpisodeResult",
    "MQLConfig",
    "MacawConfig",
    "MacawEvalConfig",
    "MacawTrainConfig",
    "evaluate_macaw",
    "evaluate_mql",
    "load_macaw",
    "mql_preset",
    "plot_results",
    "read_results_csv",
    "run_macaw",
    "run_mql",
    "train_macaw",
    "train_mql",
    "write_results",
    "write_results_csv",
]
