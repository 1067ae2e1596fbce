"""Token alignment: the evaluator's online builder reproduces the training tokens exactly."""

from __future__ import annotations

import numpy as np
import pytest

from icrl.ad import ContextDataset, TokenLayout, history_tokens, parse_context
from icrl.ad._tokens import TokenBuilder


def test_online_builder_reproduces_training_tokens(record) -> None:
    h = record(episodes=3)
    feats, targets = history_tokens(h)
    layout = TokenLayout(h.obs.shape[1], h.action.shape[1])
    builder = TokenBuilder(1, *h.obs.shape[1:], *h.action.shape[1:])
    online = []
    for t in range(len(h.reward)):
        # What the evaluator does each env step: token for the current obs, then the transition.
        online.append(builder.token(h.obs[t][None], np.array([h.step[t] == 0]))[0])
        builder.record(h.action[t][None], h.reward[t][None], h.next_obs[t][None])
    online = np.stack(online)
    assert online.shape == (len(h.reward), layout.width)
    np.testing.assert_array_equal(online, feats)
    np.testing.assert_array_equal(targets, h.action)


def test_token_contents_at_an_episode_boundary(record) -> None:
    h = record(episodes=2)
    feats, _ = history_tokens(h)
    sl = TokenLayout(h.obs.shape[1], h.action.shape[1]).slices
    b = int(np.flatnonzero(h.step == 0)[1])  # first step of episode 1
    # The previous transition is the last one of episode 0; the obs is the reset state, which is
    # not that transition's next_obs.
    np.testing.assert_array_equal(feats[b, sl["prev_next_obs"]], h.next_obs[b - 1])
    np.testing.assert_array_equal(feats[b, sl["obs"]], h.obs[b])
    assert not np.array_equal(h.next_obs[b - 1], h.obs[b])
    assert feats[b, sl["flags"]].tolist() == [1.0, 0.0]
    assert feats[0, sl["flags"]].tolist() == [1.0, 1.0]
    assert not feats[0, : sl["obs"].start].any()
    assert feats[1, sl["flags"]].tolist() == [0.0, 0.0]
    np.testing.assert_array_equal(feats[1, sl["prev_action"]], h.action[0])
    assert feats[1, sl["prev_reward"]][0] == np.float32(h.reward[0])


def test_window_tokens_are_slices_of_the_full_history(record) -> None:
    h = record(episodes=2)
    full, full_t = history_tokens(h)
    win, win_t = history_tokens(h, 30, 70)
    np.testing.assert_array_equal(win, full[30:70])
    np.testing.assert_array_equal(win_t, full_t[30:70])
    with pytest.raises(ValueError, match="outside a history"):
        history_tokens(h, 50, 500)


@pytest.mark.parametrize(
    ("mode", "kw", "expect_len"),
    [("full", "", 150), ("episodes", ":2", 100), ("window", ":40", 40)],
)
def test_dataset_contexts(record, mode, kw, expect_len) -> None:
    hs = {f"t{i}": record(episodes=3, seed=i, task_index=i) for i in range(2)}
    ds = ContextDataset.from_histories(hs, context=parse_context(mode + kw), seed=3)
    assert ds.info.context_len == expect_len
    assert ds.info.episode_length == 50
    for item in range(ds.items_per_epoch):
        i, start, stop = ds.span(0, item)
        assert stop - start == expect_len
        it = ds[(0, item)]
        full, _ = history_tokens(hs[ds.entries[i].name])
        np.testing.assert_array_equal(it["features"].numpy(), full[start:stop])
        if mode == "episodes":
            assert start % 50 == 0
    assert ds.span(1, 0) == ds.span(1, 0)  # a pure function of (seed, epoch, item)
    if mode == "full":
        assert ds.info.context_episodes == 3
