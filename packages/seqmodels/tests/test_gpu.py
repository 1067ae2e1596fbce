"""Reference vs mamba-ssm kernels on a CUDA GPU (marker `gpu`; skipped without CUDA + mamba-ssm).

Tolerances: relative error ||a - b|| / ||b|| over the whole output, <= 2e-3 in float32 (TF32
off in torch; 5e-3 for Mamba-2, whose Triton kernels use TF32 dot products), <= 5e-2 under bf16
autocast, and <= 1e-2 for the worst parameter gradient. Each test prints the measured error
("AGREE ...").
"""

import importlib

import pytest
import torch

from icrl.seqmodels import (
    CudaGraphStep,
    MambaConfig,
    TransformerConfig,
    build_backbone,
    mamba_kernels,
)

pytestmark = pytest.mark.gpu

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
needs_mamba = pytest.mark.skipif(
    not torch.cuda.is_available() or mamba_kernels() is None,
    reason="needs a CUDA GPU and mamba-ssm's kernels (the mamba extra)",
)
needs_flash = pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("flash_attn") is None,
    reason="needs a CUDA GPU and flash-attn (the flash extra)",
)
needs_mamba2 = pytest.mark.skipif(
    not torch.cuda.is_available() or mamba_kernels("mamba2") is None,
    reason="needs a CUDA GPU and mamba-ssm's Triton kernels",
)
TOL = {torch.float32: 2e-3, torch.bfloat16: 5e-2}


@pytest.fixture(autouse=True)
def _no_tf32():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def _agree(what: str, a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype, tol=None) -> None:
    rel = _rel(a, b)
    print(
        f"AGREE {what} {str(dtype).removeprefix('torch.')} rel={rel:.2e} "
        f"max_abs={(a.float() - b.float()).abs().max().item():.2e}"
    )
    assert rel <= (tol or TOL[dtype]), (what, rel)


def _autocast(dtype: torch.dtype):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)


def _pair(mixer: str):
    kw = dict(d_model=128, n_layers=2, mixer=mixer, headdim=32, chunk_size=64)
    ref = build_backbone(MambaConfig(**kw, backend="reference")).cuda()
    ker = build_backbone(MambaConfig(**kw, backend="mamba-ssm")).cuda()
    ker.load_state_dict(ref.state_dict(), strict=True)
    return ref, ker


def _roll(model, x, dtype):
    state = model.init_state(x.shape[0])
    with torch.no_grad(), _autocast(dtype):
        return torch.stack([model.step(x[:, t], state)[0] for t in range(x.shape[1])], 1)


@needs_mamba
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("mixer", ["mamba1", "mamba2"])
def test_kernels_match_reference_forward_and_step(mixer: str, dtype: torch.dtype) -> None:
    ref, ker = _pair(mixer)
    tol = 5e-3 if (mixer, dtype) == ("mamba2", torch.float32) else None
    x = torch.randn(2, 300, 128, device="cuda")
    with torch.no_grad(), _autocast(dtype):
        y_ref, y_ker = ref(x), ker(x)
    _agree(f"{mixer} forward kernels-vs-reference", y_ker, y_ref, dtype, tol)
    step_ker, step_ref = _roll(ker, x[:, :64], dtype), _roll(ref, x[:, :64], dtype)
    _agree(f"{mixer} step(kernels)-vs-forward(reference)", step_ker, y_ref[:, :64], dtype, tol)
    _agree(f"{mixer} step(reference)-vs-forward(reference)", step_ref, y_ref[:, :64], dtype)


@needs_mamba
@pytest.mark.parametrize("mixer", ["mamba1", "mamba2"])
def test_kernel_gradients_match_reference(mixer: str) -> None:
    ref, ker = _pair(mixer)
    x = torch.randn(2, 200, 128, device="cuda")
    w = torch.randn(2, 200, 128, device="cuda")
    for model in (ref, ker):
        (model(x) * w).sum().backward()
    worst = max(
        (_rel(pk.grad, pr.grad), n)
        for (n, pr), pk in zip(ref.named_parameters(), ker.parameters(), strict=True)
    )
    print(
        f"AGREE {mixer} gradients kernels-vs-reference float32 worst_rel={worst[0]:.2e}", worst[1]
    )
    assert worst[0] <= 1e-2, worst


@needs_mamba
def test_state_dict_moves_to_and_from_mamba_ssms_own_modules() -> None:
    from mamba_ssm.modules.mamba_simple import Mamba

    ours = build_backbone(MambaConfig(d_model=128, n_layers=1)).cuda()
    mixer = ours.layers[0].mixer
    theirs = Mamba(d_model=128, d_state=16, d_conv=4, expand=2, layer_idx=0).cuda()
    theirs.load_state_dict(mixer.state_dict(), strict=True)
    u = torch.randn(2, 100, 128, device="cuda")
    with torch.no_grad():
        _agree("mamba1 our-mixer-vs-mamba_ssm.Mamba", mixer(u), theirs(u), torch.float32)
    other = Mamba(d_model=128, d_state=16, d_conv=4, expand=2, layer_idx=0).cuda()
    mixer.load_state_dict(other.state_dict(), strict=True)
    with torch.no_grad():
        _agree("mamba1 mamba_ssm.Mamba-weights-in-our-mixer", mixer(u), other(u), torch.float32)


