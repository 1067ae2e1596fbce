"""MQL (Meta-Q-Learning, Fakoor et al. 2020): online meta-RL on an ``icrl.metaenvs`` family.

TD3 whose actor and critics read a GRU context of the last H (action, reward, observation) tuples,
meta-trained on the train tasks, adapted at test time with propensity-weighted TD3 and a proximal
term. The entry points (`MQLConfig`, `mql_preset`, `train_mql`, `evaluate_mql`, `run_mql`) are
re-exported by ``icrl.baselines``; the algorithm's pieces are public here.

Modules: ``_config`` (`MQLConfig`, `mql_preset`, `AD_DATA_VOLUME`), ``_nets`` (GRU context, actor,
twin critic), ``_agent`` (TD3 step, proximal penalty), ``_graph`` (CUDA graph replay), ``_buffer``
(multi-task replay), ``_rollout`` (batched episodes), ``_propensity`` (logistic fit, β, ESS),
``_adapt`` (`mql_adapt`), ``_run`` (`train_mql`, `evaluate_mql`, `run_mql`), ``_cli``.
"""

from icrl.baselines.mql._adapt import AdaptStats, mql_adapt
from icrl.baselines.mql._agent import MQLAgent, prox_penalty
from icrl.baselines.mql._buffer import MultiTaskReplay
from icrl.baselines.mql._config import AD_DATA_VOLUME, MQLConfig, mql_preset
from icrl.baselines.mql._propensity import (
    Propensity,
    effective_sample_size,
    fit_propensity,
    propensity_weights,
)
from icrl.baselines.mql._run import evaluate_mql, run_mql, train_mql

__all__ = [
    "AD_DATA_VOLUME",
    "AdaptStats",
    "MQLAgent",
    "MQLConfig",
    "MultiTaskReplay",
    "Propensity",
    "effective_sample_size",
    "evaluate_mql",
    "fit_propensity",
    "mql_adapt",
    "mql_preset",
    "propensity_weights",
    "prox_penalty",
    "run_mql",
    "train_mql",
]
