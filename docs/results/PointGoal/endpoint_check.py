"""Does the pre-registered endpoint (docs/results/README.md) read in-context RL where it is known
to be, and only there? A check of the rule on the CPU testbed, where the answer is known.

    python docs/results/PointGoal/endpoint_check.py OUT [--seeds 0 1]

On one PointGoal histories file (the preset's source, 20 training tasks), trains the testbed's
AD transformer (Gaussian head, sampled) with rewards and blinded (every context reward zeroed in
training and evaluation), once per seed, evaluates each in context on the 10 canonical test tasks,
and reads the rule (`twin_compare.endpoint`) on:
- each seed's model against its own blinded twin: in-context RL is established on this family
  (ad-core's tests/test_icrl_testbed.py), so the rule should read "shown";
- a blinded model of one seed against the blinded twin of another, as if it were the model: it
  cannot read rewards by construction, so the rule must read "not shown" (a specificity check of
  one pair per ordered seed pair, not a false-positive rate).
Each model's curve is a (10 tasks x 1 seed x episodes) array; runs resume from OUT.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # twin_compare.py
from twin_compare import endpoint

from icrl.ad import EvalConfig, evaluate, preset, train
from icrl.histories import GenerateConfig, generate


def run(histories: Path, out: Path, seed: int, blind: bool) -> np.ndarray:
    """(tasks, 1, episodes) in-context returns of one testbed model (trained unless in `out`)."""
    ablation = '"zero"' if blind else '"none"'
    overrides = ['device="cpu"', "progress=false", f"data.reward_ablation={ablation}",
                 f"seed={seed}"]  # fmt: skip
    cfg = preset("PointGoal", "transformer", histories=histories, overrides=overrides)
    result = train(cfg, out / "run")
    ec = EvalConfig(device="cpu", progress=False, asynchronous=False,
                    reward_ablation="zero" if blind else "none")  # fmt: skip
    if not (out / "eval" / "returns.npz").is_file():
        evaluate(ec, [result.checkpoint], out / "eval")
    returns = np.load(out / "eval" / "returns.npz")["returns"]  # (tasks, seeds: 1, episodes)
    return returns[:, :1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    a = p.parse_args()
    t0 = time.time()
    gen = GenerateConfig(family="PointGoal", tasks=20, workers=0, backend="batched",
                         progress=False)  # fmt: skip
    h = generate(gen, a.out / "histories.h5")
    print(f"histories {time.time() - t0:.0f} s", flush=True)
    curves: dict[tuple[str, int], np.ndarray] = {}
    for seed, blind in itertools.product(a.seeds, (False, True)):
        name = f"{'blind' if blind else 'rewards'}-s{seed}"
        t1 = time.time()
        r = run(h, a.out / name, seed, blind)
        curves["blind" if blind else "rewards", seed] = r
        print(f"{name}: {time.time() - t1:.0f} s, first {r[..., 0].mean():.2f}, last 10 "
              f"{r[..., -10:].mean():.2f}", flush=True)  # fmt: skip
    readings = []
    for seed in a.seeds:
        e = endpoint(curves["rewards", seed], curves["blind", seed])
        readings.append({"model": f"rewards-s{seed}", "twin": f"blind-s{seed}", "expected":
                         "shown", "reading": str(e), "shown": e.shown})  # fmt: skip
    for s1, s2 in itertools.permutations(a.seeds, 2):
        e = endpoint(curves["blind", s1], curves["blind", s2])
        readings.append({"model": f"blind-s{s1}", "twin": f"blind-s{s2}", "expected":
                         "not shown", "reading": str(e), "shown": e.shown})  # fmt: skip
    for r in readings:
        print(f"{r['model']} vs {r['twin']} (expected {r['expected']}): {r['reading']}")
    (a.out / "readings.json").write_text(json.dumps(readings, indent=1))
    print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
