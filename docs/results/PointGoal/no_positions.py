"""The testbed's transformer with its position table zeroed and frozen (a research probe, not an
option of the package): does in-context learning on PointGoal need the positions?

    python docs/results/PointGoal/no_positions.py OUT HISTORIES.h5

Trains the PointGoal transformer preset with a Gaussian head on the given histories (as
testbed_run.py does) with every `TransformerBackbone.pos_emb` set to 0 and excluded from the
optimiser, then evaluates it on the 10 test tasks (sampled actions). Causal attention without
positions can still count, but only indirectly. Compare with testbed_run.py's `gaussian` run on
the same histories file.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from icrl.ad import EvalConfig, evaluate, preset, train
from icrl.seqmodels._transformer import TransformerBackbone

_init = TransformerBackbone.__init__


def _init_without_positions(self, config) -> None:
    _init(self, config)
    with torch.no_grad():
        self.pos_emb.weight.zero_()
    self.pos_emb.weight.requires_grad_(False)


def main() -> None:
    out, histories = Path(sys.argv[1]), Path(sys.argv[2])
    TransformerBackbone.__init__ = _init_without_positions
    t0 = time.time()
    overrides = ['device="cpu"', "progress=false", 'model.action_head="gaussian"']
    cfg = preset("PointGoal", "transformer", histories=histories, overrides=overrides)
    res = train(cfg, out / "run")
    state = torch.load(res.checkpoint, map_location="cpu", weights_only=False)
    pos = [v for k, v in state["model"].items() if k.endswith("pos_emb.weight")]
    assert pos and all(float(p.abs().max()) == 0.0 for p in pos), "positions were trained"
    ec = EvalConfig(device="cpu", progress=False, asynchronous=False,
                    method="AD-transformer (gaussian, no positions)")  # fmt: skip
    evaluate(ec, [res.checkpoint], out / "eval")
    s = json.loads((out / "eval" / "summary.json").read_text())
    print(f"no positions {time.time() - t0:.0f} s {json.dumps(s)}", flush=True)


if __name__ == "__main__":
    main()
