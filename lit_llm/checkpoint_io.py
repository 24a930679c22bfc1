"""AtomicCheckpointIO: checkpoint files written beside their target, then renamed into place; optionally
in a background thread.

Lightning's default writer builds the whole checkpoint in memory and, through fsspec, in a
temporary file under $TMPDIR; on a cluster whose $TMPDIR is another filesystem than the run
folder the final move is a copy (not atomic), and a killed write leaves the temp file behind.
This writer streams `torch.save` into `.<name>.tmp-<pid>` in the target's folder, fsyncs it and
renames it (atomic on one filesystem); temp files a killed write left are removed on the next save.

With `async_save=True` the checkpoint's tensors are copied to CPU memory on the training thread (a
snapshot of that moment; tensors sharing storage still share it; the memory is kept and reused by
the next save, so a run holds one extra CPU copy of its checkpoint) and one background thread writes
the copy, atomically as above, while training goes on. At most one write is in flight: a new save
waits for the previous one, and so do `remove_checkpoint`, `load_checkpoint` and `teardown`; `wait()`
blocks until the write is done and re-raises its error (one line naming the file).

A sharded checkpoint folder (what `ShardedStrategy` / Lightning's `ModelParallelStrategy` write) given to
`load_checkpoint` is merged into one checkpoint first, so one process (or DDP) resumes an FSDP2 run.

    Trainer(plugins=[AtomicCheckpointIO(async_save=True)])   # `lit-llm fit` adds it unless plugins are configured
"""

from __future__ import annotations

import os
import re
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_info
from lightning_utilities.core.apply_func import apply_to_collection

from lit_llm.checkpoint import consolidate_sharded, is_sharded, recover_checkpoint
from lit_llm.errors import UserError

_STALE = re.compile(r"\..+\.tmp-\d+")  # `.<name>.tmp-<pid>`: what a killed write leaves


class CheckpointWriteError(UserError):
    """A checkpoint write that failed in the background (one line naming the file)."""

    @classmethod
    def of(cls, path, err: BaseException) -> CheckpointWriteError:
        first = (str(err).strip().splitlines() or [""])[0][:300]
        return cls(
            f"{path}: checkpoint not written ({type(err).__name__}: {first}); the previous one is intact"
        )


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save to a temp file beside the target, fsync, rename; stale temp files cleaned; optionally async."""

    def __init__(self, async_save: bool = False) -> None:
        """
        Args:
            async_save: Copy the checkpoint to CPU memory on the training thread and write it in a background
                thread (at most one write in flight); the file appears, whole, when the write is done.
        """
        super().__init__()
        self.async_save = async_save
        self._executor: ThreadPoolExecutor | None = None
        self._pending: Future | None = None
        self._buffers: list[torch.UntypedStorage] = []  # the last snapshot's memory, kept for the next one

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options (got {storage_options!r})")
        if not self.async_save:
            self.write(checkpoint, Path(path))
            return
        self.wait()  # at most one write in flight (and one CPU copy of the checkpoint)
        snapshot = cpu_snapshot(checkpoint, self._buffers)  # into the previous copy's memory: it is written
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-writer")
        self._pending = self._executor.submit(self._write_in_background, snapshot, Path(path))

    def write(self, checkpoint: dict[str, Any], path: Path) -> None:
        """Write `checkpoint` to `path` through a temp file beside it (on the writer thread when async)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.iterdir():  # left by a killed write (none of ours is in flight)
            if _STALE.fullmatch(stale.name):
                stale.unlink(missing_ok=True)
        tmp = temp_path(path)
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def _write_in_background(self, checkpoint: dict[str, Any], path: Path) -> None:
        try:
            self.write(checkpoint, path)
        except Exception as err:
            raise CheckpointWriteError.of(path, err) from err

    def wait(self) -> None:
        """Block until the background write (if any) is done; re-raise its error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def remove_checkpoint(self, path) -> None:
        self.wait()
        super().remove_checkpoint(path)

    def load_checkpoint(self, path, map_location=None, weights_only: bool | None = None) -> dict[str, Any]:
        self.wait()
        path = Path(path)
        recover_checkpoint(path)
        if is_sharded(path):
            rank_zero_info(f"{path}: a sharded checkpoint; merging its shards to resume it here (resharding)")
            return consolidate_sharded(path)
        if map_location is None:
            return super().load_checkpoint(path, weights_only=weights_only)
        return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)

    def teardown(self) -> None:
        try:
            self.wait()
        finally:
            self._buffers = []
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None


def temp_path(path: Path) -> Path:
    """Where a checkpoint for `path` is written before the rename."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def cpu_snapshot(obj: Any, buffers: list[torch.UntypedStorage] | None = None) -> Any:
    """`obj` with every tensor replaced by a CPU copy taken now; containers rebuilt. Tensors that share a
    storage (tied weights, views) share the copy, so `torch.save` writes what it would have written.

    `buffers`: the storages of a previous snapshot that nothing uses any more, reused in order where the
    sizes match (fresh memory costs page faults: a copy into it took 5-10x longer here); on return it
    holds this snapshot's storages.
    """
    spare, made = list(buffers or []), []
    copies: dict[tuple, torch.UntypedStorage] = {}

    def copy(t: torch.Tensor) -> torch.Tensor:
        t = t.detach()
        storage = t.untyped_storage() if type(t) is torch.Tensor and t.layout == torch.strided else None
        if storage is None or storage.nbytes() == 0:
            return t.to("cpu", copy=True)
        key = (storage.device, storage.data_ptr())
        if key not in copies:
            i, size = len(made), storage.nbytes()
            reuse = i < len(spare) and spare[i].nbytes() == size
            copies[key] = spare[i] if reuse else torch.UntypedStorage(size, device="cpu")
            copies[key].copy_(storage)
            made.append(copies[key])
        return torch.empty(0, dtype=t.dtype).set_(copies[key], t.storage_offset(), t.size(), t.stride())

    snapshot = apply_to_collection(obj, torch.Tensor, copy)
    if buffers is not None:
        buffers[:] = made
    return snapshot


def wait_for_checkpoints(trainer) -> None:
    """Block until checkpoints being written in the background (by the strategy or its checkpoint IO) are in
    place; re-raise a failed write. Call it before loading a checkpoint this run wrote."""
    strategy = trainer.strategy
    for owner in (strategy, strategy.checkpoint_io):
        wait = getattr(owner, "wait", None)
        if callable(wait):
            wait()
