"""Does the model act in closed loop as it was trained? Step vs forward on one recorded history.

Training runs the backbone's parallel `forward` over whole contexts (bf16 autocast on CUDA); the
in-context evaluation runs its recurrent `step` one token at a time (bf16, replayed as a CUDA
graph), and `icrl.ad diagnose`'s teacher forcing runs `forward` in fp32. If the three disagree
on long contexts, a closed-loop failure could be numerics rather than learning. This feeds the
same recorded tokens (a held-out history) through each path and reports, per bin of kept
episodes, the RMS difference of the predicted action mean from the fp32 forward, beside the
mean's error against the recorded policy mean mu (the scale that matters).

    python docs/results/step_vs_forward.py --checkpoint RUN_DIR --histories test.h5 \
        --task 0 --episodes 100 --out OUT.csv
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
import time
from pathlib import Path

import numpy as np
import torch
from _heldout import episode_length, load_eval_model

from icrl.ad import history_tokens
from icrl.histories import HistoryFile


def _means(model, feats: torch.Tensor, path: str) -> np.ndarray:
    """(L, A) predicted action means of one context under one execution path."""
    cuda = feats.device.type == "cuda"
    bf16 = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
    with torch.inference_mode():
        if path == "forward-fp32":
            out = model(feats[None])[0]
        elif path == "forward-bf16":
            with bf16:
                out = model(feats[None])[0]
        elif path == "step-bf16":
            state, outs = model.init_state(1, device=feats.device), []
            with bf16:
                for t in range(len(feats)):
                    o, state = model.step(feats[t : t + 1], state)
                    outs.append(o.float())
            out = torch.cat(outs)
        elif path == "graph-step-bf16":
            step = model.graph_stepper(1, len(feats), torch.bfloat16)
            with bf16:
                out = torch.cat([step(feats[t : t + 1]).float() for t in range(len(feats))])
        else:
            raise ValueError(path)
        mean, _ = model.split(out.float())
    return mean.cpu().numpy().astype(np.float64)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True, help="a run dir or a .pt file")
    p.add_argument("--histories", type=Path, required=True)
    p.add_argument("--task", type=int, default=0, help="index of the task in the file")
    p.add_argument("--episodes", type=int, default=100, help="kept episodes to feed")
    p.add_argument("--bins", type=int, default=10)
    p.add_argument("--out", type=Path, required=True, help="CSV to write")
    a = p.parse_args()
    model, ckpt, device = load_eval_model(a.checkpoint)
    hf = HistoryFile(a.histories)
    h = hf.history(hf.tasks[a.task])
    ep_len = episode_length(h)
    rows = min(a.episodes * ep_len, len(h.reward))
    feats, _ = history_tokens(h, 0, rows)
    mu = np.asarray(h.mean_action[:rows], dtype=np.float64)
    x = torch.from_numpy(feats).to(device)
    paths = ["forward-fp32", "forward-bf16", "step-bf16"]
    if device.type == "cuda":
        paths.append("graph-step-bf16")
    means, secs = {}, {}
    for path in paths:
        t0 = time.perf_counter()
        means[path] = _means(model, x, path)
        secs[path] = time.perf_counter() - t0
    ref = means["forward-fp32"]
    edges = np.linspace(0, rows, a.bins + 1).astype(int)
    out_rows = []
    for lo, hi in itertools.pairwise(edges):
        row = {"first_episode": lo // ep_len, "last_episode": (hi - 1) // ep_len,
               "mse_fp32_mu": float(np.mean((ref[lo:hi] - mu[lo:hi]) ** 2))}  # fmt: skip
        for path in paths[1:]:
            d = means[path][lo:hi] - ref[lo:hi]
            row[f"rms_{path}_vs_fp32"] = float(np.sqrt(np.mean(d**2)))
            row[f"mse_{path}_mu"] = float(np.mean((means[path][lo:hi] - mu[lo:hi]) ** 2))
        out_rows.append(row)
    with a.out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(out_rows[0]))
        w.writeheader()
        w.writerows(out_rows)
    print(f"{ckpt} on {a.histories} task {hf.tasks[a.task]}: {rows} tokens, {device}")
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in secs.items()))
    for row in out_rows:
        cells = (f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
        print(" ".join(cells))


if __name__ == "__main__":
    main()
