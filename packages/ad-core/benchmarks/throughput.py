"""AD training throughput (full model vs bare backbone) and a timed in-context evaluation.

For each backbone (the paper's 12M Mamba and transformer by default, bf16 autocast on CUDA):
tokens/s of one training step (forward + backward + AdamW) of the full AD model (token
normalisation, per-component embeddings, backbone, action head, MSE) next to the bare backbone on
(B, L, d_model) inputs, at each context length L given on the command line; then the wall time of
an in-context evaluation of N rollouts (one test task per sub-env, one batched model step per env
step) on the family's real environments. Weights are random: speed does not depend on them.

    uv run packages/ad-core/benchmarks/throughput.py --contexts 1000 10000 50000
    uv run packages/ad-core/benchmarks/throughput.py --size tiny --device cpu --contexts 64 128 \
        --iters 1 --eval-rollouts 2 --eval-episodes 1 --family ReacherGoal --sync
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext

import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from icrl.ad import ADConfig, preset_dict
from icrl.ad._evaluate import rollout
from icrl.ad._model import ADModel, NormStats
from icrl.ad._train import resolve_device
from icrl.metaenvs import episode_length, make_env, make_vector_env, test_tasks
from icrl.seqmodels import flash_kernels, mamba_kernels


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model(args, backbone: str, obs_dim: int, act_dim: int, max_len: int):
    model_cfg = preset_dict(args.family, backbone, args.size)["model"]
    if backbone == "transformer":
        model_cfg["kernel_backend"] = args.attention
    cfg = ADConfig.model_validate(model_cfg)
    norm = NormStats((0.0,) * obs_dim, (1.0,) * obs_dim, 0.0, 1.0)
    return ADModel(cfg, obs_dim, act_dim, norm, max_len if backbone == "transformer" else None)


def _kernels(backbone: str, device: torch.device, attention: str) -> str:
    """Which kernels the backbone's training forward runs on this device."""
    if device.type != "cuda":
        return ", PyTorch CPU path"
    if backbone == "mamba":
        return ", mamba-ssm kernels" if mamba_kernels() else ", PyTorch reference (no mamba-ssm)"
    if attention == "sdpa" or (attention == "auto" and flash_kernels() is None):
        return ", attention: SDPA"
    return ", attention: flash-attn (KV-cache steps in fp32 use SDPA)"


def _time_steps(fn, params, iters: int, warmup: int, device: torch.device) -> float:
    """Seconds per training step (forward + backward + AdamW) of fn() -> loss."""
    opt = torch.optim.AdamW(params, lr=1e-4)
    for i in range(warmup + iters):
        if i == warmup:
            _sync(device)
            tic = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        fn().backward()
        opt.step()
    _sync(device)
    return (time.perf_counter() - tic) / iters


def throughput(args, backbone: str, device: torch.device, obs_dim: int, act_dim: int) -> None:
    amp = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda" and not args.fp32
        else nullcontext()
    )
    model = _model(args, backbone, obs_dim, act_dim, max(args.contexts)).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    n_backbone = sum(p.numel() for p in model.backbone.parameters())
    print(
        f"\n{backbone}: AD model {n_params / 1e6:.2f}M parameters "
        f"(backbone {n_backbone / 1e6:.2f}M){_kernels(backbone, device, args.attention)}"
    )
    print("| context L | batch | AD model tokens/s | bare backbone tokens/s | AD / bare |")
    print("|---:|---:|---:|---:|---:|")
    width = model.layout.width
    for length in args.contexts:
        b = args.batch
        feats = torch.randn(b, length, width, device=device)
        targets = torch.rand(b, length, act_dim, device=device) * 2 - 1
        x = torch.randn(b, length, model.cfg.backbone.d_model, device=device)

        def full(feats=feats, targets=targets):
            with amp:
                pred = model(feats)
            return ((pred.float() - targets) ** 2).mean()

        def bare(x=x):
            with amp:
                y = model.backbone(x)
            return y.float().pow(2).mean()

        row = []
        for fn, params in ((full, model.parameters()), (bare, model.backbone.parameters())):
            try:
                sec = _time_steps(fn, list(params), args.iters, args.warmup, device)
                row.append(b * length / sec)
            except torch.OutOfMemoryError:
                row.append(float("nan"))
            if device.type == "cuda":
                torch.cuda.empty_cache()
        print(f"| {length} | {b} | {row[0]:,.0f} | {row[1]:,.0f} | {row[0] / row[1]:.2f} |")


def timed_eval(args, backbone: str, device: torch.device, obs_dim: int, act_dim: int) -> None:
    """Wall time of the evaluation: eager `step`, CUDA-graph step (CUDA), and env stepping only
    (zero actions, no model: the floor set by the simulators) in the same vector env."""
    horizon = episode_length(args.family)
    steps = args.eval_episodes * horizon
    model = _model(args, backbone, obs_dim, act_dim, steps).to(device).eval()
    tasks = test_tasks(args.family, args.eval_rollouts)
    envs = make_vector_env(
        args.family, tasks, asynchronous=not args.sync, autoreset_mode=AutoresetMode.DISABLED
    )
    modes = {"eager step": {"cuda_graph": False}}
    if device.type == "cuda":
        modes["CUDA-graph step"] = {"cuda_graph": True}
    modes["env only (zero actions)"] = {"policy": lambda f: np.zeros((len(f), act_dim))}
    print(
        f"\n{backbone}: in-context eval of {len(tasks)} rollouts × {args.eval_episodes} episodes "
        f"({steps} env steps each, one batched model step per env step)"
    )
    print("| mode | seconds | batched steps/s | env steps/s | mean return |")
    print("|---|---:|---:|---:|---:|")
    try:
        for name, kwargs in modes.items():
            tic = time.perf_counter()
            returns = rollout(
                model, envs, args.eval_episodes, seed=0, device=device, bf16=not args.fp32,
                max_tokens=steps, **kwargs,
            )  # fmt: skip
            sec = time.perf_counter() - tic
            print(
                f"| {name} | {sec:.2f} | {steps / sec:.1f} | {len(tasks) * steps / sec:,.0f} "
                f"| {np.mean(returns):.2f} |"
            )
    finally:
        envs.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--family", default="HalfCheetahVel", help="preset / env family")
    p.add_argument("--size", default="paper", choices=("tiny", "small", "paper"))
    p.add_argument("--backbones", nargs="+", default=["mamba", "transformer"])
    p.add_argument("--contexts", type=int, nargs="+", default=[1000, 10000, 50000])
    p.add_argument("--batch", type=int, default=1, help="contexts per training step")
    p.add_argument("--iters", type=int, default=5, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--attention",
        default="auto",
        choices=("auto", "sdpa", "flash-attn"),
        help="transformer attention: auto = flash-attn when importable on CUDA, else SDPA",
    )
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast on CUDA")
    p.add_argument("--eval-rollouts", type=int, default=30, help="test tasks (0: skip the eval)")
    p.add_argument("--eval-episodes", type=int, default=10, help="in-context episodes each")
    p.add_argument("--sync", action="store_true", help="SyncVectorEnv instead of subprocesses")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    env = make_env(args.family)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    env.close()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {device} ({name}), torch {torch.__version__}, family {args.family}, "
          f"size {args.size}, bf16 {device.type == 'cuda' and not args.fp32}")  # fmt: skip
    for backbone in args.backbones:
        throughput(args, backbone, device, obs_dim, act_dim)
    if args.eval_rollouts:
        print()
        for backbone in args.backbones:
            timed_eval(args, backbone, device, obs_dim, act_dim)


if __name__ == "__main__":
    main()
