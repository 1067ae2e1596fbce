"""Learning histories: Tianshou source RL recorded transition by transition, stored in HDF5.

For each training task of a meta-task family, a source algorithm (SAC, PPO or DroQ, built on
Tianshou 2.0.1) learns from scratch while every transition of its run is recorded; one episode of
every k is kept, with the return and length of every episode; the result is one HDF5 file per
family (layout in the package README and `icrl.histories._schema`).

    from icrl.histories import GenerateConfig, generate, HistoryFile
    path = generate(GenerateConfig(family="ReacherGoal", tasks=2, workers=2), "reacher.h5")
    hf = HistoryFile(path)
    h = hf.history(hf.tasks[0])            # obs, action, reward, next_obs, ... of kept episodes
    returns, lengths = hf.episode_returns(hf.tasks[0])   # every episode: the source curve

On a GPU, `GenerateConfig(..., backend="batched", device="cuda", workers=15)` trains all tasks at
once (networks stacked along a task axis, CUDA-graphed updates) and writes the same file.
"""

from icrl.histories._config import (
    PRESETS,
    AlgorithmConfig,
    DroQConfig,
    GenerateConfig,
    NoiseDistillation,
    PPOConfig,
    Preset,
    SACConfig,
)
from icrl.histories._generate import (
    ConfigMismatchError,
    DeviceError,
    OutputPathError,
    OutputWriteError,
    RunLockedError,
    TaskFailedError,
    generate,
    run_task,
)
from icrl.histories._learners import Learner, TaskSpec, TianshouLearner
from icrl.histories._reader import History, HistoryFile
from icrl.histories._recorder import HistoryRecorder
from icrl.histories._schema import SCHEMA_VERSION, HistoryFileError

__all__ = [
    "PRESETS",
    "SCHEMA_VERSION",
    "AlgorithmConfig",
    "ConfigMismatchError",
    "DeviceError",
    "DroQConfig",
    "GenerateConfig",
    "History",
    "HistoryFile",
    "HistoryFileError",
    "HistoryRecorder",
    "Learner",
    "NoiseDistillation",
    "OutputPathError",
    "OutputWriteError",
    "PPOConfig",
    "Preset",
    "RunLockedError",
    "SACConfig",
    "TaskFailedError",
    "TaskSpec",
    "TianshouLearner",
    "generate",
    "run_task",
]
