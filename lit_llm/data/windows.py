"""Training and validation windows of shard folders as torch datasets (used by `LitDataModule`).

TrainWindows builds whole batches of a rank's stream positions: sample i is a pure function of
(seed, i) (`epochs.py` for epoch sampling, `sampling.py` for random offsets). ValWindows is a
fixed sequential pass over the held-out shards, with the bytes of each target token.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from lit_llm.batch import (
    IGNORE_INDEX,
    INPUT_IDS,
    LABELS,
    POSITION_IDS,
    SAMPLE_INDEX,
    STREAM_POSITION,
    TARGET_BYTES,
    document_positions,
)
from lit_llm.data.epochs import epoch_shift, epoch_windows
from lit_llm.data.sampling import choose_windows, sample_index
from lit_llm.data.shards import ShardSet


def epoch_window_count(num_tokens: int, seq_len: int) -> int:
    """Non-overlapping windows of seq_len + 1 tokens (neighbours share one token) per epoch of a source of
    num_tokens tokens: one window's length is kept free, so the tiling can start at any shift < seq_len."""
    return max(1, (num_tokens - seq_len) // seq_len)


class TrainWindows(IterableDataset):
    """Batches of training windows for one rank, starting at a global stream position."""

    def __init__(
        self,
        sources: list[ShardSet],
        weights: list[float],
        seq_len: int,
        batch_size: int,
        seed: int,
        start: int,
        rank: int,
        world_size: int,
        skips: list[tuple[int, int]],
        pad_id: int | None,
        sampling: str = "epoch",
        eos_id: int | None = None,
    ) -> None:
        """`eos_id`: with it, batches carry POSITION_IDS for document masking."""
        self.sources, self.weights, self.seq_len, self.batch_size = sources, weights, seq_len, batch_size
        self.seed, self.start, self.rank, self.world_size = seed, start, rank, world_size
        self.skips, self.pad_id, self.sampling, self.eos_id = skips, pad_id, sampling, eos_id
        self.source_tokens = [s.num_tokens for s in sources]
        # windows per source, computed once
        self.epoch_window_list = [epoch_window_count(n, seq_len) for n in self.source_tokens]
        self.epoch_windows = np.asarray(self.epoch_window_list)

    def window_offsets(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(source id, first token) of the window of each global sample index."""
        if self.sampling == "random":
            return choose_windows(self.seed, indices, self.source_tokens, self.weights, self.seq_len + 1)
        source, window, epoch = epoch_windows(self.seed, indices, self.epoch_window_list, self.weights)
        # shifts that fit
        free = np.asarray(self.source_tokens)[source] - self.epoch_windows[source] * self.seq_len
        shift = epoch_shift(self.seed, source, epoch, np.minimum(free, self.seq_len))
        return source, window * self.seq_len + shift

    def batch_at(self, start: int) -> dict:
        """This rank's batch of the global batch that starts at stream position `start`.

        Rows take positions start + b * world_size + rank, b < batch_size.
        """
        positions = start + np.arange(self.batch_size) * self.world_size + self.rank
        indices = sample_index(positions, self.skips)
        source, offset = self.window_offsets(indices)
        windows = np.stack([self.sources[s].window(int(o), self.seq_len + 1) for s, o in zip(source, offset)])
        tokens = torch.from_numpy(windows.astype(np.int64))  # (B, T + 1)
        labels = tokens[:, 1:].clone()
        if self.pad_id is not None:
            labels[labels == self.pad_id] = IGNORE_INDEX  # <|pad|> is never a loss target
        batch = {
            INPUT_IDS: tokens[:, :-1],
            LABELS: labels,
            SAMPLE_INDEX: torch.from_numpy(indices),
            STREAM_POSITION: start,
        }
        if self.eos_id is not None:
            batch[POSITION_IDS] = document_positions(batch[INPUT_IDS], self.eos_id)
        return batch

    def batch(self, n: int) -> dict:
        """Rank-local batch n of this stream: the global batch at start + n * batch_size * world_size."""
        return self.batch_at(self.start + n * self.stride)

    @property
    def stride(self) -> int:
        """Stream positions one global batch spans."""
        return self.batch_size * self.world_size

    def __iter__(self):
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        n = worker
        while True:
            yield self.batch(n)
            n += num_workers


class ValWindows(Dataset):
    """Consecutive non-overlapping windows over the validation shards, with target byte counts."""

    def __init__(
        self,
        shards: ShardSet,
        seq_len: int,
        max_tokens: int | None,
        token_bytes: np.ndarray | None,
        pad_id: int | None,
        eos_id: int | None = None,
    ) -> None:
        self.shards, self.seq_len, self.token_bytes, self.pad_id = shards, seq_len, token_bytes, pad_id
        self.eos_id = eos_id  # with it, items carry POSITION_IDS for document masking
        usable = shards.num_tokens - 1 if max_tokens is None else min(max_tokens, shards.num_tokens - 1)
        self.length = max(usable // seq_len, 0)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        window = torch.from_numpy(self.shards.window(i * self.seq_len, self.seq_len + 1).astype(np.int64))
        labels = window[1:].clone()
        item = {INPUT_IDS: window[:-1], LABELS: labels}
        if self.eos_id is not None:
            item[POSITION_IDS] = document_positions(window[None, :-1], self.eos_id)[0]
        if self.token_bytes is not None:
            item[TARGET_BYTES] = torch.from_numpy(self.token_bytes[labels.numpy()].astype(np.int64))
        if self.pad_id is not None:
            labels[labels == self.pad_id] = IGNORE_INDEX
        return item
