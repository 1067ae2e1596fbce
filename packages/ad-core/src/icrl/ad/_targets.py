"""What the action head learns to predict (`TrainConfig.action_target`).

"executed": the action the history recorded, the paper's recipe. "denoised" (noise-distilled
histories only, not the paper's recipe): the same action's known distribution. A uniform
noise-distilled history plays a = c + s·((1 − ε)·μ_p + ε·u), u ~ U[-1, 1]^A, with c and s the
action box's centre and half-width, μ_p the source's mean action in [-1, 1] units and ε its
episode's place in the schedule; it records μ = c + s·μ_p (`mean_action`). So
E[a] = c + (1 − ε)·(μ − c) and Var[a] = ε²·s²/3 per dimension, and the loss can average over the
noise instead of sampling it: the Gaussian NLL ½·[(m − E[a])² + Var[a]]/σ² + log σ has the
optimum of the NLL of the executed action (m = E[a], σ² = Var[a]) without the noise in its
gradient — at ε = 1 every target of the mean is the box's centre, whatever the state.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

__all__ = ["ActionTarget", "denoised_targets"]

ActionTarget = Literal["executed", "denoised"]


def denoised_targets(
    h: Any, low: np.ndarray, high: np.ndarray, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """(E[a], Var[a]), each (T, act_dim) float32, of every recorded action of the uniform
    noise-distilled history `h` (an icrl.histories History) in the action box [low, high];
    `where` names the history in errors. Refuses what would make the targets wrong: no
    `mean_action`, no noise distillation, Gaussian noise (clipped to the box, so its mean is not
    E[a] above), episodes of different lengths (the file numbers episodes by when they end, the
    schedule by when they start: the two agree only when all have one length), and any recorded
    action farther from E[a] than ε·s (which the blend cannot produce)."""
    from icrl.histories import NoiseDistillation

    what = "TrainConfig.action_target='denoised'"
    mu = getattr(h, "mean_action", None)
    if mu is None:
        raise ValueError(
            f"{where} has no mean_action (a file of schema 1, or an in-memory history without "
            f"it); {what} needs the source's deterministic action: regenerate it with "
            "icrl.histories, or train with action_target='executed'"
        )
    settings = (getattr(h, "meta", None) or {}).get("noise_distillation")
    if settings is None:
        raise ValueError(
            f"{where} is not noise-distilled (no noise_distillation attribute); {what} needs "
            "histories from `python -m icrl.histories generate --noise-distilled EPISODES`. "
            "Learning runs train with action_target='executed'"
        )
    noise = NoiseDistillation.model_validate(settings)
    if noise.noise != "uniform":
        raise ValueError(
            f"{where} blends {noise.noise!r} noise, clipped to the action box, so its mean is not "
            f"(1 - eps)·mu; {what} needs uniform noise (the default of --noise-distilled)"
        )
    step = np.asarray(h.step)
    starts = np.flatnonzero(step == 0)
    if len(starts) == 0 or starts[0] != 0:  # a window that begins inside an episode
        starts = np.concatenate([[0], starts])
    lengths = np.diff(np.append(starts, len(step)))
    if lengths.min() != lengths.max():
        raise ValueError(
            f"{where}'s episodes are not all of one length (steps {lengths.min()}–"
            f"{lengths.max()}); its episodes are numbered by when they end, so their place in "
            f"the noise schedule is not known. {what} needs a family whose episodes do not end "
            "early"
        )
    eps = noise.epsilon(np.asarray(h.episode))[:, None]
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    centre, half = (high + low) / 2, (high - low) / 2
    mean = centre + (1.0 - eps) * (np.asarray(mu, np.float64) - centre)
    var = (eps * half) ** 2 / 3.0
    action = np.asarray(h.action, np.float64)
    # |u| <= 1, so a blended action lies within eps·s of its mean; float32 storage aside
    outside = np.abs(action - mean) - eps * half > 1e-4 * (1.0 + np.abs(action))
    bad = np.flatnonzero(outside.any(axis=1))
    if len(bad):
        r = int(bad[0])
        raise ValueError(
            f"{where}: {len(bad)} of {len(action)} recorded actions lie farther from "
            f"(1 - eps)·mu than eps times the action box's half-width (first: row {r}, episode "
            f"{int(h.episode[r])}, eps {float(eps[r, 0]):.3f}): its episodes are not in the "
            f"schedule's order, or its actions are not in the box {low.tolist()}..{high.tolist()}"
            f"; {what} cannot trust its eps"
        )
    return mean.astype(np.float32), var.astype(np.float32)
