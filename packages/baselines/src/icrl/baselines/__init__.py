"""Meta-RL baselines evaluated like AD: MACAW (offline) and MQL (online).

MQL (Meta-Q-Learning, Fakoor et al. 2020): TD3 whose actor and critics read a GRU context of the
last H (action, reward, observation) tuples, meta-trained online on the train tasks of an
``icrl.metaenvs`` family, adapted at test time with propensity-weighted TD3 and a proximal term.

    >>> from icrl.baselines import mql_preset, run_mql
    >>> cfg = mql_preset("ReacherGoal", "tiny")
    >>> csv_path = run_mql(cfg, "runs/mql-reacher", seeds=(0, 1, 2))  # doctest: +SKIP

``train_mql`` / ``evaluate_mql`` run one seed; results use AD's format
(``method,seed,task,episode,return``).
"""

from icrl.baselines._mql_adapt import AdaptStats, adapt
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

__all__ = [
    "AD_DATA_VOLUME",
    "AdaptStats",
    "MQLAgent",
    "MQLConfig",
    "MultiTaskReplay",
    "Propensity",
    "adapt",
    "effective_sample_size",
    "evaluate_mql",
    "fit_propensity",
    "mql_preset",
    "propensity_weights",
    "prox_penalty",
    "run_mql",
    "train_mql",
]
