"""CPU cost of the pure-PyTorch paths vs context length (a script, not a test).

Forward + backward tokens/s of small Mamba (reference scan) and transformer (SDPA) backbones in
float32, and per-token `step` time, on whatever CPU runs it:

    python packages/seqmodels/benchmarks/bench_reference_cpu.py --lengths 256,1024,4096
"""

from __future__ import annotations

import argparse
import time

import torch

from icrl.seqmodels import MambaConfig, TransformerConfig, build_backbone


def train_rate(model, length: int, tokens: int, iters: int) -> float:
    """Forward + backward tokens/s at one context length."""
    batch = max(1, tokens // length)
    x = torch.randn(batch, length, model.d_model)
    model(x).square().mean().backward()  # warm-up
    start = time.perf_counter()
    for _ in range(iters):
        model(x).square().mean().backward()
    return batch * length * iters / (time.perf_counter() - start)


def step_ms(model, batch: int, steps: int) -> float:
    """Mean milliseconds per `step` for `batch` sequences."""
    state = model.init_state(batch)
    x = torch.randn(batch, model.d_model)
    with torch.no_grad():
        model.step(x, state)
        start = time.perf_counter()
        for _ in range(steps):
            model.step(x, state)
    return (time.perf_counter() - start) / steps * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", default="256,1024,4096")
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads (oversubscription hurts)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {
        "mamba (reference)": build_backbone(
            MambaConfig(d_model=args.d_model, n_layers=args.layers, backend="reference")
        ),
        "transformer (SDPA)": build_backbone(
            TransformerConfig(
                d_model=args.d_model, n_layers=args.layers, d_ff=4 * args.d_model, max_len=8192
            )
        ),
    }
    lengths = [int(n) for n in args.lengths.split(",")]
    print(f"threads={torch.get_num_threads()} d_model={args.d_model} layers={args.layers}")
    print("| backbone | " + " | ".join(f"L={n}" for n in lengths) + " | step, batch 30 |")
    print("|---" * (len(lengths) + 2) + "|")
    for name, model in models.items():
        rates = [f"{train_rate(model, n, args.tokens, args.iters) / 1e3:.1f}k" for n in lengths]
        print(f"| {name} | " + " | ".join(rates) + f" | {step_ms(model, 30, 50):.2f} ms |")


if __name__ == "__main__":
    main()
