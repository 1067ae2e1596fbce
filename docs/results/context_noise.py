"""Does the model read its learning stage from the action noise in its context?

Teacher-forced on held-out histories: the context's actions are replaced by
mu + s * (a - mu) (the source's deterministic action plus its exploration noise scaled by s;
rewards and observations stay as recorded), and the model's predicted std and its mean's
error to mu are reported per bin of kept episodes, for each s. If the predicted std follows s
(wider context noise -> wider predicted noise, as early in a learning run), the model infers
"how far along the learning run am I" from the noise in its context, so a sampler that is
noisier than the source keeps it in its early stage (the HalfCheetahVel hypothesis).

    python docs/results/context_noise.py --checkpoint RUN_DIR --histories test.h5 \
        --tasks 3 --scales 0 0.5 1 2 --out OUT.csv
"""

from __future__ import annotations

import argparse
import csv
import itertools
from pathlib import Path

import numpy as np
from _heldout import episode_length, load_eval_model

from icrl.ad import history_tokens
from icrl.ad._diagnose import _predict
from icrl.histories import HistoryFile


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True, help="a run dir or a .pt file")
    p.add_argument("--histories", type=Path, required=True, help="held-out histories (schema 2)")
    p.add_argument("--tasks", type=int, default=3)
    p.add_argument("--episodes", type=int, help="kept episodes per task (default: all)")
    p.add_argument("--scales", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0])
    p.add_argument("--bins", type=int, default=10)
    p.add_argument("--out", type=Path, required=True, help="CSV to write")
    a = p.parse_args()
    model, ckpt, device = load_eval_model(a.checkpoint)
    if not model.gaussian:
        raise SystemExit("the checkpoint has an MSE head: no predicted std to read")
    act = model.layout.slices["prev_action"]
    hf = HistoryFile(a.histories)
    rows = []
    for name in hf.tasks[: a.tasks]:
        h = hf.history(name)
        ep_len = episode_length(h)
        n = len(h.reward) if a.episodes is None else min(a.episodes * ep_len, len(h.reward))
        feats, action = history_tokens(h, 0, n)
        mu = np.asarray(h.mean_action[:n], dtype=np.float32)
        edges = np.linspace(0, n, a.bins + 1).astype(int)
        for s in a.scales:
            f = feats.copy()
            # token t's previous action is transition t-1's (history_tokens' layout)
            f[1:, act] = mu[:-1] + s * (action[:-1] - mu[:-1])
            mean, std = _predict(model, f, device)  # icrl.ad diagnose's teacher forcing
            for b, (lo, hi) in enumerate(itertools.pairwise(edges)):
                rows.append({
                    "task": name, "scale": s, "bin": b, "first_episode": lo // ep_len,
                    "pred_std": float(np.sqrt(np.mean(std[lo:hi] ** 2))),
                    "noise_std": float(np.sqrt(np.mean((action[lo:hi] - mu[lo:hi]) ** 2))),
                    "mse_model_mu": float(np.mean((mean[lo:hi] - mu[lo:hi]) ** 2)),
                })  # fmt: skip
    with a.out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"{ckpt} on {a.histories} ({a.tasks} tasks); per bin, mean over tasks:")
    print("first_ep  noise_std  " + "  ".join(f"std@s={s:g} mse_mu@s={s:g}" for s in a.scales))
    for b in range(a.bins):
        cells = [r for r in rows if r["bin"] == b]
        noise = np.mean([r["noise_std"] for r in cells if r["scale"] == a.scales[0]])
        line = f"{cells[0]['first_episode']:8d}  {noise:9.3f}  "
        for s in a.scales:
            at = [r for r in cells if r["scale"] == s]
            std = np.mean([r["pred_std"] for r in at])
            mse = np.mean([r["mse_model_mu"] for r in at])
            line += f"{std:13.3f} {mse:12.4f}  "
        print(line)


if __name__ == "__main__":
    main()
