"""Seconds per MACAW meta-step at the official network size, on random task buffers.

    .venv/bin/python packages/baselines/benchmarks/macaw_step_time.py --device cpu --obs 8 --act 2

Official sizes (3 × 100 WLinear layers, latent 100), 5 tasks × 256 transitions per step.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from icrl.baselines.macaw import Macaw, MacawConfig, build_macaw_buffer, meta_step
from icrl.baselines.macaw._algo import make_optimizers


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--obs", type=int, default=8)
    p.add_argument("--act", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    n = 5000

    def buffer():
        o = rng.normal(size=(n, args.obs))
        a = rng.uniform(-1, 1, (n, args.act))
        ends = np.arange(n) % 50 == 49
        return build_macaw_buffer(
            o, a, rng.normal(size=n), o, np.zeros(n, bool), ends, np.arange(n) // 50
        ).to(args.device)

    buffers = [buffer() for _ in range(10)]
    model = Macaw(args.obs, args.act, MacawConfig()).to(args.device)
    opts = make_optimizers(model)
    n_v = sum(p.numel() for p in model.value.parameters())
    n_p = sum(p.numel() for p in model.policy.parameters())
    meta_step(model, opts, buffers, rng)  # warm-up
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else lambda: None
    sync()
    t = time.perf_counter()
    for _ in range(args.steps):
        meta_step(model, opts, buffers, rng)
    sync()
    dt = (time.perf_counter() - t) / args.steps
    print(f"value {n_v:,} / policy {n_p:,} parameters; {dt:.3f} s per meta-step on {args.device}")


if __name__ == "__main__":
    main()
