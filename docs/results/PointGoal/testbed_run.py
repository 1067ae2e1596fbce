"""The PointGoal testbed with any backbone, head and device: histories, AD, in-context evaluation.

    python docs/results/PointGoal/testbed_run.py OUT [--backbone mamba] [--device cuda]

Trains three models on one PointGoal histories file (the presets): Gaussian head, MSE head
(the paper's), and a blinded Gaussian head (rewards zeroed in training and evaluation); prints
and writes each one's summary.json. The CPU test (ad-core tests/test_icrl_testbed.py) runs the
transformer; this script exists to run the same check with Mamba on a GPU.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from icrl.ad import EvalConfig, evaluate, preset, train
from icrl.histories import PRESETS, GenerateConfig, HistoryFile, generate
from icrl.histories.runtime import parse_sets

VARIANTS = {
    "gaussian": ['model.action_head="gaussian"'],
    "mse": ['model.action_head="mse"'],
    "blind": ['model.action_head="gaussian"', 'data.reward_ablation="zero"'],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--backbone", default="mamba", choices=["mamba", "transformer"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--max-steps", type=int, help="training steps (default: the preset's)")
    parser.add_argument(
        "--noise-distilled",
        type=int,
        metavar="EPISODES",
        help="train on noise-distilled histories of this many episodes per task instead of the "
        "learning runs (GenerateConfig.noise_distillation)",
    )
    parser.add_argument("--anneal", type=float, default=0.8,
                        help="with --noise-distilled: fraction of the episodes over which the "
                        "noise falls to 0 (default 0.8)")  # fmt: skip
    parser.add_argument("--noise-shape", default="uniform", choices=["uniform", "gaussian"],
                        help="with --noise-distilled: the noise blended in "
                        "(NoiseDistillation.noise; default uniform)")  # fmt: skip
    parser.add_argument("--also-mean", action="store_true",
                        help="also evaluate each Gaussian-head checkpoint acting with its mean "
                        "(EvalConfig(sample=False)), into NAME/eval-mean")  # fmt: skip
    parser.add_argument("--also-uniform", action="store_true",
                        help="also evaluate each Gaussian-head checkpoint sampled with uniform "
                        "noise of the head's std (EvalConfig(sample_noise='uniform')), into "
                        "NAME/eval-uniform")  # fmt: skip
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--source-set", dest="source", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="a source-algorithm override (JSON value), e.g. "
                        "gradient_steps=10: a faster learner, a more abrupt history")  # fmt: skip
    parser.add_argument("--set", dest="extra", action="append", default=[],
                        help='a further TrainConfig override, e.g. model.d_model=128')  # fmt: skip
    args = parser.parse_args()
    t0 = time.time()
    noise = (
        None
        if args.noise_distilled is None
        else {"episodes": args.noise_distilled, "anneal": args.anneal, "noise": args.noise_shape}
    )
    algorithm = PRESETS["PointGoal"].algorithm
    algorithm = algorithm.model_validate({**algorithm.model_dump(), **parse_sets(args.source)})
    gen = GenerateConfig(family="PointGoal", tasks=args.tasks, backend="batched",
                         device=args.device, workers=0, progress=False, algorithm=algorithm,
                         noise_distillation=noise)  # fmt: skip
    h = generate(gen, args.out / "histories.h5")
    print(f"histories {time.time() - t0:.0f} s; {_pace(h)}", flush=True)
    for name in args.variants:
        extra = VARIANTS[name]
        t1 = time.time()
        overrides = [f'device="{args.device}"', "progress=false", *extra, *args.extra]
        if args.max_steps:
            overrides.append(f"max_steps={args.max_steps}")
        res = train(preset("PointGoal", args.backbone, histories=h, overrides=overrides),
                    args.out / name / "run")  # fmt: skip
        # a blinded variant is evaluated blinded: EvalConfig follows the checkpoint's training
        ec = EvalConfig(device=args.device, progress=False, asynchronous=False,
                        method=f"AD-{args.backbone} ({name})")  # fmt: skip
        _evaluate(ec, res.checkpoint, args.out / name / "eval", name, t1)
        if args.also_mean and name != "mse":  # the same checkpoint, acting with its mean
            mean = ec.model_copy(update={"sample": False, "method": f"{ec.method}, mean"})
            _evaluate(mean, res.checkpoint, args.out / name / "eval-mean", f"{name} mean")
        if args.also_uniform and name != "mse":  # sampled, with uniform noise of the same std
            uni = ec.model_copy(update={"sample_noise": "uniform",
                                        "method": f"{ec.method}, uniform noise"})  # fmt: skip
            _evaluate(uni, res.checkpoint, args.out / name / "eval-uniform", f"{name} uniform")


def _evaluate(ec: EvalConfig, checkpoint: Path, out: Path, label: str, t0: float | None = None):
    """Evaluate one checkpoint into `out` and print its summary with the time since t0 (default:
    now, the evaluation's own time)."""
    t0 = time.time() if t0 is None else t0
    evaluate(ec, [checkpoint], out)
    s = json.loads((out / "summary.json").read_text())
    print(f"{label} {time.time() - t0:.0f} s {json.dumps(s)}", flush=True)


def _pace(path: Path) -> str:
    """How the source's mean return (over tasks) rises along its recorded history: the share of
    its total rise reached after 10%, 25% and 50% of the episodes (an abrupt learner is near 100%
    early; AD needs the rise spread out to have a step it can distil)."""
    f = HistoryFile(path)
    curves = [f.episode_returns(name)[0] for name in f.tasks]
    mean = np.mean([c[: min(map(len, curves))] for c in curves], axis=0)
    n = len(mean)
    first, last = mean[: max(1, n // 20)].mean(), mean[-max(1, n // 20) :].mean()
    share = [(mean[int(q * n) - 2 : int(q * n) + 2].mean() - first) / (last - first)
             for q in (0.1, 0.25, 0.5)]  # fmt: skip
    return (f"source {first:.2f} -> {last:.2f}; share of the rise at 10/25/50% of the episodes: "
            + " / ".join(f"{x:.0%}" for x in share))  # fmt: skip


if __name__ == "__main__":
    main()
