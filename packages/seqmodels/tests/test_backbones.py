"""Both backbones: step == forward, causality, gradients, validation, kernel selection."""

import random

import pytest
import torch

from icrl.seqmodels import (
    KernelUnavailableError,
    MambaBackbone,
    MambaConfig,
    SequenceModel,
    TransformerBackbone,
    TransformerConfig,
    build_backbone,
)


def _random_config(kind: str, rng: random.Random):
    if kind == "transformer":
        heads = rng.choice([1, 2, 4])
        return TransformerConfig(
            d_model=8 * heads * rng.choice([1, 2]),
            n_layers=rng.choice([1, 2, 3]),
            n_heads=heads,
            d_ff=rng.choice([16, 40]),
            max_len=64,
        )
    mixer = "mamba2" if kind == "mamba2" else "mamba1"
    d_model = rng.choice([8, 12, 16])
    return MambaConfig(
        d_model=d_model,
        n_layers=rng.choice([1, 2, 3]),
        d_state=rng.choice([2, 4, 16]),
        d_conv=rng.choice([2, 4]),
        expand=2,
        mixer=mixer,
        headdim=d_model // 2,  # 4 heads
        chunk_size=rng.choice([3, 4, 8]),
        backend="reference",
    )


def _roll(model: SequenceModel, x: torch.Tensor, **state_kwargs) -> torch.Tensor:
    state = model.init_state(x.shape[0], **state_kwargs)
    out = []
    for t in range(x.shape[1]):
        y, state = model.step(x[:, t], state)
        out.append(y)
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("kind", ["mamba1", "mamba2", "transformer"])
@pytest.mark.parametrize("trial", range(3))
def test_step_over_a_sequence_equals_forward(kind: str, trial: int) -> None:
    rng = random.Random(100 * trial + len(kind))
    model = build_backbone(_random_config(kind, rng)).eval()
    x = torch.randn(rng.randint(1, 4), rng.randint(1, 23), model.d_model)
    with torch.no_grad():
        expected = model(x)
        got = _roll(model, x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_graph_safe_transformer_step_equals_forward() -> None:
    model = build_backbone(TransformerConfig(d_model=32, n_layers=2, d_ff=48, max_len=40)).eval()
    x = torch.randn(3, 17, 32)
    with torch.no_grad():
        got = _roll(model, x, graph_safe=True, capacity=20)
        torch.testing.assert_close(got, model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["mamba1", "mamba2", "transformer"])
def test_outputs_are_causal(kind: str) -> None:
    model = build_backbone(_random_config(kind, random.Random(7))).eval()
    x = torch.randn(2, 16, model.d_model)
    x2 = x.clone()
    x2[:, 9] += torch.randn(2, model.d_model)
    with torch.no_grad():
        y, y2 = model(x), model(x2)
    torch.testing.assert_close(y[:, :9], y2[:, :9], rtol=0, atol=0)
    assert (y[:, 9:] - y2[:, 9:]).abs().amax(dim=-1).min() > 1e-6  # every later step sees it


@pytest.mark.parametrize("kind", ["mamba1", "mamba2", "transformer"])
def test_gradients_reach_every_parameter(kind: str) -> None:
    model = build_backbone(_random_config(kind, random.Random(3)))
    x = torch.randn(2, 12, model.d_model, requires_grad=True)
    model(x).pow(2).sum().backward()
    missing = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert not missing, f"parameters without gradient: {missing}"
    assert x.grad is not None and x.grad.abs().sum() > 0


def _sequential_selective_scan(x, dt, A, B, C, D, h0=None):
    h = x.new_zeros(x.shape[0], x.shape[2], A.shape[1]) if h0 is None else h0
    ys = []
    for t in range(x.shape[1]):
        h = torch.exp(dt[:, t, :, None] * A) * h + (dt[:, t] * x[:, t])[..., None] * B[:, t, None]
        ys.append((h * C[:, t, None]).sum(-1) + D * x[:, t])
    return torch.stack(ys, 1), h


def _sequential_ssd_scan(x, dt, A, B, C, chunk, h0=None):
    state = x.new_zeros(*x.shape[:1], *x.shape[2:], B.shape[-1]) if h0 is None else h0
    ys = []
    for t in range(x.shape[1]):
        decay = torch.exp(dt[:, t] * A)[..., None, None]
        state = decay * state + torch.einsum("bh,bn,bhp->bhpn", dt[:, t], B[:, t, 0], x[:, t])
        ys.append(torch.einsum("bhpn,bn->bhp", state, C[:, t, 0]))
    return torch.stack(ys, 1), state


@pytest.mark.parametrize("kind", ["mamba1", "mamba2"])
def test_mamba_reference_gradients_match_a_sequential_recurrence(kind, monkeypatch) -> None:
    """The parallel scans' gradients (custom backward for Mamba-1) equal a plain loop's."""
    from icrl.seqmodels import _mamba

    model = build_backbone(_random_config(kind, random.Random(11))).double()
    x = torch.randn(2, 9, model.d_model, dtype=torch.float64)
    w = torch.randn(2, 9, model.d_model, dtype=torch.float64)

    def grads():
        model.zero_grad()
        (model(x) * w).sum().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    parallel = grads()
    monkeypatch.setattr(_mamba, "selective_scan", _sequential_selective_scan)
    monkeypatch.setattr(_mamba, "ssd_scan", _sequential_ssd_scan)
    sequential = grads()
    for name in parallel:
        torch.testing.assert_close(parallel[name], sequential[name], rtol=1e-7, atol=1e-9, msg=name)


@pytest.mark.parametrize("kind", ["mamba1", "mamba2", "transformer"])
def test_bf16_inputs_under_autocast_keep_the_norms_fused(kind: str) -> None:
    """An AD model feeds bf16 embeddings under autocast: no norm may see a bf16 input with fp32
    weights (torch warns and falls back to a slower kernel; pytest turns the warning into an
    error here). forward and step both run."""
    torch.manual_seed(0)
    model = build_backbone(_random_config(kind, random.Random(3))).eval()
    x = torch.randn(2, 6, model.d_model).bfloat16()
    state = model.init_state(2)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        y = model(x)
        y_t, _ = model.step(x[:, 0], state)
    assert torch.isfinite(y.float()).all() and torch.isfinite(y_t.float()).all()


def test_state_resets_and_is_reused_in_place() -> None:
    model = build_backbone(_random_config("mamba1", random.Random(5))).eval()
    x = torch.randn(2, 6, model.d_model)
    state = model.init_state(2)
    with torch.no_grad():
        first = [model.step(x[:, t], state)[0] for t in range(6)]
        returned = model.step(x[:, 0], state)[1]
        assert returned is state
        state.zero_()
        again = [model.step(x[:, t], state)[0] for t in range(6)]
    torch.testing.assert_close(torch.stack(again), torch.stack(first), rtol=0, atol=0)


def test_mamba_parameter_names_and_shapes_are_mamba_ssms() -> None:
    config = MambaConfig(d_model=32, n_layers=2, d_state=16, d_conv=4, expand=2)
    shapes = {n: tuple(p.shape) for n, p in build_backbone(config).state_dict().items()}
    di, r = 64, 2  # d_inner, dt_rank = ceil(32 / 16)
    expected_mixer = {
        "in_proj.weight": (2 * di, 32),
        "conv1d.weight": (di, 1, 4),
        "conv1d.bias": (di,),
        "x_proj.weight": (r + 32, di),
        "dt_proj.weight": (di, r),
        "dt_proj.bias": (di,),
        "A_log": (di, 16),
        "D": (di,),
        "out_proj.weight": (32, di),
    }
    expected = {"norm_f.weight": (32,)}
    for i in range(2):
        expected[f"layers.{i}.norm.weight"] = (32,)
        expected.update({f"layers.{i}.mixer.{k}": v for k, v in expected_mixer.items()})
    assert shapes == expected


def test_mamba2_parameter_names_and_shapes_are_mamba_ssms() -> None:
    config = MambaConfig(d_model=32, n_layers=1, d_state=16, mixer="mamba2", headdim=16)
    shapes = {n: tuple(p.shape) for n, p in build_backbone(config).state_dict().items()}
    di, h, conv_dim = 64, 4, 64 + 2 * 16
    assert shapes == {
        "layers.0.norm.weight": (32,),
        "layers.0.mixer.in_proj.weight": (2 * di + 2 * 16 + h, 32),
        "layers.0.mixer.conv1d.weight": (conv_dim, 1, 4),
        "layers.0.mixer.conv1d.bias": (conv_dim,),
        "layers.0.mixer.dt_bias": (h,),
        "layers.0.mixer.A_log": (h,),
        "layers.0.mixer.D": (h,),
        "layers.0.mixer.norm.weight": (di,),
        "layers.0.mixer.out_proj.weight": (32, di),
        "norm_f.weight": (32,),
    }


def test_a_state_dict_moves_between_backends() -> None:
    a = build_backbone(MambaConfig(d_model=16, n_layers=2, backend="auto"))
    b = build_backbone(MambaConfig(d_model=16, n_layers=2, backend="reference"))
    b.load_state_dict(a.state_dict(), strict=True)
    x = torch.randn(1, 5, 16)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))


