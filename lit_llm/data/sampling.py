"""Deterministic sample arithmetic: global sample index -> (source, window offset), skip ranges.

The training stream is positions k = 0, 1, 2, ...; position k holds global sample index
`sample_index(k, skips)`, the k-th index not inside a skipped range. Sample index i is a
window of the corpus chosen by a counter-based hash of (seed, i): which source (by
mixture weight) and where in it. Nothing is replayed: resume, rank sharding and skipping
are arithmetic on k and i.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import xxhash

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # splitmix64's increment: 2^64 / golden ratio, odd


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place on a uint64 array: a bijection where every input bit
    affects every output bit. Pass a copy to keep the input."""
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 on uint64 arrays or scalars: the golden-ratio increment, then `mix64`."""
    with np.errstate(over="ignore"):  # numpy scalars warn on the intended wrap-around
        return mix64(x + _GOLDEN)


def key_uniform(key: str) -> float:
    """A uniform float in [0, 1), a pure function of the string `key` (xxh3-64)."""
    return xxhash.xxh3_64_intdigest(key.encode("utf-8", "surrogatepass")) / 2**64


def hash_uniform(seed: int, index: np.ndarray, stream: int) -> np.ndarray:
    """Uniform floats in [0, 1), a pure function of (seed, index, stream)."""
    key = splitmix64(np.asarray(index, dtype=np.uint64) ^ splitmix64(np.uint64(seed * 1_000_003 + stream)))
    return (key >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, disjoint, non-empty half-open ranges covering the union of `ranges`."""
    merged: list[list[int]] = []
    for start, end in sorted((int(s), int(e)) for s, e in ranges if int(e) > int(s)):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


def sample_index(positions: np.ndarray, skips: list[tuple[int, int]]) -> np.ndarray:
    """Global sample index at each stream position: the position-th index outside the skipped ranges."""
    index = np.asarray(positions, dtype=np.int64).copy()
    for start, end in skips:  # merged and sorted, so shifting in order is exact
        index = np.where(index >= start, index + (end - start), index)
    return index


def stream_position(sample: int, skips: list[tuple[int, int]]) -> int:
    """Inverse of sample_index for a sample outside the skips: how many unskipped samples precede it."""
    return int(sample - sum(min(end, sample) - start for start, end in skips if start < sample))


def choose_windows(
    seed: int, indices: np.ndarray, source_tokens: list[int], weights: list[float], window: int
) -> tuple[np.ndarray, np.ndarray]:
    """(source id, token offset) of the window of each sample index, sources picked by weight."""
    cumulative = np.cumsum(np.asarray(weights, dtype=np.float64))
    cumulative /= cumulative[-1]
    source = np.minimum(
        np.searchsorted(cumulative, hash_uniform(seed, indices, 0), side="right"), len(weights) - 1
    )
    span = np.asarray(source_tokens, dtype=np.int64)[source] - window + 1  # valid start offsets per source
    offset = (hash_uniform(seed, indices, 1) * span).astype(np.int64)
    return source, offset
