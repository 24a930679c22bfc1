"""Epoch sampling (lit_llm/data/epochs.py): keyed permutations, mixing shares, one visit per window per epoch."""

import numpy as np
import pytest

from lit_llm.data.epochs import (
    MIX_BLOCK,
    epoch_windows,
    epochs_seen,
    keyed_permutation,
    mixing_slots,
    source_shares,
)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 9, 100, 1000, 4097, 65536, 100_003])
def test_keyed_permutation_is_a_bijection_of_any_size(size):
    out = keyed_permutation(np.arange(size), size, 7)
    assert np.array_equal(np.sort(out), np.arange(size))


def test_keyed_permutation_depends_on_the_key_and_is_not_close_to_identity():
    a, b = keyed_permutation(np.arange(1000), 1000, 1), keyed_permutation(np.arange(1000), 1000, 2)
    assert (a != b).mean() > 0.95 and (a == np.arange(1000)).mean() < 0.02
    # each element may bring its own size and key: one call equals per-group calls
    sizes, keys = np.array([1000, 1000, 37, 37]), np.array([1, 2, 1, 2])
    index = np.array([5, 5, 36, 0])
    expect = [keyed_permutation(np.array([i]), s, k)[0] for i, s, k in zip(index, sizes, keys)]
    assert keyed_permutation(index, sizes, keys).tolist() == expect


def test_mixing_slots_follow_the_weights_within_one_slot():
    weights = [3.0, 1.0, 0.001, 0.5]
    slots = mixing_slots(weights)
    assert slots.sum() == MIX_BLOCK
    share = np.asarray(weights) / sum(weights)
    assert np.abs(slots / MIX_BLOCK - share).max() <= 1 / MIX_BLOCK
    assert np.allclose(source_shares(weights), slots / MIX_BLOCK)


def test_one_source_visits_every_window_once_in_each_epoch_in_a_new_order():
    windows = 1000
    source, window, epoch = epoch_windows(3, np.arange(3 * windows), [windows], [1.0])
    assert (source == 0).all() and np.array_equal(epoch, np.repeat([0, 1, 2], windows))
    orders = [window[epoch == e] for e in range(3)]
    assert all(np.array_equal(np.sort(o), np.arange(windows)) for o in orders)
    assert (orders[0] != orders[1]).mean() > 0.9  # reshuffled each epoch
    assert not np.array_equal(orders[0], epoch_windows(4, np.arange(windows), [windows], [1.0])[1])


def test_mixed_sources_each_cover_every_window_once_per_epoch_with_their_shares():
    windows, weights = [5000, 300, 7], [3.0, 1.0, 0.01]
    n = 2 * MIX_BLOCK  # whole mixing blocks: every source's share is exact
    source, window, epoch = epoch_windows(11, np.arange(n), windows, weights)
    for k, size in enumerate(windows):
        mine = source == k
        assert mine.sum() == 2 * mixing_slots(weights)[k]
        for e in range(mine.sum() // size):  # every epoch the samples fully cover
            assert np.array_equal(np.sort(window[mine & (epoch == e)]), np.arange(size))
    # the small source repeats: its epochs and the planned figure agree
    assert epoch[source == 2].max() == (2 * mixing_slots(weights)[2] - 1) // 7
    assert epochs_seen(n, windows, weights)[2] == pytest.approx((source == 2).sum() / 7)
    # interleaved, not in runs: every 1,000 consecutive samples hold all of the big sources
    shares = [np.mean(source[i : i + 1000] == 0) for i in range(0, n, 1000)]
    assert min(shares) > 0.65 and max(shares) < 0.85
