"""Diagnostics: *why* an AD model does or does not learn in context.

Five probes on held-out learning histories (normally recorded by the source algorithm on the
family's canonical test tasks), each optional and cheap by default:

1. teacher_forced   the model reads a recorded history; its mean action is compared, per bin of
                    kept episodes, with the executed action a, the source's deterministic action
                    mu, the noise floor E(a - mu)^2 and the always-zero action.
2. reward_ablation  the same error with the context's rewards zeroed, and shuffled across
                    positions: a model that uses rewards predicts worse without them.
3. prompted         the first (or last) m recorded episodes of a task are fed as context, then the
                    model acts on that task's env: does a good prompt raise the return?
4. train_vs_test    from-scratch in-context returns on training tasks vs canonical test tasks: a
                    large gap means the model recognises tasks it was trained on.
5. sampling         (Gaussian head) returns with sampled vs mean actions.

Every MSE here is per action dimension (mean over tokens and dimensions), the unit of the
training loss; `HistoryFile.exploration_noise` is a sum over dimensions, act_dim times ours.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from pydantic import Field, field_validator

from icrl.histories.results import write_png
from icrl.histories.runtime import atomic_write

from ._checkpoint import load_model
from ._config import SampleNoise, _Frozen
from ._evaluate import _model_actor, rollout, trained_reward_ablation
from ._model import ADModel
from ._results import plot_curves
from ._tokens import TokenLayout, history_tokens
from ._train import resolve_device

__all__ = ["DIAGNOSE_PARTS", "DiagnoseConfig", "DiagnoseResult", "diagnose"]

Part = Literal["teacher_forced", "reward_ablation", "prompted", "train_vs_test", "sampling"]
DIAGNOSE_PARTS: tuple[str, ...] = (
    "teacher_forced",
    "reward_ablation",
    "prompted",
    "train_vs_test",
    "sampling",
)
"""The probes `diagnose` can run, in the order it runs them."""

TEACHER_COLUMNS = (
    "rewards",
    "bin",
    "first_episode",
    "last_episode",
    "tokens",
    "warmup_frac",
    "mse_model_action",
    "mse_model_mu",
    "mse_mu_action",
    "mse_zero_action",
    "pred_std",
    "noise_std",
)
PROMPT_COLUMNS = ("prompt_episodes", "task", "episode", "return", "prompt_return")
SPLIT_COLUMNS = ("split", "task", "episode", "return")
SAMPLING_COLUMNS = ("mode", "task", "episode", "return")
# Student-t 97.5% quantiles for 1..30 degrees of freedom (then ~normal): diagnostics run on a
# few tasks, where the normal 1.96 would make every CI too narrow.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


class DiagnoseConfig(_Frozen):
    """What `python -m icrl.ad diagnose` runs; the defaults are cheap (a few tasks and episodes)."""

    n_tasks: int = Field(3, gt=0)
    """Held-out tasks to use: the first n of the histories file (parts 1-3 and 5)."""
    context_episodes: int | None = Field(None, gt=0)
    """Kept episodes of each held-out history that the model reads in parts 1-2; None: as many as
    its training context covered (beyond that the model is out of its training distribution)."""
    bin_episodes: int = Field(5, gt=0)
    """Width of a context-position bin, in kept episodes (parts 1-2)."""
    prompt_episodes: tuple[int, ...] = (0, 10, 50)
    """Prompt lengths m, in recorded kept episodes (part 3); 0 is the from-scratch rollout. An m
    longer than a held-out history is skipped with a note."""
    prompt_from: Literal["first", "last"] = "first"
    """Which recorded episodes form the prompt: the first m of the history (the source's early,
    mostly bad episodes, as a training context starts) or its last m (its best behaviour)."""
    episodes: int = Field(5, gt=0)
    """In-context episodes the model plays after its prompt (parts 3-5)."""
    split_tasks: int = Field(3, gt=0)
    """Tasks of each split in part 4: the first n training tasks of the checkpoint's training
    histories and the first n canonical test tasks."""
    sample: bool | None = None
    """Action of the rollouts in parts 3-4: None samples iff the head is Gaussian (as `evaluate`
    does), True samples (Gaussian head only), False takes the mean. Part 5 runs both."""
    std_scale: float = Field(1.0, gt=0)
    """Multiplies the Gaussian head's std wherever the rollouts sample (as `EvalConfig.std_scale`);
    the mean-action rollouts are unaffected."""
    sample_noise: SampleNoise = "gaussian"
    """Shape of the sampling noise wherever the rollouts sample (as `EvalConfig.sample_noise`);
    the mean-action rollouts are unaffected."""
    reference_episodes: int = Field(1, ge=0)
    """Episodes per held-out task of the zero-action and random policies in part 3 (0: none)."""
    seed: int = 0
    """Seed of the env resets (the same for every rollout), action sampling and reward shuffling."""
    device: str = "auto"
    """"auto" (CUDA if available), "cpu", "cuda" or "cuda:N"."""
    asynchronous: bool = False
    """Run the rollout envs in subprocesses (worth it for MuJoCo families with many tasks)."""
    parts: tuple[Part, ...] = DIAGNOSE_PARTS  # type: ignore[assignment]
    """Probes to run, any of teacher_forced, reward_ablation, prompted, train_vs_test, sampling."""

    @field_validator("prompt_episodes")
    @classmethod
    def _prompts(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or min(v) < 0:
            raise ValueError("prompt_episodes must be a non-empty list of lengths >= 0: [0,10]")
        return tuple(sorted(set(v)))

    @field_validator("parts")
    @classmethod
    def _parts(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError(f"parts must name at least one of {list(DIAGNOSE_PARTS)}")
        return tuple(p for p in DIAGNOSE_PARTS if p in v)


@dataclass
class DiagnoseResult:
    """The files written, notes on what was skipped or suspicious, and the key numbers."""

    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Held:
    """What diagnose knows about the run: model, family, held-out histories, notes."""

    model: ADModel
    meta: dict[str, Any]
    family: str
    device: torch.device
    names: list[str]
    histories: list[Any]
    tasks: list[Any]
    blind: bool
    notes: list[str]


# ----------------------------------------------------------------------------------- inputs
def _refuse_out_dir(out_dir: Path) -> None:
    # Checked first: a long run must not end by refusing to write.
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ValueError(f"output directory {out_dir} exists and is not empty; choose a new one")


def _load(config: DiagnoseConfig, checkpoint: Path, histories: Path) -> _Held:
    from icrl.histories import HistoryFile

    histories = Path(histories)
    if not histories.is_file():
        raise ValueError(f"histories file {histories} does not exist (--histories)")
    hf = HistoryFile(histories)
    file_family = hf.attrs.get("family")
    device = resolve_device(config.device)
    model, meta = load_model(checkpoint, device)
    family = meta["data"]["family"]
    if file_family != family:
        raise ValueError(
            f"histories file {histories} is of family {file_family!r}, but checkpoint "
            f"{meta['path']} was trained on {family!r}; give held-out histories of {family}"
        )
    names = hf.tasks[: config.n_tasks]
    if not names:
        raise ValueError(f"histories file {histories} holds no tasks")
    hist = [hf.history(n) for n in names]
    dims = (hist[0].obs.shape[1], hist[0].action.shape[1])
    if dims != (model.obs_dim, model.act_dim):
        raise ValueError(
            f"histories file {histories} holds (obs_dim, act_dim)={dims}, the model in "
            f"{meta['path']} takes {(model.obs_dim, model.act_dim)}"
        )
    notes = []
    if len(names) < config.n_tasks:
        notes.append(f"n_tasks={config.n_tasks} asked for, {histories.name} holds {len(names)}")
    blind = trained_reward_ablation(meta) == "zero"
    if blind:
        notes.append(
            "the model was trained blinded (data.reward_ablation=zero): its context shows zero "
            "rewards everywhere here too, so the reward ablation compares blinded with blinded"
        )
    tasks = [hf.task(n) for n in names]
    return _Held(model, meta, family, device, names, hist, tasks, blind, notes)


def _training_tasks(meta: dict[str, Any]) -> tuple[list[str], list[Any], list[str]]:
    """(names, tasks, notes) of every task in the checkpoint's training histories still on disk."""
    from icrl.histories import HistoryFile

    data = meta["config"]["data"]
    wanted = set(data["tasks"]) if data.get("tasks") else None
    names, tasks, notes = [], [], []
    for p in map(Path, data["paths"]):
        if not p.is_file():
            notes.append(f"training histories {p} (checkpoint data.paths) not found")
            continue
        hf = HistoryFile(p)
        for n in hf.tasks:
            if wanted is None or n in wanted:
                names.append(f"{p.stem}/{n}")
                tasks.append(hf.task(n))
    return names, tasks, notes


