"""Benchmark the paper-12M backbones on a CUDA GPU (a script, not a test).

Measures, in bf16 autocast:
  * training: forward + backward tokens/s and peak memory vs context length, for the Mamba
    backbone (mamba-ssm kernels), the same number of bare mamba-ssm `Mamba` layers (no norms,
    no residual: the kernels' ceiling), and the transformer (SDPA or flash-attn);
  * inference: `step` latency for a batch of 30 vs context length, eager and as a CUDA graph;
  * a real CUDA-graph Mamba rollout to the longest context, latency per window.
Results are written (atomically, after every measurement) to a JSON file, and a Markdown
summary is printed at the end. A time budget stops it cleanly, keeping what was measured.

    python packages/seqmodels/benchmarks/bench_backbones.py --out bench.json --budget 200
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from icrl.seqmodels import (
    PAPER_CONFIGS,
    CudaGraphStep,
    build_backbone,
    flash_kernels,
    mamba_kernels,
)
from icrl.seqmodels._config import MambaConfig, TransformerConfig


class Budget:
    """Wall-clock guard: measurements are skipped once the budget is spent."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def write_json(path: Path, data: dict) -> None:
    """Atomic write: temp file in the same folder, flush, rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def bare_mamba_layers(config: MambaConfig) -> nn.Module:
    """n_layers of mamba-ssm's own `Mamba` mixer chained, nothing else."""
    from mamba_ssm.modules.mamba_simple import Mamba

    return nn.Sequential(
        *[
            Mamba(
                config.d_model,
                d_state=config.d_state,
                d_conv=config.d_conv,
                expand=config.expand,
                layer_idx=i,
            )
            for i in range(config.n_layers)
        ]
    )