def test_default_backends_build_everywhere_and_explicit_kernels_name_the_extra() -> None:
    assert isinstance(build_backbone(MambaConfig(d_model=16, n_layers=1)), MambaBackbone)
    assert isinstance(
        build_backbone(TransformerConfig(d_model=32, n_layers=1)), TransformerBackbone
    )
    if not torch.cuda.is_available():
        with pytest.raises(ImportError, match=r"icrl-seqmodels\[mamba\]"):
            build_backbone(MambaConfig(d_model=16, n_layers=1, backend="mamba-ssm"))
        with pytest.raises(ImportError, match=r"icrl-seqmodels\[flash\]"):
            build_backbone(TransformerConfig(d_model=32, n_layers=1, backend="flash-attn"))
        with pytest.raises(KernelUnavailableError):
            build_backbone(
                MambaConfig(d_model=16, n_layers=1, mixer="mamba2", headdim=8, backend="mamba-ssm")
            )


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: TransformerConfig(d_model=36, n_layers=1, n_heads=4), "multiple of 8"),
        (lambda: TransformerConfig(d_model=30, n_layers=1, n_heads=4), "not divisible"),
        (lambda: MambaConfig(d_model=0, n_layers=1), "d_model"),
        (lambda: MambaConfig(d_model=16, n_layers=1, backend="cuda"), "backend"),
        (lambda: MambaConfig(d_model=16, n_layers=1, mixer="mamba2", headdim=24), "headdim"),
    ],
)
def test_bad_configs_are_rejected_with_a_clear_message(factory, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        factory()


def test_bad_inputs_are_rejected_with_a_clear_message() -> None:
    model = build_backbone(TransformerConfig(d_model=16, n_layers=1, n_heads=2, max_len=4))
    with pytest.raises(ValueError, match="D = d_model = 16"):
        model(torch.randn(1, 3, 8))
    with pytest.raises(ValueError, match="max_len=4"):
        model(torch.randn(1, 5, 16))
    state = model.init_state(1, capacity=2)
    with torch.no_grad():
        model.step(torch.randn(1, 16), state)
        model.step(torch.randn(1, 16), state)
        with pytest.raises(ValueError, match="full"):
            model.step(torch.randn(1, 16), state)
        with pytest.raises(ValueError, match="batch"):
            model.step(torch.randn(2, 16), model.init_state(1))
    with pytest.raises(TypeError, match="MambaConfig or TransformerConfig"):
        build_backbone({"d_model": 16})  # type: ignore[arg-type]