def _split_notes(family: str, tasks: Sequence[Any], train_tasks_of_model: Sequence[Any]) -> str:
    """Say which split the held-out tasks come from: a train-split file measures memorisation."""
    from icrl.metaenvs import test_tasks, train_count, train_tasks

    canon_train = set(train_tasks(family, max(1000, train_count(family))))
    canon_test = set(test_tasks(family, max(100, len(tasks))))
    seen = {_key(t) for t in train_tasks_of_model}
    hashable = [t for t in tasks if not isinstance(t, dict)]
    n_train = sum(t in canon_train for t in hashable)
    n_test = sum(t in canon_test for t in hashable)
    n_seen = sum(_key(t) in seen for t in tasks)
    text = (
        f"held-out tasks: {n_test} canonical test, {n_train} canonical train, "
        f"{len(tasks) - n_test - n_train} other; {n_seen} of them in the model's training data"
    )
    if n_seen:
        text += (
            ". WARNING: the histories file holds tasks this model was trained on, so parts 1-3 "
            "and 5 measure tasks it may have memorised, not in-context learning on unseen ones"
        )
    elif n_train:
        text += (
            ". Note: the histories file holds canonical training tasks (not in this model's "
            "data); generate held-out histories on the test tasks to compare runs like for like"
        )
    return text


