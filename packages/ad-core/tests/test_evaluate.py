"""In-context evaluation: step-based rollouts equal full-forward predictions; outputs and errors."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from icrl.ad import (
    CheckpointError,
    ContextDataset,
    EvalConfig,
    FullContext,
    TokenLayout,
    evaluate,
    load_model,
    read_results,
    train,
)
from icrl.ad._evaluate import rollout
from icrl.ad._results import CSV_COLUMNS
from icrl.ad._tokens import TokenBuilder
from icrl.metaenvs import make_vector_env, test_tasks


@pytest.fixture(scope="module")
def trained(tmp_path_factory, histories_file, short_run):
    """A tiny Mamba trained for a few steps on the real SAC histories file."""
    run = tmp_path_factory.mktemp("run") / "seed0"
    data = {"context": "episodes", "n_episodes": 2}
    return train(short_run([histories_file], 4, {"n_layers": 2}, data), run)


@pytest.mark.parametrize("backbone", ["mamba", "transformer"])
def test_step_rollout_equals_full_forward(tmp_path, record, tiny, backbone) -> None:
    # A 2-episode context: the transformer's KV cache holds the 2-episode rollout below.
    ds = ContextDataset.from_histories({"a": record(episodes=2)}, context=FullContext())
    cfg = tiny(model__backbone=backbone, max_steps=3)
    train(cfg, tmp_path / "run", dataset=ds)
    model, _ = load_model(tmp_path / "run")
    envs = make_vector_env("ReacherGoal", test_tasks("ReacherGoal", 3), asynchronous=False,
                           autoreset_mode=AutoresetMode.DISABLED)  # fmt: skip
    tokens = []
    returns = rollout(model, envs, 2, seed=5, device=torch.device("cpu"),
                      on_token=lambda f: tokens.append(f))  # fmt: skip
    envs.close()
    assert returns.shape == (3, 2) and np.isfinite(returns).all()
    seq = torch.from_numpy(np.stack(tokens, axis=1))  # (B, L, F): the evaluator's own tokens
    assert seq.shape[1] == 100
    with torch.inference_mode():
        full = model(seq).numpy()
    sl = TokenLayout(model.obs_dim, model.act_dim).slices
    sent = seq[:, 1:, sl["prev_action"]].numpy()  # action actually sent at each step
    np.testing.assert_allclose(np.clip(full[:, :-1], -1, 1), sent, atol=2e-5)
    # Episode boundary: token 50 is a reset state with the previous episode's last transition.
    assert seq[:, 50, sl["flags"]].tolist() == [[1.0, 0.0]] * 3
    assert seq[:, 0, sl["flags"]].tolist() == [[1.0, 1.0]] * 3


def test_evaluate_writes_results_and_plot(tmp_path, trained) -> None:
    cfg = EvalConfig(n_tasks=2, asynchronous=False, reference_episodes=1, progress=False)
    res = evaluate(cfg, [trained.checkpoint], tmp_path / "eval")
    assert res.returns.shape == (2, 1, 2)  # context of 2 episodes -> 2 in-context episodes
    with (tmp_path / "eval" / "returns.csv").open() as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == CSV_COLUMNS == ("method", "seed", "task", "episode", "return")
    assert len(rows) == 1 + 2 * 1 * 2 and rows[1][:4] == ["AD-Mamba", "0", "0", "0"]
    np.testing.assert_array_equal(read_results(res.files["csv"])["AD-Mamba"], res.returns)
    npz = np.load(res.files["npz"])
    np.testing.assert_array_equal(npz["returns"], res.returns)
    assert (tmp_path / "eval" / "curves.png").stat().st_size > 1000
    assert set(res.references) == {"zero", "random"}
    # source curve: block means of the SAC run's episode returns at the kept episodes (k=2)
    assert res.source is not None and res.source.shape == (2,) and np.isfinite(res.source).all()
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        evaluate(cfg, [trained.checkpoint], tmp_path / "eval")


@pytest.mark.parametrize("head", ["mse", "gaussian"])
def test_seeds_rolled_out_together_equal_one_by_one(tmp_path, histories_file, tiny, head) -> None:
    """batch_seeds: one vector env of tasks × seeds gives each seed's returns exactly as its own
    rollout does (same env seeds, same sampling stream), with sampled actions too."""
    ckpts = []
    for seed in (0, 1):
        cfg = tiny([histories_file], data__context="episodes", data__n_episodes=2, max_steps=3,
                   seed=seed, model__action_head=head)  # fmt: skip
        ckpts.append(train(cfg, tmp_path / f"s{seed}").checkpoint)
    results = {}
    for together in (True, False):
        cfg = EvalConfig(n_tasks=3, asynchronous=False, reference_episodes=0, progress=False,
                         batch_seeds=together, seed=7)  # fmt: skip
        results[together] = evaluate(cfg, ckpts, tmp_path / f"eval-{together}").returns
    assert results[True].shape == (3, 2, 2)
    np.testing.assert_array_equal(results[True], results[False])
    assert not np.array_equal(results[True][:, 0], results[True][:, 1])  # two different models


def test_histories_with_other_dims_are_refused_before_training(record) -> None:
    h = record(episodes=1)
    small = type(h)(**{**h.__dict__, "obs": h.obs[:, :5], "next_obs": h.next_obs[:, :5]})
    with pytest.raises(ValueError, match=r"\(obs_dim, act_dim\)=\(5, 2\).*\(8, 2\).*regenerate"):
        ContextDataset.from_histories({"a": small}, context=FullContext())


def test_checkpoint_env_mismatch_is_named(tmp_path, record, tiny, monkeypatch) -> None:
    h = record(episodes=1)
    small = type(h)(**{**h.__dict__, "obs": h.obs[:, :5], "next_obs": h.next_obs[:, :5]})
    # A checkpoint from elsewhere (e.g. trained before this check existed) reaches the evaluator.
    monkeypatch.setattr("icrl.ad._data._check_env_dims", lambda *a: None)
    ds = ContextDataset.from_histories({"a": small}, context=FullContext())
    train(tiny(max_steps=1), tmp_path / "run", dataset=ds)
    cfg = EvalConfig(n_tasks=1, asynchronous=False, reference_episodes=0, progress=False)
    with pytest.raises(CheckpointError, match=r"\(obs_dim, act_dim\)=\(5, 2\).*\(8, 2\)"):
        evaluate(cfg, [tmp_path / "run"], tmp_path / "eval")
    with pytest.raises(CheckpointError, match="holds no checkpoints"):
        evaluate(cfg, [tmp_path], tmp_path / "eval2")


def test_blinded_checkpoint_is_evaluated_blinded(tmp_path, histories_file, tiny, monkeypatch):
    """EvalConfig.reward_ablation=None follows each checkpoint's data.reward_ablation, also when
    a blinded and a seeing checkpoint are rolled out together; an explicit value overrides it."""
    ckpts = {}
    for seed, name, ablation in ((0, "zero", "zero"), (1, "none", "none"), (2, "none2", "none")):
        cfg = tiny([histories_file], data__context="episodes", data__n_episodes=2, max_steps=3,
                   data__reward_ablation=ablation, seed=seed)  # fmt: skip
        ckpts[name] = train(cfg, tmp_path / name).checkpoint
    blinds: list[bool] = []

    class Spy(TokenBuilder):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            blinds.append(self.blind)

    monkeypatch.setattr("icrl.ad._evaluate.TokenBuilder", Spy)

    def run(name: str, checkpoints: list, **overrides) -> tuple[np.ndarray, list[bool]]:
        cfg = EvalConfig(n_tasks=2, asynchronous=False, reference_episodes=0, progress=False,
                         seed=3, **overrides)  # fmt: skip
        blinds.clear()
        return evaluate(cfg, checkpoints, tmp_path / name).returns, list(blinds)

    assert EvalConfig().reward_ablation is None
    default, built = run("default", [ckpts["zero"]])
    assert built == [True]
    zero, built = run("zero", [ckpts["zero"]], reward_ablation="zero")
    assert built == [True]
    seen, built = run("seen", [ckpts["zero"]], reward_ablation="none")  # explicit: allowed
    assert built == [False]
    np.testing.assert_array_equal(default, zero)
    assert not np.array_equal(default, seen)  # the real rewards would reach the model
    # Batched together, each checkpoint still gets its own setting and its returns alone.
    both, built = run("both", [ckpts["zero"], ckpts["none"]])
    assert built == [True, False]
    alone, built = run("alone", [ckpts["none"]])
    assert built == [False]
    np.testing.assert_array_equal(both[:, 0], default[:, 0])
    np.testing.assert_array_equal(both[:, 1], alone[:, 0])
    # Interleaved (seeing, blinded, seeing): grouped for the rollout, returned in the given order.
    mixed, built = run("mixed", [ckpts["none"], ckpts["zero"], ckpts["none2"]])
    assert sorted(built) == [False, True]
    alone2, _ = run("alone2", [ckpts["none2"]])
    for column, expected in ((0, alone), (1, default), (2, alone2)):
        np.testing.assert_array_equal(mixed[:, column], expected[:, 0])