def time_train(model: nn.Module, d_model: int, length: int, tokens: int, iters: int) -> dict:
    """Forward + backward tokens/s and peak memory at one context length (bf16 autocast)."""
    batch = max(1, tokens // length)
    x = torch.randn(batch, length, d_model, device="cuda")

    def once() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y = model(x)
        y.float().square().mean().backward()

    try:
        for _ in range(2):
            once()
        model.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for _ in range(iters):
            once()
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    except torch.OutOfMemoryError:
        model.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        return {"length": length, "batch": batch, "oom": True}
    model.zero_grad(set_to_none=True)
    peak = torch.cuda.max_memory_allocated() / 2**30
    torch.cuda.empty_cache()
    return {
        "length": length,
        "batch": batch,
        "tokens_per_s": batch * length * iters / elapsed,
        "peak_gib": peak,
    }


def _prime_transformer_state(state, position: int) -> None:
    state.pos.fill_(position)
    state.length = position


def time_step(model, batch: int, context: int, graph: bool, iters: int) -> dict:
    """Mean `step` latency at position ~context (cache contents do not change the cost)."""
    is_transformer = hasattr(model, "pos_emb")
    x = torch.randn(batch, model.d_model, device="cuda", dtype=torch.bfloat16)
    start_pos = max(0, context - iters - 5)
    with torch.no_grad():
        if graph:
            runner = CudaGraphStep(
                model,
                batch,
                capacity=context if is_transformer else None,
                state_dtype=torch.bfloat16 if is_transformer else None,
            )
            if is_transformer:
                _prime_transformer_state(runner.state, start_pos)

            def call() -> None:
                runner(x)
        else:
            state = model.init_state(
                batch, **({"capacity": context, "dtype": torch.bfloat16} if is_transformer else {})
            )
            if is_transformer:
                _prime_transformer_state(state, start_pos)

            def call() -> None:
                model.step(x, state)

        for _ in range(3):
            call()
        torch.cuda.synchronize()
        begin = time.perf_counter()
        for _ in range(iters):
            call()
        torch.cuda.synchronize()
        ms = (time.perf_counter() - begin) / iters * 1e3
    return {"context": context, "graph": graph, "batch": batch, "ms": ms}


def graph_rollout(model, batch: int, length: int, window: int, budget: Budget) -> list[dict]:
    """Step a CUDA-graph Mamba through `length` tokens; latency of each power-of-two window."""
    runner = CudaGraphStep(model, batch)
    x = torch.randn(batch, model.d_model, device="cuda", dtype=torch.bfloat16)
    marks = {2**k for k in range(10, int(math.log2(length)) + 1)}
    out, t = [], 0
    with torch.no_grad():
        while t < length and budget.left() > 5:
            if t + window in marks:
                torch.cuda.synchronize()
                begin = time.perf_counter()
                for _ in range(window):
                    runner(x)
                torch.cuda.synchronize()
                ms = (time.perf_counter() - begin) / window * 1e3
                out.append({"context": t + window, "ms": ms})
            else:
                for _ in range(window):
                    runner(x)
            t += window
    torch.cuda.synchronize()
    return out


def environment() -> dict:
    k = mamba_kernels()
    info = {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "mamba_kernels": k is not None,
        "mamba_path": None
        if k is None
        else (
            "fused mamba_inner_fn (causal-conv1d)"
            if k.causal_conv1d_fn
            else "unfused: torch conv1d + selective_scan_fn (no causal-conv1d)"
        ),
    }
    try:
        import mamba_ssm

        info["mamba_ssm"] = mamba_ssm.__version__
    except ImportError:
        info["mamba_ssm"] = None
    return info


def markdown(results: dict) -> str:
    lines = []
    train = results.get("train", {})
    if train:
        lengths = sorted({r["length"] for rows in train.values() for r in rows})
        lines.append(
            "| forward+backward, M tokens/s (peak GiB) | "
            + " | ".join(f"{n // 1024}k" for n in lengths)
            + " |"
        )
        lines.append("|---" * (len(lengths) + 1) + "|")
        for name, rows in train.items():
            by = {r["length"]: r for r in rows}
            cells = []
            for n in lengths:
                r = by.get(n)
                if r is None:
                    cells.append("")
                elif r.get("oom") or r.get("error"):
                    cells.append("OOM" if r.get("oom") else "error")
                else:
                    cells.append(f"{r['tokens_per_s'] / 1e6:.2f} ({r['peak_gib']:.1f})")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    step = results.get("step", {})
    if step:
        contexts = sorted({r["context"] for rows in step.values() for r in rows})
        lines.append("")
        lines.append(
            "| step, batch 30, ms | " + " | ".join(f"{c // 1024}k" for c in contexts) + " |"
        )
        lines.append("|---" * (len(contexts) + 1) + "|")
        for name, rows in step.items():
            by = {r["context"]: r for r in rows}
            cells = [f"{by[c]['ms']:.3f}" if "ms" in by.get(c, {}) else "" for c in contexts]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if results.get("rollout"):
        lines.append("")
        lines.append(
            "CUDA-graph Mamba rollout, ms/step by context reached: "
            + ", ".join(f"{r['context'] // 1024}k: {r['ms']:.3f}" for r in results["rollout"])
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="JSON file to write")
    p.add_argument("--lengths", default="1024,2048,4096,8192,16384,32768,65536")
    p.add_argument("--tokens", type=int, default=65536, help="tokens per training iteration")
    p.add_argument("--iters", type=int, default=4, help="timed training iterations")
    p.add_argument("--step-batch", type=int, default=30)
    p.add_argument("--step-iters", type=int, default=100)
    p.add_argument("--budget", type=float, default=240.0, help="seconds before stopping")
    p.add_argument("--only", default="train,step,rollout,reference")
    p.add_argument(
        "--backbones",
        default="mamba,transformer",
        help="comma list: mamba (ours, bare layers, reference), transformer (SDPA, and "
        "flash-attn when importable)",
    )
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_backbones.py needs a CUDA GPU", file=sys.stderr)
        return 2
    if args.out.exists():
        print(f"{args.out} exists; refusing to overwrite it", file=sys.stderr)
        return 2
    budget = Budget(args.budget)
    lengths = [int(n) for n in args.lengths.split(",")]
    only = set(args.only.split(","))
    torch.manual_seed(0)
    mamba_cfg, tf_cfg = PAPER_CONFIGS["mamba-12m"], PAPER_CONFIGS["transformer-12m"]
    assert isinstance(mamba_cfg, MambaConfig) and isinstance(tf_cfg, TransformerConfig)
    tf_cfg = TransformerConfig(**{**tf_cfg.__dict__, "max_len": max(lengths), "backend": "sdpa"})
    tf_flash = TransformerConfig(**{**tf_cfg.__dict__, "backend": "flash-attn"})
    backbones = set(args.backbones.split(","))
    results: dict = {
        "environment": environment(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "command": " ".join([sys.executable, *sys.argv]),
        "train": {},
        "step": {},
        "rollout": [],
        "skipped": [],
    }
    print(json.dumps(results["environment"]), flush=True)

    def save() -> None:
        write_json(args.out, results)

    def record(kind: str, label: str, row: dict, shown: str | None = None) -> None:
        """Keep one measured row (or its error) under results[kind][label], print it and write
        the file so far."""
        results[kind].setdefault(label, []).append(row)
        print(kind, label if shown is None else shown, row, flush=True)
        save()

    # name -> (backbone family for --backbones, builder); rows missing kernels are dropped
    candidates = {
        "mamba-12m backbone (ours)": ("mamba", lambda: build_backbone(mamba_cfg)),
        "8 bare mamba-ssm Mamba layers": ("mamba", lambda: bare_mamba_layers(mamba_cfg)),
        "transformer-12m (SDPA)": ("transformer", lambda: build_backbone(tf_cfg)),
        "transformer-12m (flash-attn)": ("transformer", lambda: build_backbone(tf_flash)),
    }
    if mamba_kernels() is None:
        candidates.pop("8 bare mamba-ssm Mamba layers")
        results["skipped"].append("mamba-ssm kernels not importable: Mamba runs the reference")
    if flash_kernels() is None:
        candidates.pop("transformer-12m (flash-attn)")
        results["skipped"].append("flash-attn not importable: the transformer runs SDPA only")
    models = {name: make for name, (kind, make) in candidates.items() if kind in backbones}
    if "train" in only:
        # interleave models per length so a budget cut leaves comparable rows
        built = {name: make().cuda() for name, make in models.items()}
        for length in lengths:
            for name, model in built.items():
                if budget.left() < 20:
                    results["skipped"].append(f"train {name} L={length} (budget)")
                    continue
                try:
                    row = time_train(
                        model, model_d(model, mamba_cfg, tf_cfg), length, args.tokens, args.iters
                    )
                except Exception as exc:  # record it, keep measuring the rest
                    row = {"length": length, "error": repr(exc)[:400]}
                    model.zero_grad(set_to_none=True)
                    torch.cuda.empty_cache()
                record("train", name, row)
        del built
        torch.cuda.empty_cache()
    if "step" in only:
        for name, make in models.items():
            if name == "8 bare mamba-ssm Mamba layers":  # no step of their own here
                continue
            model = make().cuda().to(torch.bfloat16)
            for graph in (False, True):
                label = f"{name} {'CUDA graph' if graph else 'eager'}"
                for context in lengths:
                    if budget.left() < 15:
                        results["skipped"].append(f"step {label} c={context} (budget)")
                        continue
                    try:
                        row = time_step(model, args.step_batch, context, graph, args.step_iters)
                    except Exception as exc:  # record it, keep measuring the rest
                        row = {"context": context, "graph": graph, "error": repr(exc)[:400]}
                        torch.cuda.empty_cache()
                    record("step", label, row)
            del model
            torch.cuda.empty_cache()
    if "rollout" in only and "mamba" in backbones and budget.left() > 20:
        model = build_backbone(mamba_cfg).cuda().to(torch.bfloat16)
        try:
            results["rollout"] = graph_rollout(model, args.step_batch, max(lengths), 256, budget)
        except Exception as exc:
            results["skipped"].append(f"rollout failed: {exc!r}"[:400])
        print("rollout", results["rollout"], flush=True)
        save()
    if "reference" in only and "mamba" in backbones and budget.left() > 20:
        ref = build_backbone(MambaConfig(**{**mamba_cfg.__dict__, "backend": "reference"})).cuda()
        for length in (1024, 4096):
            if budget.left() < 15:
                break
            try:
                row = time_train(ref, mamba_cfg.d_model, length, 4096, 2)
            except Exception as exc:
                row = {"length": length, "error": repr(exc)[:400]}
            record("train", "mamba-12m PyTorch reference", row, shown="reference")
    save()
    print(markdown(results))
    return 0


def model_d(model: nn.Module, mamba_cfg: MambaConfig, tf_cfg: TransformerConfig) -> int:
    return tf_cfg.d_model if hasattr(model, "pos_emb") else mamba_cfg.d_model


if __name__ == "__main__":
    raise SystemExit(main())
