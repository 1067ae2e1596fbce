"""`init_alpha` sets the entropy temperature both backends start from (default 1, Tianshou's)."""

from __future__ import annotations

import math

import pytest
import torch

from icrl.histories._config import DroQConfig, SACConfig
from icrl.histories._learners import _auto_alpha
from icrl.histories.batched import BatchedSAC


@pytest.mark.parametrize("config", [SACConfig(hidden_sizes=(8,)), DroQConfig(hidden_sizes=(8,))])
@pytest.mark.parametrize("init_alpha", [1.0, 0.1])
def test_both_backends_start_at_init_alpha(config, init_alpha: float) -> None:
    config = config.model_copy(update={"init_alpha": init_alpha})
    batched = BatchedSAC(config, 3, 2, [0, 1])
    assert torch.allclose(batched.log_alpha, torch.full((2,), math.log(init_alpha)))
    reference = _auto_alpha(config, 2, "cpu")
    assert reference.value == pytest.approx(init_alpha)


def test_init_alpha_must_be_positive() -> None:
    with pytest.raises(ValueError, match="init_alpha"):
        SACConfig(init_alpha=0.0)
