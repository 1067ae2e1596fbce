"""An exclusive lock on a run or output directory: a second process writing it is refused.

The lock is icrl.histories.runtime's `DirLock` (`fcntl.flock` on `DIR/.lock`; the kernel drops
it when its holder exits or is killed), with its default refusal, DirectoryInUseError naming the
holder's pid. It is re-exported here because `_train`, `_evaluate` and the public API import it
from this module.
"""

from __future__ import annotations

from icrl.histories.runtime import LOCK_NAME, DirectoryInUseError, DirLock

__all__ = ["LOCK_NAME", "DirLock", "DirectoryInUseError"]