def _key(task: Any) -> str:
    d = task if isinstance(task, dict) else task.to_dict()
    return repr(sorted(d.items()))


# ------------------------------------------------------------------------------- teacher forcing
def _context_rows(h: Any, episodes: int) -> int:
    """Rows of the first `episodes` kept episodes of a history (all of it if it has fewer)."""
    starts = np.flatnonzero(np.asarray(h.step) == 0)
    return len(h.reward) if episodes >= len(starts) else int(starts[episodes])


def _ablate(feats: np.ndarray, layout: TokenLayout, rewards: str, rng: np.random.Generator) -> None:
    """Zero or shuffle the previous-reward slot in place. Token 0 of a history has no previous
    transition (its slot is 0 by construction) and is left alone."""
    r = layout.slices["prev_reward"]
    if rewards == "zero":
        feats[:, r] = 0.0
    elif rewards == "shuffle":
        feats[1:, r] = feats[1:, r][rng.permutation(len(feats) - 1)]


def _predict(model: ADModel, feats: np.ndarray, device: torch.device):
    """The model's mean action (L, A) and std (L, A) or None, for one context (L, F)."""
    with torch.inference_mode():
        out = model(torch.from_numpy(feats)[None].to(device))
        mean, log_std = model.split(out.float())
    std = None if log_std is None else log_std.exp()[0].cpu().numpy()
    return mean[0].cpu().numpy(), std


def _token_errors(held: _Held, config: DiagnoseConfig, rewards: str) -> dict[str, np.ndarray]:
    """Per-token squared errors (mean over action dims) pooled over the held-out tasks."""
    want = config.context_episodes or int(held.meta["data"]["context_episodes"])
    max_len = held.meta.get("max_len")
    layout = held.model.layout
    keys = ("episode", "warmup", "model_a", "model_mu", "mu_a", "zero_a", "var_pred")
    cols: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for i, h in enumerate(held.histories):
        rows = _context_rows(h, want)
        if max_len is not None and rows > max_len:
            rows = max_len  # the transformer's position table ends here
            note = f"teacher forcing: contexts cut to the transformer's max_len={max_len} tokens"
            if note not in held.notes:
                held.notes.append(note)
        feats, a = history_tokens(h, 0, rows)
        if held.blind:
            feats[:, layout.slices["prev_reward"]] = 0.0
        _ablate(feats, layout, rewards, np.random.default_rng([config.seed, i]))
        mean, std = _predict(held.model, feats, held.device)
        mean, a = mean.astype(np.float64), a.astype(np.float64)
        mu = None if h.mean_action is None else np.asarray(h.mean_action[:rows], np.float64)
        nan = np.full(rows, np.nan)
        cols["episode"].append(np.cumsum(np.asarray(h.step[:rows]) == 0) - 1)  # h starts at 0
        cols["warmup"].append(np.asarray(h.warmup[:rows], np.float64))
        cols["model_a"].append(((mean - a) ** 2).mean(1))
        cols["zero_a"].append((a**2).mean(1))
        cols["model_mu"].append(nan if mu is None else ((mean - mu) ** 2).mean(1))
        cols["mu_a"].append(nan if mu is None else ((a - mu) ** 2).mean(1))
        cols["var_pred"].append(nan if std is None else (std.astype(np.float64) ** 2).mean(1))
    return {k: np.concatenate(v) for k, v in cols.items()}