@needs_mamba2
def test_mamba2_state_dict_moves_to_mamba_ssms_mamba2() -> None:
    from mamba_ssm.modules.mamba2 import Mamba2

    ours = build_backbone(MambaConfig(d_model=128, n_layers=1, mixer="mamba2", headdim=32)).cuda()
    mixer = ours.layers[0].mixer
    theirs = Mamba2(
        d_model=128, d_state=16, headdim=32, chunk_size=64, use_mem_eff_path=False, layer_idx=0
    ).cuda()
    theirs.load_state_dict(mixer.state_dict(), strict=True)
    u = torch.randn(2, 100, 128, device="cuda")
    with torch.no_grad():
        _agree("mamba2 our-mixer-vs-mamba_ssm.Mamba2", mixer(u), theirs(u), torch.float32, 5e-3)


@needs_cuda
@pytest.mark.parametrize("kind", ["mamba", "transformer"])
def test_cuda_graph_step_equals_eager_step(kind: str) -> None:
    if kind == "mamba":
        model = build_backbone(MambaConfig(d_model=128, n_layers=2)).cuda()
    else:
        model = build_backbone(TransformerConfig(d_model=128, n_layers=2, max_len=64)).cuda()
    x = torch.randn(3, 40, 128, device="cuda")
    graph = CudaGraphStep(model, 3, capacity=64 if kind == "transformer" else None)
    got = torch.stack([graph(x[:, t]).clone() for t in range(40)], 1)
    _agree(
        f"{kind} cuda-graph-step-vs-eager-step", got, _roll(model, x, torch.float32), torch.float32
    )
    graph.reset()
    again = torch.stack([graph(x[:, t]).clone() for t in range(5)], 1)
    torch.testing.assert_close(again, got[:, :5])


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_transformer_step_equals_forward_on_gpu(dtype: torch.dtype) -> None:
    model = build_backbone(TransformerConfig(d_model=128, n_layers=2, max_len=128)).cuda()
    x = torch.randn(2, 100, 128, device="cuda")
    with torch.no_grad(), _autocast(dtype):
        y = model(x)
    state = model.init_state(2, dtype=dtype)
    with torch.no_grad(), _autocast(dtype):
        got = torch.stack([model.step(x[:, t], state)[0] for t in range(100)], 1)
    _agree("transformer step-vs-forward", got, y, dtype)


@needs_flash
def test_flash_attn_step_equals_forward() -> None:
    model = build_backbone(TransformerConfig(d_model=128, n_layers=2, backend="flash-attn")).cuda()
    x = torch.randn(2, 50, 128, device="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        y = model(x)
        state = model.init_state(2, dtype=torch.bfloat16)
        got = torch.stack([model.step(x[:, t], state)[0] for t in range(50)], 1)
    _agree("transformer flash step-vs-forward", got, y, torch.bfloat16)


def _sdpa_and_flash(d_model: int, n_layers: int = 2, max_len: int = 512):
    kw = dict(d_model=d_model, n_layers=n_layers, max_len=max_len)
    sdpa = build_backbone(TransformerConfig(**kw, backend="sdpa")).cuda()
    flash = build_backbone(TransformerConfig(**kw, backend="flash-attn")).cuda()
    flash.load_state_dict(sdpa.state_dict(), strict=True)
    return sdpa, flash


@needs_flash
@pytest.mark.parametrize("d_model", [128, 160, 256, 416])  # head dims 32, 40, 64, 104
def test_flash_attn_matches_sdpa_forward_and_gradients(d_model: int) -> None:
    """The paper sizes' head dims (40, 64, 104) and 32: outputs and every gradient agree."""
    sdpa, flash = _sdpa_and_flash(d_model)
    x = torch.randn(3, 300, d_model, device="cuda")
    w = torch.randn(3, 300, d_model, device="cuda")
    outs = []
    for model in (sdpa, flash):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y = model(x)
        (y.float() * w).sum().backward()
        outs.append(y.detach())
    _agree(f"transformer d{d_model} flash-vs-sdpa forward", outs[1], outs[0], torch.bfloat16)
    worst = max(
        (_rel(pf.grad, ps.grad), n)
        for (n, ps), pf in zip(sdpa.named_parameters(), flash.parameters(), strict=True)
        if ps.grad is not None and ps.grad.norm() > 0
    )
    print(f"AGREE transformer d{d_model} flash-vs-sdpa gradients bfloat16 worst_rel={worst[0]:.2e}")
    assert worst[0] <= 5e-2, worst


@needs_flash
def test_flash_attn_step_in_a_cuda_graph_equals_sdpa_step() -> None:
    sdpa, flash = _sdpa_and_flash(160, max_len=64)
    x = torch.randn(3, 40, 160, device="cuda", dtype=torch.bfloat16)
    sdpa, flash = sdpa.to(torch.bfloat16), flash.to(torch.bfloat16)
    graph = CudaGraphStep(flash, 3, capacity=64, state_dtype=torch.bfloat16)
    got = torch.stack([graph(x[:, t]).clone() for t in range(40)], 1)
    state = sdpa.init_state(3, dtype=torch.bfloat16)
    with torch.no_grad():
        want = torch.stack([sdpa.step(x[:, t], state)[0] for t in range(40)], 1)
    _agree("transformer flash cuda-graph-step-vs-sdpa-step", got, want, torch.bfloat16)
