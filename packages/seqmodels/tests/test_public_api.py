"""The public API as a user meets it: a tiny backbone built from its config, run and stepped."""

import importlib

import pytest
import torch

import icrl.seqmodels as sm


def test_public_names_resolve() -> None:
    mod = importlib.import_module("icrl.seqmodels")
    missing = [n for n in mod.__all__ if not hasattr(mod, n)]
    assert not missing, f"icrl.seqmodels.__all__ names missing attributes: {missing}"


@pytest.mark.parametrize(
    "config",
    [sm.MambaConfig(d_model=16, n_layers=2, d_state=4), sm.TransformerConfig(d_model=16,
     n_layers=2, n_heads=2, d_ff=32, max_len=16)],
    ids=["mamba", "transformer"],
)  # fmt: skip
def test_tiny_backbone_forward_matches_stepping_on_cpu(config) -> None:
    torch.manual_seed(0)
    model = sm.build_backbone(config).eval()
    assert isinstance(model, sm.SequenceModel)
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        y = model(x)
        state = model.init_state(2)
        steps = []
        for t in range(x.shape[1]):
            out, state = model.step(x[:, t], state)
            steps.append(out)
    assert y.shape == (2, 5, 16) and torch.isfinite(y).all()
    assert model.num_parameters() == sum(p.numel() for p in model.parameters())
    torch.testing.assert_close(torch.stack(steps, 1), y, atol=1e-4, rtol=1e-4)


def test_paper_configs_are_named_configs() -> None:
    # their sizes against the printed counts: test_paper_configs.py
    assert set(sm.PAPER_CONFIGS) == set(sm.PAPER_PARAM_COUNTS)
    for name, cfg in sm.PAPER_CONFIGS.items():
        kind = sm.MambaConfig if name.startswith("mamba") else sm.TransformerConfig
        assert isinstance(cfg, kind), name
