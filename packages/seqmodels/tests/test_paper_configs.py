"""The paper's sizes (Tables 6-7) as named configs, with their parameter counts."""

import math

import pytest

from icrl.seqmodels import (
    PAPER_CONFIGS,
    PAPER_PARAM_COUNTS,
    MambaConfig,
    build_backbone,
)


def _count_without_positions(name: str) -> int:
    model = build_backbone(PAPER_CONFIGS[name])
    return model.num_parameters() - model.position_parameters()


def _mamba_ssm_formula(c: MambaConfig) -> int:
    """mamba-ssm's Mamba-1 block count, derived independently of the module code."""
    d, di, n, r, k = c.d_model, c.d_inner, c.d_state, math.ceil(c.d_model / 16), c.d_conv
    mixer = d * 2 * di + di * (k + 1) + di * (r + 2 * n) + (r * di + di) + di * n + di + di * d
    return c.n_layers * (mixer + d) + d


WITHIN_10_PERCENT = [
    "mamba-6m",
    "mamba-12m-matched",
    "transformer-6m",
    "transformer-12m",
    "transformer-14m",
]


@pytest.mark.parametrize("name", WITHIN_10_PERCENT)
def test_paper_configs_match_the_tables_within_10_percent(name: str) -> None:
    count = _count_without_positions(name)
    assert abs(count / PAPER_PARAM_COUNTS[name] - 1) <= 0.10, (name, count)


def test_mamba_12m_keeps_table_6_dimensions_and_is_13_percent_over_its_rounded_count() -> None:
    """Table 6's 512 x 8 cannot give its printed "12M" with mamba-ssm's block (d_state 16,
    expand 2): the printed dimensions are kept, the count is pinned, and the parameter-matched
    variant covers the printed count (test above)."""
    config = PAPER_CONFIGS["mamba-12m"]
    assert isinstance(config, MambaConfig)
    assert (config.d_model, config.n_layers, config.d_state, config.expand) == (512, 8, 16, 2)
    count = _count_without_positions("mamba-12m")
    assert count == 13_562_368
    assert 0.12 < count / PAPER_PARAM_COUNTS["mamba-12m"] - 1 < 0.14


def test_matched_mamba_is_within_2_percent_of_the_12m_transformer() -> None:
    ratio = _count_without_positions("mamba-12m-matched") / _count_without_positions(
        "transformer-12m"
    )
    assert abs(ratio - 1) <= 0.02, ratio


@pytest.mark.parametrize("name", ["mamba-6m", "mamba-12m", "mamba-12m-matched"])
def test_mamba_counts_equal_mamba_ssms_block_formula(name: str) -> None:
    config = PAPER_CONFIGS[name]
    assert isinstance(config, MambaConfig)
    assert _count_without_positions(name) == _mamba_ssm_formula(config)


def test_paper_transformers_have_4_heads_ff_2048_and_flash_friendly_heads() -> None:
    for name, config in PAPER_CONFIGS.items():
        if name.startswith("transformer"):
            assert config.n_heads == 4 and config.d_ff == 2048 and config.head_dim % 8 == 0
