"""What the held-out checks beside it (step_vs_forward.py, context_noise.py) share: a model in
eval mode from a run dir or checkpoint file, on the GPU when there is one, and a history's
episode length."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from icrl.ad import latest_checkpoint, load_model


def load_eval_model(checkpoint: Path):
    """(model in eval mode, checkpoint path, device) from a run dir or a .pt file."""
    ckpt = checkpoint if checkpoint.is_file() else latest_checkpoint(checkpoint)
    if ckpt is None:
        raise SystemExit(f"{checkpoint}: no checkpoint in this run directory")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, _ = load_model(ckpt, device)
    model.eval()
    return model, ckpt, device


def episode_length(h) -> int:
    """Steps of a history's first episode (the families' episodes have a fixed length)."""
    return int(np.argmax(np.asarray(h.step[1:]) == 0)) + 1
