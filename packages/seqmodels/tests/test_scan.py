"""The parallel scans against plain sequential recurrences (test-only oracles)."""

import pytest
import torch

from icrl.seqmodels import linear_scan, selective_scan, ssd_scan


def _sequential_selective_scan(x, dt, A, B, C, D, h0):
    h, ys = h0.clone(), []
    for t in range(x.shape[1]):
        h = torch.exp(dt[:, t, :, None] * A) * h + (dt[:, t] * x[:, t])[..., None] * B[:, t, None]
        ys.append((h * C[:, t, None]).sum(-1) + D * x[:, t])
    return torch.stack(ys, 1), h


@pytest.mark.parametrize("length", [1, 2, 7, 16, 33])
def test_selective_scan_matches_the_recurrence(length: int) -> None:
    b, d, n = 2, 5, 3
    x, dt = torch.randn(b, length, d), torch.rand(b, length, d)
    A, B, C, D = (
        -torch.rand(d, n) * 4,
        torch.randn(b, length, n),
        torch.randn(b, length, n),
        torch.randn(d),
    )
    h0 = torch.randn(b, d, n)
    y, last = selective_scan(x, dt, A, B, C, D, h0=h0)
    y_ref, last_ref = _sequential_selective_scan(x, dt, A, B, C, D, h0)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(last, last_ref, rtol=1e-5, atol=1e-5)


def test_linear_scan_gradients_are_exact() -> None:
    a = torch.rand(2, 11, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 11, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(linear_scan, (a, b, h0))
    assert torch.autograd.gradcheck(lambda a, b: linear_scan(a, b), (a, b))


@pytest.mark.parametrize(("length", "chunk"), [(1, 4), (8, 4), (13, 4), (13, 16), (30, 7)])
def test_ssd_scan_matches_the_recurrence(length: int, chunk: int) -> None:
    b, h, p, n = 2, 3, 4, 5
    x, dt = torch.randn(b, length, h, p), torch.rand(b, length, h)
    A, B, C = -torch.rand(h) * 4, torch.randn(b, length, 1, n), torch.randn(b, length, 1, n)
    h0 = torch.randn(b, h, p, n)
    y, last = ssd_scan(x, dt, A, B, C, chunk, h0=h0)
    state, ys = h0.clone(), []
    for t in range(length):
        decay = torch.exp(dt[:, t] * A)[..., None, None]
        state = decay * state + torch.einsum("bh,bn,bhp->bhpn", dt[:, t], B[:, t, 0], x[:, t])
        ys.append(torch.einsum("bhpn,bn->bhp", state, C[:, t, 0]))
    torch.testing.assert_close(y, torch.stack(ys, 1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(last, state, rtol=1e-4, atol=1e-5)
