"""The batched backend (`GenerateConfig.backend="batched"`): all tasks' learners trained at once.

Modules: `_generate` (`BatchedBackend`: tasks split over devices, one process each), `_run` (one
device's training loop, CUDA graphs), `_nets` (layers stacked along a task axis), `_sac` and
`_ppo` (the batched updates), `_replay` (replay memories on the device), `_pool` (sub-envs
stepped by worker processes over shared memory) and `_record` (the recorded stream).

Importing it imports Tianshou's layers; `icrl.histories` itself does not, until a batched run.
"""

from icrl.histories.batched._generate import BatchedBackend, devices_of
from icrl.histories.batched._pool import EnvPool
from icrl.histories.batched._ppo import BatchedPPO, flat
from icrl.histories.batched._record import StreamRecorder
from icrl.histories.batched._replay import TaskReplay
from icrl.histories.batched._run import BatchRun, BatchSpec, TaskResult, run_batched
from icrl.histories.batched._sac import Batch, BatchedSAC

__all__ = [
    "Batch",
    "BatchRun",
    "BatchSpec",
    "BatchedBackend",
    "BatchedPPO",
    "BatchedSAC",
    "EnvPool",
    "StreamRecorder",
    "TaskReplay",
    "TaskResult",
    "devices_of",
    "flat",
    "run_batched",
]