def _bin_rows(tok: dict[str, np.ndarray], width: int, rewards: str) -> list[dict[str, Any]]:
    """One row per bin of `width` kept episodes: token-weighted means over every task."""
    last = int(tok["episode"].max())
    out = []
    for b in range(last // width + 1):
        sel = tok["episode"] // width == b
        if not sel.any():
            continue
        m = {k: float(np.mean(v[sel])) for k, v in tok.items() if k != "episode"}
        out.append(
            {
                "rewards": rewards,
                "bin": b,
                "first_episode": b * width,
                "last_episode": min((b + 1) * width, last + 1) - 1,
                "tokens": int(sel.sum()),
                "warmup_frac": m["warmup"],
                "mse_model_action": m["model_a"],
                "mse_model_mu": m["model_mu"],
                "mse_mu_action": m["mu_a"],
                "mse_zero_action": m["zero_a"],
                "pred_std": math.sqrt(m["var_pred"]),
                "noise_std": math.sqrt(m["mu_a"]),
            }
        )
    return out


def _overall(tok: dict[str, np.ndarray]) -> dict[str, float]:
    return {
        "mse_model_action": float(tok["model_a"].mean()),
        "mse_model_mu": float(tok["model_mu"].mean()),
        "mse_mu_action": float(tok["mu_a"].mean()),
        "mse_zero_action": float(tok["zero_a"].mean()),
        "pred_std": math.sqrt(float(tok["var_pred"].mean())),
        "noise_std": math.sqrt(float(tok["mu_a"].mean())),
    }


# ----------------------------------------------------------------------------------- rollouts
def _prompt(h: Any, m: int, where: str, blind: bool, layout: TokenLayout):
    """(prompt tokens (P, F), the token slots that carry its last transition) or None if m == 0.

    A training context that starts inside a history keeps its real previous transition, so the
    "last" prompt does too (history_tokens does that); the first online token after the prompt
    must carry the prompt's final transition, as the recorded history's next token would.
    """
    if m == 0:
        return None
    starts = np.flatnonzero(np.asarray(h.step) == 0)
    if len(starts) < m:
        return None
    if where == "first":  # from the history's first token, as a training context from 0
        lo, hi = 0, int(starts[m]) if m < len(starts) else len(h.reward)
    else:  # kept episodes are whole, so the history ends with the last one
        lo, hi = int(starts[len(starts) - m]), len(h.reward)
    feats, _ = history_tokens(h, lo, hi)
    sl = layout.slices
    link = np.zeros(layout.width, np.float32)
    link[sl["prev_obs"]] = h.obs[hi - 1]
    link[sl["prev_action"]] = h.action[hi - 1]
    link[sl["prev_reward"]] = 0.0 if blind else h.reward[hi - 1]
    link[sl["prev_next_obs"]] = h.next_obs[hi - 1]
    if blind:
        feats[:, sl["prev_reward"]] = 0.0
    return feats, link


def _recorded_returns(h: Any, m: int, where: str) -> float:
    """Mean return of the recorded episodes that form the prompt (what the source achieved)."""
    ep = np.cumsum(np.asarray(h.step) == 0)
    sums = np.bincount(ep, weights=np.asarray(h.reward, np.float64))[1:]
    chosen = sums[:m] if where == "first" else sums[-m:]
    return float(chosen.mean()) if m and len(chosen) else float("nan")


def _run_group(
    held: _Held,
    tasks: Sequence[Any],
    prompts: Sequence[tuple[np.ndarray, np.ndarray] | None],
    config: DiagnoseConfig,
    sample: bool,
) -> np.ndarray:
    """Returns (n, E) of one batch of tasks whose prompts have the same length."""
    from icrl.metaenvs import episode_length, make_vector_env

    n, plen = len(tasks), 0 if prompts[0] is None else len(prompts[0][0])
    max_tokens = plen + config.episodes * episode_length(held.family)
    act = _model_actor(
        held.model,
        n,
        held.device,
        bf16=False,
        cuda_graph=held.device.type == "cuda",
        max_tokens=max_tokens,
        sample=sample,
        seed=config.seed,
        std_scale=config.std_scale if sample else 1.0,
        noise=config.sample_noise if sample else "gaussian",
    )
    policy: Callable[[np.ndarray], np.ndarray] = act
    if plen:
        tokens = np.stack([p[0] for p in prompts])
        link = np.stack([p[1] for p in prompts])
        with torch.inference_mode():
            for t in range(plen):  # teacher-forced through `step`: outputs are discarded
                act(tokens[:, t])
        policy = _linked(act, link, held.model.layout)
    envs = make_vector_env(
        held.family,
        list(tasks),
        asynchronous=config.asynchronous,
        autoreset_mode=AutoresetMode.DISABLED,
    )
    try:
        return rollout(
            None,
            envs,
            config.episodes,
            seed=config.seed,
            device=held.device,
            policy=policy,
            reward_ablation="zero" if held.blind else "none",
        )
    finally:
        envs.close()


def _linked(act: Callable, link: np.ndarray, layout: TokenLayout) -> Callable:
    """The actor whose first online token carries the prompt's last transition (the rollout's
    TokenBuilder starts with an empty one and no_previous=1, as a rollout from scratch does)."""
    sl = layout.slices
    prev = slice(sl["prev_obs"].start, sl["prev_next_obs"].stop)
    first = [True]

    def policy(feats: np.ndarray) -> np.ndarray:
        if first[0]:
            feats = feats.copy()
            feats[:, prev] = link[:, prev]
            feats[:, sl["flags"].start + 1] = 0.0
            first[0] = False
        return act(feats)

    return policy


def _returns(
    held: _Held,
    tasks: Sequence[Any],
    prompts: Sequence[tuple[np.ndarray, np.ndarray] | None],
    config: DiagnoseConfig,
    sample: bool,
) -> np.ndarray:
    """(n, E) in-context returns; tasks are batched by prompt length (a batched `step` needs
    every row at the same position)."""
    out = np.full((len(tasks), config.episodes), np.nan)
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(0 if p is None else len(p[0]), []).append(i)
    for idx in groups.values():
        out[idx] = _run_group(
            held, [tasks[i] for i in idx], [prompts[i] for i in idx], config, sample
        )
    return out


def _fits(held: _Held, config: DiagnoseConfig, prompt_len: int) -> bool:
    """Whether prompt + rollout fits a transformer's position table (Mamba has none)."""
    from icrl.metaenvs import episode_length

    max_len = held.meta.get("max_len")
    need = prompt_len + config.episodes * episode_length(held.family)
    return max_len is None or need <= max_len


# ----------------------------------------------------------------------------------- outputs
def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([repr(r[c]) if isinstance(r[c], float) else r[c] for c in columns])
    atomic_write(path, buf.getvalue())
    return path


def _plot_mse(rows: list[dict[str, Any]], path: Path, title: str, series: dict[str, tuple]) -> Path:
    """Log-scale error curves against the first kept episode of each bin; `series` maps a label to
    (rewards condition, column, line style). A Gaussian head adds a std panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stds = [r for r in rows if r["rewards"] == "none" and np.isfinite(r["pred_std"])]
    fig, axes = plt.subplots(1, 2 if stds else 1, figsize=(11 if stds else 7, 4.2), dpi=120)
    ax = axes[0] if stds else axes
    for label, (cond, col, style) in series.items():
        sel = [r for r in rows if r["rewards"] == cond and np.isfinite(r[col])]
        if sel:
            ax.plot([r["first_episode"] for r in sel], [r[col] for r in sel], style, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("kept episode of the context (bin start)")
    ax.set_ylabel("MSE per action dimension")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if stds:
        x = [r["first_episode"] for r in stds]
        axes[1].plot(x, [r["pred_std"] for r in stds], "-", label="predicted std (RMS)")
        axes[1].plot(x, [r["noise_std"] for r in stds], "k--", label="std of a - mu (RMS)")
        axes[1].plot(
            x,
            [math.sqrt(r["mse_model_action"]) for r in stds],
            ":",
            label="RMS error of the mean vs a",
        )
        axes[1].set_xlabel("kept episode of the context (bin start)")
        axes[1].set_title("Gaussian head: predicted vs empirical spread", fontsize=10)
        axes[1].grid(alpha=0.3)
        axes[1].legend(fontsize=8)
    fig.tight_layout()
    try:
        return write_png(fig, path)
    finally:
        plt.close(fig)


def _return_rows(label_col: str, label: Any, names: Sequence[str], r: np.ndarray) -> list[dict]:
    return [
        {label_col: label, "task": names[t], "episode": e, "return": float(r[t, e])}
        for t in range(r.shape[0])
        for e in range(r.shape[1])
    ]


def _ci(values: np.ndarray) -> tuple[float, float]:
    """Mean and 95% half-width (Student t) over tasks of each task's mean return; an infinite
    half-width for one task (no spread to judge by)."""
    per_task = np.asarray(values, np.float64).reshape(len(values), -1).mean(1)
    n = len(per_task)
    if n < 2:
        return float(per_task.mean()), math.inf
    t = _T95[n - 2] if n - 1 <= len(_T95) else 1.96
    return float(per_task.mean()), float(t * per_task.std(ddof=1) / math.sqrt(n))


def _fmt(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.4g}"


# ----------------------------------------------------------------------------------- the parts
def _write_bins(res, name: str, rows: list[dict], title: str, series: dict) -> None:
    """A part's per-bin rows as OUT/NAME.csv and their error curves as OUT/NAME.png."""
    res.files[f"{name}_csv"] = _write_csv(res.out_dir / f"{name}.csv", TEACHER_COLUMNS, rows)
    res.files[f"{name}_png"] = _plot_mse(rows, res.out_dir / f"{name}.png", title, series)


def _part_teacher(held, config, res, lines, cache) -> None:
    tok = cache.setdefault("none", _token_errors(held, config, "none"))
    rows = _bin_rows(tok, config.bin_episodes, "none")
    series = {
        "model mean vs executed a": ("none", "mse_model_action", "-o"),
        "model mean vs source mu": ("none", "mse_model_mu", "-s"),
        "noise floor: mu vs a": ("none", "mse_mu_action", "k--"),
        "always-zero action vs a": ("none", "mse_zero_action", ":"),
    }
    title = f"{held.family}: teacher-forced action error, {len(held.names)} held-out tasks"
    _write_bins(res, "teacher_forced", rows, title, series)
    o, first, last = _overall(tok), rows[0], rows[-1]
    res.summary["teacher_forced"] = {**o, "first_bin": first, "last_bin": last}
    lines += [
        "## 1. Teacher-forced action error (per action dimension)",
        "",
        "| bins | mse(model, a) | mse(model, mu) | floor mse(mu, a) | mse(0, a) | warm-up |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    shown = {
        "all": {**o, "warmup_frac": float(tok["warmup"].mean())},
        f"first (ep {first['first_episode']}-{first['last_episode']})": first,
        f"last (ep {last['first_episode']}-{last['last_episode']})": last,
    }
    for name, r in shown.items():
        lines.append(
            f"| {name} | {_fmt(r['mse_model_action'])} | {_fmt(r['mse_model_mu'])} | "
            f"{_fmt(r['mse_mu_action'])} | {_fmt(r['mse_zero_action'])} | "
            f"{r['warmup_frac']:.0%} |"
        )
    if held.model.gaussian:
        lines.append(
            f"\nGaussian head: predicted std {_fmt(o['pred_std'])} (RMS) vs std of a - mu "
            f"{_fmt(o['noise_std'])} and RMS error of its mean vs a "
            f"{_fmt(math.sqrt(o['mse_model_action']))}."
        )
    if not np.isfinite(o["mse_mu_action"]):
        lines.append("\nNo mean_action in the histories (schema 1): floor and mse(model, mu) n/a.")
    lines += ["", _read_teacher(o), ""]


def _read_teacher(o: dict[str, float]) -> str:
    """One cautious sentence on what the overall numbers say."""
    ma, zero, floor = o["mse_model_action"], o["mse_zero_action"], o["mse_mu_action"]
    if np.isfinite(floor) and floor >= 0.9 * zero:
        return (
            "Reading: the recorded actions are mostly the source's exploration noise (the floor "
            "is about mse(0, a)), so mse(model, a) cannot fall far below mse(0, a); judge the "
            f"model by mse(model, mu) = {_fmt(o['mse_model_mu'])} and its trend over bins."
        )
    if ma >= 0.9 * zero:
        return "Reading: the model is barely better than always acting 0: it has learnt little."
    if np.isfinite(floor):
        excess = ma - floor
        return (
            f"Reading: {excess / max(ma, 1e-12):.0%} of the model's error is above the noise "
            f"floor (the source's own exploration noise, which no predictor of a can remove); "
            f"mse(model, mu) = {_fmt(o['mse_model_mu'])} is how far its mean is from the policy."
        )
    return "Reading: compare mse(model, a) with mse(0, a) per bin in teacher_forced.csv."


def _part_ablation(held, config, res, lines, cache) -> None:
    for c in ("none", "zero", "shuffle"):
        if c not in cache:
            cache[c] = _token_errors(held, config, c)
    toks = {c: cache[c] for c in ("none", "zero", "shuffle")}
    rows = [r for c, t in toks.items() for r in _bin_rows(t, config.bin_episodes, c)]
    series = {
        "rewards as recorded": ("none", "mse_model_action", "-o"),
        "rewards zeroed": ("zero", "mse_model_action", "-s"),
        "rewards shuffled": ("shuffle", "mse_model_action", "-^"),
        "noise floor: mu vs a": ("none", "mse_mu_action", "k--"),
    }
    title = f"{held.family}: mse(model, a) with the context's rewards ablated"
    _write_bins(res, "reward_ablation", rows, title, series)
    over = {c: _overall(t) for c, t in toks.items()}
    res.summary["reward_ablation"] = over
    base = over["none"]["mse_model_action"]
    lines += [
        "## 2. Reward ablation (teacher-forced, all bins)",
        "",
        "| context rewards | mse(model, a) | change | mse(model, mu) |",
        "|---|---:|---:|---:|",
    ]
    for c, o in over.items():
        change = (o["mse_model_action"] - base) / max(base, 1e-12)
        lines.append(
            f"| {c} | {_fmt(o['mse_model_action'])} | {change:+.1%} | {_fmt(o['mse_model_mu'])} |"
        )
    shuffled = (over["shuffle"]["mse_model_action"] - base) / max(base, 1e-12)
    if shuffled > 0.02:
        verdict = "shuffled rewards raise the error: the model reads which actions paid"
    elif shuffled < -0.02:
        verdict = (
            "shuffled rewards lower the error: the model reads rewards, but they do not help it "
            "predict the source here (or the tokens are too few; compare the bins)"
        )
    else:
        verdict = (
            "shuffled rewards barely move the error (< 2%): the model hardly uses the link "
            "between rewards and actions, so it can imitate how the source's actions drift over "
            "a history but not improve from reward"
        )
    lines += [
        "",
        f"Reading: {verdict}. Shuffling keeps the rewards' distribution and breaks only their "
        "link to the actions (the cleaner test); zeroing also moves the reward input off its "
        "training distribution, so a change there alone proves less.",
        "",
    ]


def _part_prompted(held, config, res, lines, memo) -> None:
    ms, skipped = [], []
    for m in config.prompt_episodes:
        prompts = [
            _prompt(h, m, config.prompt_from, held.blind, held.model.layout) for h in held.histories
        ]
        plen = max((len(p[0]) for p in prompts if p is not None), default=0)
        if m and any(p is None for p in prompts):
            skipped.append(f"m={m} (a held-out history keeps fewer episodes)")
        elif not _fits(held, config, plen):
            skipped.append(f"m={m} (prompt + rollout exceed the transformer's max_len)")
        else:
            ms.append((m, prompts))
    if skipped:
        res.notes.append("prompted: skipped " + ", ".join(skipped))
    sample = _default_sample(held, config)
    out: dict[int, np.ndarray] = {}
    for m, prompts in ms:
        key = ("held", m, sample)  # part 5 reuses the from-scratch rollout
        if key not in memo:
            memo[key] = _returns(held, held.tasks, prompts, config, sample)
        out[m] = memo[key]
    rows = []
    for m, r in out.items():
        rec = [_recorded_returns(h, m, config.prompt_from) for h in held.histories]
        for row in _return_rows("prompt_episodes", m, held.names, r):
            row["prompt_return"] = rec[held.names.index(row["task"])]
            rows.append(row)
    d = res.out_dir
    res.files["prompted_csv"] = _write_csv(d / "prompted.csv", PROMPT_COLUMNS, rows)
    refs = _references(held, config)
    curves = {f"prompt m={m} ({config.prompt_from})": r[:, None, :] for m, r in out.items()}
    res.files["prompted_png"] = plot_curves(
        curves,
        d / "prompted.png",
        references=refs,
        title=f"{held.family}: in-context returns after a recorded prompt",
    )
    lines += [
        f"## 3. Prompted rollouts ({config.prompt_from} m recorded episodes, then "
        f"{config.episodes} episodes; {'sampled' if sample else 'mean'} actions)",
        "",
        "| m | prompt's recorded return | first episode | last episode | all episodes (95% CI) |",
        "|---:|---:|---:|---:|---:|",
    ]
    summary = {}
    for m, r in out.items():
        rec = float(np.mean([_recorded_returns(h, m, config.prompt_from) for h in held.histories]))
        mean, half = _ci(r)
        summary[m] = {
            "mean": mean,
            "ci95": half,
            "first": float(r[:, 0].mean()),
            "last": float(r[:, -1].mean()),
            "prompt_return": rec,
        }
        lines.append(
            f"| {m} | {_fmt(rec)} | {_fmt(r[:, 0].mean())} | {_fmt(r[:, -1].mean())} | "
            f"{_fmt(mean)} ± {_fmt(half)} |"
        )
    if refs:
        lines.append(
            "\nReferences on these tasks: "
            + ", ".join(f"{k} policy {_fmt(v)}" for k, v in refs.items())
        )
    res.summary["prompted"] = summary
    if 0 in out and len(out) > 1:
        best = max((m for m in out if m), key=lambda m: summary[m]["mean"])
        # Paired over tasks (same tasks, same env seed): the CI of the per-task differences.
        gain, half = _ci(out[best].mean(1) - out[0].mean(1))
        clear = gain - half > 0
        lines.append(
            f"\nReading: the best prompt (m={best}) changes the mean return by {gain:+.4g} ± "
            f"{half:.3g} (paired over tasks) over the from-scratch rollout: "
            + (
                "the model exploits a good context."
                if clear
                else "no clear gain, so no evidence that it conditions on its context (or the "
                "prompt is no better than its own play; compare the prompt's recorded return)."
            )
        )
    lines.append("")


def _references(held: _Held, config: DiagnoseConfig) -> dict[str, float]:
    if not config.reference_episodes:
        return {}
    from icrl.metaenvs import reference_returns

    n, seed = config.reference_episodes, config.seed
    return {
        p: float(reference_returns(held.family, held.tasks, p, episodes=n, seed=seed).mean())
        for p in ("zero", "random")
    }


def _default_sample(held: _Held, config: DiagnoseConfig) -> bool:
    if config.sample and not held.model.gaussian:
        raise ValueError("sample=true needs a model with a Gaussian action head (model.gaussian)")
    return held.model.gaussian if config.sample is None else config.sample


def _part_split(held, config, res, lines, memo) -> None:
    from icrl.metaenvs import test_tasks

    names, tasks, notes = _training_tasks(held.meta)
    res.notes += notes
    if not tasks:
        res.notes.append("train_vs_test: skipped, no training histories of the checkpoint found")
        return
    if not _fits(held, config, 0):
        res.notes.append("train_vs_test: skipped, the rollout exceeds the transformer's max_len")
        return
    n = config.split_tasks
    sample = _default_sample(held, config)
    test = test_tasks(held.family, n)
    r_train = _returns(held, tasks[:n], [None] * len(tasks[:n]), config, sample)
    r_test = _returns(held, test, [None] * n, config, sample)
    test_names = [f"test_{i:03d}" for i in range(n)]
    rows = _return_rows("split", "train", names[:n], r_train)
    rows += _return_rows("split", "test", test_names, r_test)
    d = res.out_dir
    res.files["train_vs_test_csv"] = _write_csv(d / "train_vs_test.csv", SPLIT_COLUMNS, rows)
    res.files["train_vs_test_png"] = plot_curves(
        {"training tasks": r_train[:, None, :], "canonical test tasks": r_test[:, None, :]},
        d / "train_vs_test.png",
        title=f"{held.family}: from-scratch in-context returns, train vs test tasks",
    )
    (mtr, htr), (mte, hte) = _ci(r_train), _ci(r_test)
    res.summary["train_vs_test"] = {"train": mtr, "train_ci95": htr, "test": mte, "test_ci95": hte}
    gap_big = mtr - mte > htr + hte
    lines += [
        f"## 4. Train vs test tasks (from scratch, {config.episodes} episodes, "
        f"{len(r_train)} + {n} tasks)",
        "",
        f"Training tasks {_fmt(mtr)} ± {_fmt(htr)}; canonical test tasks {_fmt(mte)} ± "
        f"{_fmt(hte)}; gap {_fmt(mtr - mte)}.",
        "",
        "Reading: "
        + (
            "training tasks score clearly higher: the model partly recognises tasks it has seen "
            "(memorisation) rather than inferring them from reward."
            if gap_big
            else "no gap beyond the CIs: no sign of memorised training tasks."
        ),
        "",
    ]


def _part_sampling(held, config, res, lines, memo) -> None:
    if not held.model.gaussian:
        res.notes.append("sampling: skipped, the model has an MSE head (nothing to sample)")
        return
    if not _fits(held, config, 0):
        res.notes.append("sampling: skipped, the rollout exceeds the transformer's max_len")
        return
    out = {}
    for mode, sample in (("sampled", True), ("mean", False)):
        key = ("held", 0, sample)
        if key not in memo:
            memo[key] = _returns(held, held.tasks, [None] * len(held.tasks), config, sample)
        out[mode] = memo[key]
    rows = [r for mode, v in out.items() for r in _return_rows("mode", mode, held.names, v)]
    d = res.out_dir
    res.files["sampling_csv"] = _write_csv(d / "sampling.csv", SAMPLING_COLUMNS, rows)
    res.files["sampling_png"] = plot_curves(
        {f"{k} actions": v[:, None, :] for k, v in out.items()},
        d / "sampling.png",
        title=f"{held.family}: Gaussian head, sampled vs mean actions (held-out tasks)",
    )
    (ms, hs), (mm, hm) = _ci(out["sampled"]), _ci(out["mean"])
    res.summary["sampling"] = {"sampled": ms, "sampled_ci95": hs, "mean": mm, "mean_ci95": hm}
    lines += [
        "## 5. Sampled vs mean actions (from scratch, held-out tasks)",
        "",
        f"Sampled {_fmt(ms)} ± {_fmt(hs)}; mean {_fmt(mm)} ± {_fmt(hm)}.",
        "",
        "Reading: sampling is how a Gaussian head explores in context; if the mean action does "
        "as well or better, the model's in-context improvement does not come from its own "
        "exploration.",
        "",
    ]


_PARTS = {
    "teacher_forced": _part_teacher,
    "reward_ablation": _part_ablation,
    "prompted": _part_prompted,
    "train_vs_test": _part_split,
    "sampling": _part_sampling,
}


def diagnose(
    config: DiagnoseConfig, checkpoint: Path, histories: Path, out_dir: Path
) -> DiagnoseResult:
    """Run the probes of `config.parts` for one checkpoint (file or run directory) on held-out
    `histories`; write CSV + PNG per probe and `diagnose.md` into `out_dir` (new or empty)."""
    out_dir = Path(out_dir)
    _refuse_out_dir(out_dir)
    held = _load(config, Path(checkpoint), Path(histories))
    if {"prompted", "train_vs_test"} & set(config.parts):
        _default_sample(held, config)  # refuse sample=true on an MSE head before any work
    res = DiagnoseResult(out_dir, notes=held.notes)  # the parts add their own notes
    _, seen, _ = _training_tasks(held.meta)
    split = _split_notes(held.family, held.tasks, seen)
    res.notes.insert(0, split)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    cache: dict[Any, Any] = {}  # per-token errors by rewards condition; rollouts by key
    for part in config.parts:
        _PARTS[part](held, config, res, lines, cache)
    head = [
        f"# Diagnostics of {held.meta['path']} (step {held.meta['step']})",
        "",
        f"- family {held.family}, {held.meta['config']['model']['backbone']} backbone, "
        f"{'Gaussian' if held.model.gaussian else 'MSE'} head, trained on "
        f"{held.meta['data']['n_tasks']} tasks",
        f"- held-out histories {Path(histories)}: tasks {', '.join(held.names)}",
        *[f"- {n}" for n in res.notes],
        "",
    ]
    res.files["summary"] = out_dir / "diagnose.md"
    atomic_write(res.files["summary"], "\n".join(head + lines))
    return res
