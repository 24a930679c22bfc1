"""The batch contract between the data module, the LightningModule and the callbacks.

A training batch is a dict with INPUT_IDS (B, T) and LABELS (B, T) (int64; labels are the inputs
shifted by one, IGNORE_INDEX where no loss is taken: <|pad|>) and SAMPLE_INDEX (B,) (the global
sample index of each row). A validation batch has INPUT_IDS, LABELS and TARGET_BYTES (B, T): the
UTF-8 bytes each target token decodes to (0 for special tokens), for bits per byte. With document
masking (`LitDataModule(document_mask=True)`) both kinds also carry POSITION_IDS (B, T): each token's
position inside its own document, 0 at a window's first token and after every <|endoftext|>; the
model restarts RoPE there and keeps attention inside each document. The data
module adds STREAM_POSITION and STREAM_GENERATION to training batches for its own bookkeeping and
removes them before the model sees the batch. A leaf module: it imports nothing of the kit.
"""

from __future__ import annotations

import math
from typing import TypedDict

import torch

IGNORE_INDEX = -100  # label of positions without a loss (cross_entropy's ignore_index)
INPUT_IDS, LABELS = "input_ids", "labels"
SAMPLE_INDEX = "sample_index"
POSITION_IDS = "position_ids"  # (B, T) position inside the token's document (document masking only)
TARGET_BYTES = "target_bytes"
STREAM_POSITION = "stream_position"  # global stream position of a training batch's first row
STREAM_GENERATION = "stream_generation"  # which restart of the stream made the batch


class TrainBatch(TypedDict):
    input_ids: torch.Tensor  # (B, T) int64
    labels: torch.Tensor  # (B, T) int64, IGNORE_INDEX where no loss is taken
    sample_index: torch.Tensor  # (B,) int64 global sample indices


class ValBatch(TypedDict, total=False):
    input_ids: torch.Tensor  # (B, T)
    labels: torch.Tensor  # (B, T)
    target_bytes: torch.Tensor  # (B, T) bytes per target token; absent without a tokenizer


def document_positions(input_ids: torch.Tensor, eos_id: int) -> torch.Tensor:
    """Each token's position inside its document (B, T) int64: 0 at the first token of a window and
    at every token that follows <|endoftext|> (eos ends a document and belongs to it)."""
    B, T = input_ids.shape
    starts = torch.zeros(B, T, dtype=torch.bool, device=input_ids.device)
    starts[:, 0] = True
    starts[:, 1:] = input_ids[:, :-1] == eos_id
    index = torch.arange(T, device=input_ids.device).expand(B, T)
    last_start = torch.where(starts, index, 0).cummax(dim=1).values  # (B, T) index of the document's start
    return index - last_start


def bits_per_byte(nll_sum: float, num_bytes: int) -> float:
    """Bits per UTF-8 byte from summed natural-log losses over targets decoding to num_bytes bytes."""
    return nll_sum / (math.log(2) * num_bytes) if num_bytes else float("nan")


def data_parallel_rank_and_size(trainer) -> tuple[int, int]:
    """(this process's data-parallel rank, number of data-parallel groups) under a Lightning Trainer.

    Each group trains on its own batches; under tensor parallelism the ranks of a tensor-parallel group
    share one batch, so the groups are fewer than the processes. Read from the strategy's public
    `distributed_sampler_kwargs` (DDP: every process; ModelParallelStrategy: its data-parallel mesh);
    (0, 1) without a Trainer or with a single-device strategy.
    """
    if trainer is None:
        return 0, 1
    layout = getattr(getattr(trainer, "strategy", None), "distributed_sampler_kwargs", None) or {}
    return int(layout.get("rank", trainer.global_rank)), int(layout.get("num_replicas", trainer.world_size))


def describe_groups(trainer, groups: int) -> str:
    """'2 processes', or '4 processes as 2 data-parallel groups of 2 tensor-parallel ranks'."""
    if groups == trainer.world_size:
        return f"{groups} processes"
    return (
        f"{trainer.world_size} processes as {groups} data-parallel groups of "
        f"{trainer.world_size // groups} tensor-parallel ranks"
    )


def resume_note(datamodule, groups: int, global_batch: int) -> str:
    """What changed since the checkpoint a run resumes from: the data-parallel layout, the global batch."""
    saved_groups = getattr(datamodule, "world_size_at_save", None)
    saved_batch = getattr(datamodule, "global_batch_at_save", None)
    changes = []
    if saved_groups is not None and saved_groups != groups:
        changes.append(f"data-parallel groups: {saved_groups} then, {groups} now")
    if saved_batch is not None and saved_batch != global_batch:
        changes.append(
            f"the global batch was {saved_batch} samples and is {global_batch} now (the loss curve "
            "and the LR schedule's meaning per step change)"
        )
    if not changes:
        return ""
    return f"; resumed from a checkpoint of another layout ({'; '.join(changes)}): the sample stream continues at position {datamodule.position}"
