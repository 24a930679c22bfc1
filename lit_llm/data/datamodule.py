"""LitDataModule: memory-mapped shard folders as Lightning training and validation data.

Training: an endless stream of windows of `seq_len + 1` tokens; sample i is a pure
function of (seed, i): by default every non-overlapping window of every source comes once per
epoch in a keyed order, sources mixed by weight (`epochs.py`; `sampling="random"` draws windows
at random offsets instead, `sampling.py`), so resuming, splitting over ranks and skipping
ranges are arithmetic. Data-parallel rank r of W takes stream positions `start + n * W + r` (the ranks
of a tensor-parallel group are one data-parallel rank: they get the same batch); each
DataLoader worker builds whole batches, and the loader returns them in a fixed round-robin
order, so the sequence of batches never depends on the number of workers. Validation is
a fixed sequential pass over the held-out shards (the datasets are in `windows.py`).

    dm = LitDataModule(path="runs/demo/data", seq_len=256, batch_size=12)
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader

from lit_llm.batch import (
    STREAM_GENERATION,
    STREAM_POSITION,
    data_parallel_rank_and_size,
)
from lit_llm.data.epochs import source_shares
from lit_llm.data.sampling import merge_ranges, sample_index
from lit_llm.data.shards import Manifest, ShardSet
from lit_llm.data.windows import TrainWindows, ValWindows, epoch_window_count
from lit_llm.errors import UserError
from lit_llm.time_budget import max_time_timer
from lit_llm.tokenizer import load_tokenizer

SAMPLING_MODES = ("epoch", "random")


class TrainStream:
    """The training loader as Lightning sees it: an endless iterable that can restart in place.

    After `LitDataModule.restart_stream()` (a rollback moved the position or added a skip), the
    next batch handed out comes from a new DataLoader (new workers) that starts where the batches
    already handed to Lightning end; those few are rebuilt in the training process on arrival
    (`LitDataModule.on_before_batch_transfer`), so nothing prefetched on the old stream is trained on.
    """

    def __init__(self, datamodule: LitDataModule) -> None:
        self.datamodule = datamodule
        self.iterator = None
        self.generation = -1
        self.handed = 0  # batches handed out by this stream; the datamodule counts those consumed

    def __iter__(self):
        self.iterator, self.handed = None, 0
        self.datamodule.consumed = 0
        return self

    def __next__(self) -> dict:
        dm = self.datamodule
        if self.iterator is None or self.generation != dm.generation:
            held = self.handed - dm.consumed  # handed to Lightning, not yet consumed: rebuilt on arrival
            self.iterator = None  # shuts the old workers down
            self.generation = dm.generation
            self.iterator = iter(dm.make_train_loader(dm.position + held * dm.global_batch))
        batch = next(self.iterator)
        batch[STREAM_GENERATION] = self.generation
        self.handed += 1
        return batch


class LitDataModule(LightningDataModule):
    """Training and validation data from a folder written by `lit-llm data prepare`."""

    def __init__(
        self,
        path: str,
        seq_len: int = 256,
        batch_size: int = 12,
        seed: int = 1234,
        num_workers: int = 0,
        pin_memory: bool = False,
        val_batch_size: int | None = None,
        val_tokens: int | None = 1_000_000,
        skip_ranges: list[tuple[int, int]] | None = None,
        verify_checksums: bool = True,
        sampling: Literal["epoch", "random"] = "epoch",
        document_mask: bool = False,
    ) -> None:
        """
        Args:
            path: Shard folder (with manifest.json) made by `lit-llm data prepare`.
            seq_len: Tokens per training sample (each sample reads seq_len + 1 tokens for the shifted targets).
            batch_size: Micro-batch size per device.
            seed: Seed of the sample order; sample i is a pure function of (seed, i).
            num_workers: DataLoader worker processes (0 = read in the training process; windows are cheap).
            pin_memory: Pin batches in page-locked memory (faster host-to-GPU copies).
            val_batch_size: Validation batch size (default: batch_size).
            val_tokens: Cap on validation tokens per evaluation (None = every held-out token).
            skip_ranges: Half-open ranges [start, end) of global sample indices never trained on.
            verify_checksums: Check every shard's sha256 against the manifest at setup (one sequential read).
            sampling: "epoch": every non-overlapping window of every source once per epoch, in a seeded
                order reshuffled each epoch, sources interleaved by weight (a source whose weight exceeds
                its size repeats). "random": each sample is a random source (by weight) and a random offset
                (windows may overlap; over one epoch's worth of samples ~63% of the corpus is seen).
            document_mask: Keep attention inside each document of a window and restart RoPE positions
                at each document (batches carry position_ids; the model masks across <|endoftext|>).
        """
        super().__init__()
        if seq_len < 1 or batch_size < 1:
            raise UserError(f"seq_len and batch_size must be >= 1 (got {seq_len}, {batch_size})")
        if sampling not in SAMPLING_MODES:
            raise UserError(f"data.sampling must be one of {', '.join(SAMPLING_MODES)} (got {sampling!r})")
        self.sampling, self.document_mask = sampling, document_mask
        self.path, self.seq_len, self.batch_size, self.seed = path, seq_len, batch_size, seed
        self.num_workers, self.pin_memory, self.val_tokens = num_workers, pin_memory, val_tokens
        self.val_batch_size = val_batch_size or batch_size
        self.verify_checksums = verify_checksums
        self.manifest = Manifest.load(path)
        if document_mask and self.eos_id is None:
            raise UserError(f"{path}/manifest.json: no tokenizer eos_id, which document_mask needs")
        self.skip_ranges = merge_ranges(skip_ranges or [])
        self.position = 0  # global training stream position: samples consumed by all ranks together
        self.generation = 0  # bumped by restart_stream(); batches of older generations are rebuilt
        self.consumed = 0  # batches of the current TrainStream consumed by the training loop
        self.world_size_at_save: int | None = None  # data-parallel groups of the run a checkpoint came from
        self.global_batch_at_save: int | None = None

    # ---- facts the model and the callbacks need --------------------------------------

    @property
    def vocab_size(self) -> int:
        return self.manifest.vocab_size

    @property
    def pad_id(self) -> int | None:
        return (self.manifest.data.get("tokenizer") or {}).get("pad_id")

    @property
    def eos_id(self) -> int | None:
        return (self.manifest.data.get("tokenizer") or {}).get("eos_id")

    @property
    def tokenizer_path(self):
        return self.manifest.tokenizer_path

    @property
    def tokenizer_sha256(self) -> str | None:
        return (self.manifest.data.get("tokenizer") or {}).get("sha256")

    def skip(self, start: int, end: int) -> None:
        """Never train on global sample indices [start, end)."""
        self.skip_ranges = merge_ranges([*self.skip_ranges, (start, end)])

    def skip_positions(self, start: int, end: int) -> tuple[int, int]:
        """Never train on the samples now at stream positions [start, end); returns their sample index range."""
        first, last = sample_index([start, max(start, end - 1)], self.skip_ranges).tolist()
        self.skip(int(first), int(last) + 1)
        return int(first), int(last) + 1

    def restart_stream(self) -> None:
        """Continue training from `position` under the current skips; nothing prefetched before is used."""
        self.generation += 1

    # ---- Lightning hooks -------------------------------------------------------------

    def setup(self, stage: str) -> None:
        weights = self.manifest.source_weights()
        if stage == "fit" and not weights:
            raise UserError(f"{self.path}: no training shards in the manifest")
        self.source_names = list(weights)
        self.source_weights = [weights[n] for n in self.source_names]
        verify = self.verify_checksums and not getattr(self, "_checksums_verified", False)
        self.train_sets = [ShardSet.open(self.path, "train", n, verify) for n in self.source_names]
        for name, shards in zip(self.source_names, self.train_sets):
            if shards.num_tokens < self.seq_len + 1:
                raise UserError(
                    f"{self.path}: source {name!r} has {shards.num_tokens} training tokens, "
                    f"fewer than seq_len + 1 = {self.seq_len + 1}"
                )
        self.val_set = ShardSet.open(self.path, "val", None, verify)
        if stage == "fit" and self.val_set.num_tokens < self.seq_len + 1:
            rank_zero_warn(
                f"{self.path}: no validation data ({self.val_set.num_tokens} held-out tokens, fewer than "
                f"seq_len + 1 = {self.seq_len + 1}): this run will not validate"
            )
        self._checksums_verified = True  # once per process: a rollback's re-fit calls setup again
        if stage == "fit" and not getattr(self, "_sampling_described", False):
            rank_zero_info(self.describe_sampling())
            self._sampling_described = True  # once per process: a rollback's re-fit calls setup again

    # ---- epochs ----------------------------------------------------------------------

    @property
    def source_windows(self) -> list[int]:
        """Non-overlapping training windows of each source: the samples of one epoch of it."""
        return [epoch_window_count(s.num_tokens, self.seq_len) for s in self.train_sets]

    def source_shares(self) -> list[float]:
        """The share of training samples each source gets."""
        if self.sampling == "epoch":
            return source_shares(self.source_weights).tolist()
        return (np.asarray(self.source_weights) / np.sum(self.source_weights)).tolist()

    def source_epochs(self, samples: int | None = None) -> dict[str, float]:
        """Epochs of each source covered after `samples` training samples (default: the current position)."""
        samples = self.position if samples is None else samples
        shares = self.source_shares()
        return {n: samples * p / w for n, p, w in zip(self.source_names, shares, self.source_windows)}

    def describe_sampling(self) -> str:
        """One line: how samples are drawn, each source's share and windows, and the epochs this run will see."""
        steps = getattr(self.trainer, "max_steps", -1) if self.trainer is not None else -1
        accumulation = getattr(self.trainer, "accumulate_grad_batches", 1) if self.trainer is not None else 1
        run_samples = steps * self.global_batch * accumulation if steps and steps > 0 else None
        planned = self.source_epochs(run_samples) if run_samples else {}
        parts = []
        for name, share, windows in zip(self.source_names, self.source_shares(), self.source_windows):
            part = f"{name} {share:.1%} of samples, {windows:,} windows of {self.seq_len + 1} tokens"
            if run_samples:
                bound = "at most " if max_time_timer(self.trainer) else ""  # max_time may end it first
                part += f", {bound}{planned[name]:.2f} epochs in {bound}{steps:,} steps"
            parts.append(part)
        how = (
            "epoch sampling (each window once per epoch, reshuffled every epoch)"
            if self.sampling == "epoch"
            else "random sampling (random offsets, with replacement)"
        )
        mask = "; document masking on" if self.document_mask else ""
        return f"data: {how}{mask}: " + "; ".join(parts)

    def train_dataloader(self) -> TrainStream:
        return TrainStream(self)

    def make_train_loader(self, start: int) -> DataLoader:
        """A DataLoader of this rank's batches from global stream position `start` under the current skips."""
        return DataLoader(
            self.train_windows(start),
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=False,
            prefetch_factor=4 if self.num_workers else None,
        )

    def train_windows(self, start: int) -> TrainWindows:
        rank, world = data_parallel_rank_and_size(self.trainer)
        return TrainWindows(
            self.train_sets,
            self.source_weights,
            self.seq_len,
            self.batch_size,
            self.seed,
            start,
            rank,
            world,
            self.skip_ranges,
            self.pad_id,
            self.sampling,
            self.eos_id if self.document_mask else None,
        )

    @property
    def global_batch(self) -> int:
        """Stream positions one training batch of all ranks spans (micro-batch x data-parallel groups)."""
        return self.batch_size * data_parallel_rank_and_size(self.trainer)[1]

    def val_dataloader(self) -> DataLoader:
        eos = self.eos_id if self.document_mask else None
        dataset = ValWindows(
            self.val_set, self.seq_len, self.val_tokens, self.token_bytes(), self.pad_id, eos
        )
        if len(dataset) == 0:
            return DataLoader([])
        return DataLoader(
            dataset,
            batch_size=self.val_batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            # Its own generator: creating the iterator draws a seed, and validation must leave the
            # training RNG untouched, or a resume from a checkpoint written at a validation step
            # (which does not repeat that validation) would draw different dropout masks.
            generator=torch.Generator(),
        )

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        # Called once per batch the training loop consumes (after any prefetching), so the
        # position saved in a checkpoint is exactly the samples trained on so far.
        if self.trainer is None or not self.trainer.training or not isinstance(batch, dict):
            return batch
        start = batch.pop(STREAM_POSITION, None)
        generation = batch.pop(STREAM_GENERATION, self.generation)
        if start is None:
            return batch
        if generation != self.generation or start != self.position:
            # Made before a restart of the stream (a rollback): rebuild it from the current position.
            batch = self.train_windows(self.position).batch_at(self.position)
            batch.pop(STREAM_POSITION)
        self.position += self.global_batch
        self.consumed += 1
        return batch

    def state_dict(self) -> dict:
        world = data_parallel_rank_and_size(self.trainer)[1]
        return {
            "position": self.position,
            "skip_ranges": [list(r) for r in self.skip_ranges],
            "seed": self.seed,
            "sampling": self.sampling,
            "seq_len": self.seq_len,
            "batch_size": self.batch_size,
            "world_size": world,  # data-parallel groups
            "global_batch": self.batch_size * world * getattr(self.trainer, "accumulate_grad_batches", 1),
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("seed", self.seed) != self.seed:
            raise UserError(
                f"checkpoint data seed {state['seed']} differs from data.seed={self.seed}; "
                "resuming would change the sample order"
            )
        saved = state.get("sampling", "random")  # checkpoints from before epoch sampling drew at random
        if saved != self.sampling:
            raise UserError(
                f"checkpoint data sampling {saved!r} differs from data.sampling={self.sampling!r}; "
                f"resuming would change the sample order (pass --data.sampling {saved} to continue it)"
            )
        self.position = int(state["position"])
        self.skip_ranges = merge_ranges([*self.skip_ranges, *map(tuple, state.get("skip_ranges", []))])
        self.world_size_at_save = state.get("world_size")
        self.global_batch_at_save = state.get("global_batch")

    # ---- bits per byte -------------------------------------------------------------

    def token_bytes(self) -> np.ndarray | None:
        """UTF-8 byte length of every token id (0 for special tokens), from the manifest's tokenizer."""
        if not hasattr(self, "_token_bytes"):
            path = self.tokenizer_path
            self._token_bytes = token_byte_lengths(path, self.vocab_size) if path is not None else None
        return self._token_bytes


def token_byte_lengths(tokenizer_dir, vocab_size: int) -> np.ndarray | None:
    """Bytes each token id decodes to (special tokens 0), or None when the tokenizer folder is gone."""
    try:
        lengths = load_tokenizer(tokenizer_dir).token_byte_lengths()
    except UserError:
        return None
    out = np.zeros(max(vocab_size, len(lengths)), dtype=np.int64)
    out[: len(lengths)] = lengths
    return out
