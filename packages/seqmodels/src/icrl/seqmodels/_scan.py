"""Pure-PyTorch selective scans: the parallel linear recurrence behind the Mamba reference.

The recurrence h_t = a_t * h_{t-1} + b_t (elementwise) is solved by a Hillis-Steele parallel
prefix scan over time: ceil(log2 L) rounds of whole-tensor ops, so O(L log L) work and O(log L)
sequential depth (no Python loop over time steps). A custom autograd function keeps only `a` and
`h` for the backward pass, which is the same kind of scan run in reverse, so training memory is
O(L * channels * d_state), as in a naive unrolled recurrence but without its L kernel launches.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _acc(t: Tensor) -> Tensor:
    """Accumulation precision: float32, or float64 when given float64."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _prefix_scan_(a: Tensor, b: Tensor) -> Tensor:
    """In place: turn (a, b) along dim 1 into (cumprod a, h with h_{-1} = 0); return b."""
    length, offset = a.shape[1], 1
    while offset < length:
        # Element t holds the map composed over (t-offset, t]; compose it with the one over
        # (t-2*offset, t-offset]. Right-hand sides are evaluated before the slice is written.
        b[:, offset:] = b[:, offset:] + a[:, offset:] * b[:, :-offset]
        a[:, offset:] = a[:, offset:] * a[:, :-offset]
        offset *= 2
    return b


class _LinearScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, h0: Tensor | None) -> Tensor:  # type: ignore[override]
        cum_a, h = a.clone(), b.clone()
        _prefix_scan_(cum_a, h)
        if h0 is not None:
            h = h + cum_a * h0.unsqueeze(1)
        ctx.save_for_backward(a, h, h0)
        return h

    @staticmethod
    def backward(ctx, grad_h: Tensor):  # type: ignore[override]
        a, h, h0 = ctx.saved_tensors
        # dL/dh_t accumulates grad_h_t + a_{t+1} dL/dh_{t+1}: the same scan, reversed in time.
        a_next = torch.cat([a[:, 1:], torch.zeros_like(a[:, :1])], dim=1)
        g = _prefix_scan_(a_next.flip(1), grad_h.flip(1).clone()).flip(1)
        h_prev = torch.cat(
            [torch.zeros_like(h[:, :1]) if h0 is None else h0.unsqueeze(1), h[:, :-1]], dim=1
        )
        grad_h0 = None if h0 is None else a[:, 0] * g[:, 0]
        return g * h_prev, g, grad_h0


def linear_scan(a: Tensor, b: Tensor, h0: Tensor | None = None) -> Tensor:
    """Solve h_t = a_t * h_{t-1} + b_t along dim 1 (h_{-1} = h0, or zeros); a, b: (B, L, ...)."""
    if a.shape != b.shape:
        raise ValueError(f"linear_scan: a {tuple(a.shape)} and b {tuple(b.shape)} must match")
    return _LinearScan.apply(a, b, h0)


def selective_scan(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor,
    h0: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Mamba-1's S6 scan in float32 (float64 if given); returns (y (B, L, d), last state (B, d, N)).

    x, dt: (B, L, d) with dt already through softplus; A: (d, N) (negative); B, C: (B, L, N);
    D: (d,). Computes h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t and y_t = h_t C_t + D x_t.
    """
    x, dt, B, C = _acc(x), _acc(dt), _acc(B), _acc(C)
    decay = torch.exp(dt.unsqueeze(-1) * _acc(A))  # (B, L, d, N)
    drive = (dt * x).unsqueeze(-1) * B.unsqueeze(2)  # (B, L, d, N)
    h = linear_scan(decay, drive, None if h0 is None else _acc(h0))
    y = torch.einsum("bldn,bln->bld", h, C) + _acc(D) * x
    return y, h[:, -1]


def segsum(x: Tensor) -> Tensor:
    """Stable segment sums: out[..., i, j] = sum(x[..., j+1 : i+1]) for j <= i, else -inf."""
    length = x.shape[-1]
    x = x.unsqueeze(-1).expand(*x.shape, length)
    below = torch.tril(torch.ones(length, length, dtype=torch.bool, device=x.device), diagonal=-1)
    x = x.masked_fill(~below, 0.0)
    out = torch.cumsum(x, dim=-2)
    keep = torch.tril(torch.ones(length, length, dtype=torch.bool, device=x.device), diagonal=0)
    return out.masked_fill(~keep, float("-inf"))


def ssd_scan(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk: int, h0: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Mamba-2's chunked SSD scan (the Mamba-2 paper's minimal algorithm), float32 or float64.

    x: (B, L, H, P), dt: (B, L, H) after softplus, A: (H,) negative, B, C: (B, L, G, N) with
    H % G == 0, h0: (B, H, P, N). Returns (y (B, L, H, P) without the D skip, last state).
    Cost: O(L * chunk) for the intra-chunk quadratic form plus the chunk hand-offs as one
    (L/chunk)^2 product, i.e. quadratic in L/chunk (fine for the reference's use); memory
    O(L * chunk * H).
    """
    batch, length, heads, _ = x.shape
    groups = B.shape[2]
    pad = (-length) % chunk
    x, dt, B, C = _acc(x), _acc(dt), _acc(B), _acc(C)
    if pad:
        x, dt, B, C = (
            torch.nn.functional.pad(t, (0, 0) * (t.dim() - 2) + (0, pad)) for t in (x, dt, B, C)
        )
    rep = heads // groups
    B = B.repeat_interleave(rep, dim=2)
    C = C.repeat_interleave(rep, dim=2)
    n_chunks = x.shape[1] // chunk

    def chunked(t: Tensor) -> Tensor:
        return t.reshape(batch, n_chunks, chunk, *t.shape[2:])

    xc, Bc, Cc = chunked(x * dt.unsqueeze(-1)), chunked(B), chunked(C)
    Ac = chunked(dt * _acc(A)).permute(0, 3, 1, 2)  # (B, H, c, l)
    A_cum = torch.cumsum(Ac, dim=-1)
    # 1. within-chunk outputs (the "attention-like" quadratic form)
    decay_in = torch.exp(segsum(Ac))
    y_diag = torch.einsum("bclhn,bcshn,bhcls,bcshp->bclhp", Cc, Bc, decay_in, xc)
    # 2. each chunk's final state from its own inputs
    decay_states = torch.exp(A_cum[..., -1:] - A_cum)
    states = torch.einsum("bclhn,bhcl,bclhp->bchpn", Bc, decay_states, xc)
    # 3. hand states across chunks
    init = torch.zeros_like(states[:, :1]) if h0 is None else _acc(h0).unsqueeze(1)
    states = torch.cat([init, states], dim=1)
    decay_chunk = torch.exp(segsum(torch.nn.functional.pad(A_cum[..., -1], (1, 0))))
    new_states = torch.einsum("bhzc,bchpn->bzhpn", decay_chunk, states)
    states, last = new_states[:, :-1], new_states[:, -1]
    # 4. contribution of the carried-in state to each position
    y_off = torch.einsum("bclhn,bchpn,bhcl->bclhp", Cc, states, torch.exp(A_cum))
    # Padded steps have dt = 0 (decay 1, no input), so they leave the last state unchanged.
    y = (y_diag + y_off).reshape(batch, n_chunks * chunk, heads, -1)[:, :length]
    return y, last
