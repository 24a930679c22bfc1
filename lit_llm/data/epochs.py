"""Epoch sampling: every window of every source once per epoch, in a keyed order, sources mixed by weight.

A source of N training tokens holds `(N - seq_len) // seq_len` (at least 1) non-overlapping windows
of seq_len + 1 tokens (window w of an epoch starts at token w * seq_len + that epoch's shift, so every
token of the tiling is a target exactly once per epoch, and every shift fits).
Global sample index i maps to a window in three pure steps, with no index files and O(1) memory:

1. Mixing. The stream is cut into blocks of MIX_BLOCK samples; every block gives source k exactly
   `slots[k]` samples (the weights apportioned by largest remainder), at slot positions shuffled per
   block by a keyed permutation. So source k's share is slots[k] / MIX_BLOCK (within 1 / MIX_BLOCK of
   its weight) in every block, and sample i is the j-th sample of its source, j = block * slots[k] + rank.
2. Epochs. The j-th sample of source k belongs to epoch j // windows[k], position j % windows[k].
3. Order. The position is mapped through a keyed permutation of range(windows[k]), reshuffled each
   epoch (key = seed, source, epoch): within an epoch each window comes exactly once.
4. Boundaries. Epoch 0 tiles a source from its first token; each later epoch starts its tiling at
   a keyed shift in [0, seq_len) (`epoch_shift`), so a repeated epoch sees the text cut differently.

The permutation is a Feistel network on the next even number of bits with cycle walking, so any
domain size works and the cost per sample is a few dozen integer operations, flat in corpus size.

    source, window, epoch = epoch_windows(seed=1234, indices=np.arange(8), windows=[1000, 50], weights=[3, 1])
"""

from __future__ import annotations

import numpy as np

from lit_llm.data.sampling import splitmix64

MIX_BLOCK = 1 << 16  # samples per mixing block: shares are exact to 1 / 65,536 within every block
FEISTEL_ROUNDS = 6


def permutation_key(*parts) -> np.ndarray:
    """64-bit keys from small non-negative integers or integer arrays (seed, source, epoch, ...), broadcast."""
    key = np.full(np.broadcast(*parts).shape, 0x243F6A8885A308D3, dtype=np.uint64)  # pi: any fixed start
    for part in parts:
        key = splitmix64(key ^ np.asarray(part, dtype=np.uint64))
    return key


def keyed_permutation(index: np.ndarray, size, key) -> np.ndarray:
    """pi(index) for a keyed pseudo-random permutation pi of range(size); index < size, all broadcast.

    A balanced Feistel network on 2h bits (4^h >= size) is a bijection of range(4^h); values that land
    outside range(size) are fed through again (cycle walking), which keeps a bijection of range(size).
    Each element may have its own size and key, so one call serves a whole batch.
    """
    index, size, key = np.broadcast_arrays(
        np.asarray(index, dtype=np.uint64),
        np.asarray(size, dtype=np.uint64),
        np.asarray(key, dtype=np.uint64),
    )
    bits = np.ceil(np.log2(np.maximum(size, 2).astype(np.float64))).astype(np.uint64)
    bits += (np.uint64(1) << bits) < size  # float rounding above 2^53: size <= 2^bits exactly
    half_bits = np.maximum((bits + np.uint64(1)) // np.uint64(2), np.uint64(1))
    mask = (np.uint64(1) << half_bits) - np.uint64(1)
    round_keys = [permutation_key(key, r) for r in range(FEISTEL_ROUNDS)]
    out = index.copy()
    todo = size > 1
    out[~todo] = 0
    while todo.any():
        x, h, m = out[todo], half_bits[todo], mask[todo]
        left, right = x >> h, x & m
        for round_key in round_keys:
            left, right = right, left ^ (splitmix64(right ^ round_key[todo]) & m)
        out[todo] = (left << h) | right
        todo &= out >= size
    return out


def mixing_slots(weights: list[float], block: int = MIX_BLOCK) -> np.ndarray:
    """Samples of each source per mixing block: `block` apportioned by weight (largest remainder)."""
    share = np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
    exact = share * block
    slots = np.floor(exact).astype(np.int64)
    remainder_order = np.argsort(-(exact - slots), kind="stable")
    slots[remainder_order[: block - int(slots.sum())]] += 1
    return slots


def source_samples(seed: int, indices: np.ndarray, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(source, j) of each global sample index: its source and how many samples of that source precede it."""
    indices = np.asarray(indices, dtype=np.int64)
    if len(slots) == 1:
        return np.zeros_like(indices), indices
    block_size = int(slots.sum())
    block, slot = np.divmod(indices, block_size)
    key = permutation_key(seed, 1 << 40, block)  # 1 << 40: apart from the (seed, source, epoch) keys
    shuffled = keyed_permutation(slot, block_size, key).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(slots)[:-1]])
    source = np.searchsorted(np.cumsum(slots), shuffled, side="right")
    return source, block * slots[source] + (shuffled - starts[source])


def epoch_windows(
    seed: int, indices: np.ndarray, windows: list[int], weights: list[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source, window, epoch) of each global sample index: window w of a source starts at w * seq_len."""
    source, j = source_samples(seed, indices, mixing_slots(weights))
    per_source = np.asarray(windows, dtype=np.int64)[source]
    epoch, position = np.divmod(j, per_source)
    window = keyed_permutation(position, per_source, permutation_key(seed, source, epoch)).astype(np.int64)
    return source, window, epoch


def epoch_shift(seed: int, source: np.ndarray, epoch: np.ndarray, choices: np.ndarray) -> np.ndarray:
    """Where each epoch's tiling of a source starts: 0 in epoch 0, then a keyed shift in range(choices),
    so later epochs cut the text at other boundaries instead of repeating the same windows."""
    key = permutation_key(seed, source, epoch, 1 << 41)  # 1 << 41: apart from the other keys
    uniform = (key >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return np.where(np.asarray(epoch) == 0, 0, (uniform * np.asarray(choices)).astype(np.int64))


def source_shares(weights: list[float]) -> np.ndarray:
    """The share of the stream each source actually gets (slots / MIX_BLOCK), close to its weight."""
    return mixing_slots(weights) / MIX_BLOCK


def epochs_seen(samples: int, windows: list[int], weights: list[float]) -> list[float]:
    """Epochs of each source that `samples` training samples cover (within one mixing block)."""
    return [samples * share / w for share, w in zip(source_shares(weights), windows)]
