"""ShardedStrategy: Lightning's ModelParallelStrategy (FSDP2, tensor parallel) with atomic, optionally
asynchronous, sharded checkpoints.

ModelParallelStrategy writes a checkpoint folder (a `*.distcp` shard per rank, `.metadata`, and Lightning's
`meta.pt` last, from rank 0) in place: a run killed while overwriting `last.ckpt/` leaves the old meta.pt
beside half-new shards, a folder that looks whole. Here all ranks write into `.<name>.tmp` beside the
target; once every shard and `.metadata` are there, rank 0 writes meta.pt and moves the folder into place
(`lit_llm.checkpoint.move_into_place`: one rename, or two through `.<name>.old` when it replaces a
checkpoint; `resolve_checkpoint` and loading move a `.old` back after a kill between the two). What a
killed save left is removed on the next save.

With `async_checkpoint=True`, `torch.distributed.checkpoint.async_save` copies the shards to CPU memory on
the training thread (into the previous save's copy: one stager for the run) and writes them in a
background thread, whose collectives run on a gloo process group of their own; rank 0 moves the folder
into place when the write completes. At most one save is in flight: a new save waits for the previous
one, and so do `load_checkpoint`, `remove_checkpoint` and `teardown`; `wait()` blocks until it is done
and re-raises its error.

    lit-llm fit ... --trainer.strategy.class_path lightning.pytorch.strategies.ModelParallelStrategy \\
        --checkpoint.async_save true          # `lit-llm fit` swaps in ShardedStrategy with the same arguments
    Trainer(strategy=ShardedStrategy(data_parallel_size=2, tensor_parallel_size=1, async_checkpoint=True))
"""

from __future__ import annotations

import os
from concurrent.futures import Future
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed.checkpoint as dcp
from lightning.fabric.plugins.collectives.torch_collective import default_pg_timeout
from lightning.pytorch.strategies import ModelParallelStrategy
from torch.distributed.checkpoint.staging import DefaultStager, StagingOptions

from lit_llm.checkpoint import SHARDED_METADATA, move_into_place, recover_checkpoint, remove_stale
from lit_llm.checkpoint_io import CheckpointWriteError, cpu_snapshot
from lit_llm.errors import UserError


class ShardedStrategy(ModelParallelStrategy):
    """ModelParallelStrategy whose distributed checkpoints are written beside the target and renamed into place."""

    def __init__(
        self,
        data_parallel_size: Literal["auto"] | int = "auto",
        tensor_parallel_size: Literal["auto"] | int = "auto",
        save_distributed_checkpoint: bool = True,
        process_group_backend: str | None = None,
        timeout: timedelta | None = default_pg_timeout,
        async_checkpoint: bool = False,
    ) -> None:
        """
        Args:
            data_parallel_size: As ModelParallelStrategy: devices in a data-parallel group ("auto": the nodes).
            tensor_parallel_size: As ModelParallelStrategy: devices in a tensor-parallel group ("auto": a node's).
            save_distributed_checkpoint: As ModelParallelStrategy: a folder of shards (True) or one file
                gathered on rank 0 (False; then written by the checkpoint IO plugin).
            process_group_backend: As ModelParallelStrategy.
            timeout: As ModelParallelStrategy; also the timeout of the background writer's process group.
            async_checkpoint: Write sharded checkpoints in the background (torch.distributed.checkpoint.async_save).
        """
        super().__init__(
            data_parallel_size,
            tensor_parallel_size,
            save_distributed_checkpoint,
            process_group_backend,
            timeout,
        )
        self.requested_layout = (data_parallel_size, tensor_parallel_size)
        self.async_checkpoint = async_checkpoint
        self.distributed_checkpoint = save_distributed_checkpoint
        self.checkpoint_timeout = timeout
        self._checkpoint_group = None  # the background writer's collectives: never the training group
        self._pending: Future | None = None  # done when the save in flight is in place (or has failed)
        self._stager: DefaultStager | None = None

    def setup_environment(self) -> None:
        self.check_layout()
        super().setup_environment()
        if self.async_checkpoint and self.distributed_checkpoint and self._checkpoint_group is None:
            self._checkpoint_group = torch.distributed.new_group(
                backend="gloo", timeout=self.checkpoint_timeout
            )

    def check_layout(self) -> None:
        """One line when the mesh sizes do not multiply to the processes ("auto" is Lightning's: the nodes for
        data parallel, a node's devices for tensor parallel), instead of a traceback from every rank."""
        nodes, devices = self.num_nodes, self.num_processes
        dp, tp = self.requested_layout
        sizes = (dp if isinstance(dp, int) else nodes, tp if isinstance(tp, int) else devices)
        if sizes[0] * sizes[1] == nodes * devices:
            return
        shown = [f"{v}" if isinstance(v, int) else f"auto (= {n})" for v, n in zip((dp, tp), sizes)]
        raise UserError(
            f"data_parallel_size {shown[0]} x tensor_parallel_size {shown[1]} != {nodes * devices} processes "
            f"({nodes} nodes x {devices} devices); set both, e.g. data_parallel_size {nodes * devices} and "
            "tensor_parallel_size 1 for FSDP2 over every device"
        )

    def save_checkpoint(
        self, checkpoint: dict[str, Any], filepath, storage_options: Any | None = None
    ) -> None:
        if not self.distributed_checkpoint:  # one file from rank 0, through the (atomic) checkpoint IO
            self.wait()
            return super().save_checkpoint(checkpoint, filepath, storage_options)
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options (got {storage_options!r})")
        self._wait_everywhere()  # at most one save in flight
        path = Path(self.broadcast(str(filepath)))
        tmp = path.with_name(f".{path.name}.tmp")
        if self.is_global_zero:
            path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale(path.parent)  # what killed saves left, before anything of this save exists
            tmp.mkdir()
        self.barrier()
        optimizers = checkpoint.pop("optimizer_states", [])
        state = {
            "state_dict": checkpoint.pop("state_dict"),
            **{f"optimizer_{i}": s for i, s in enumerate(optimizers)},
        }
        if self.async_checkpoint:
            written = self._write_in_background(state, tmp)
            metadata = cpu_snapshot(checkpoint)  # meta.pt is written later: keep this moment's values
        else:
            written, metadata = Future(), checkpoint
            try:
                dcp.save(state, checkpoint_id=tmp)  # returns on every rank once rank 0 has written .metadata
                written.set_result(None)
            except Exception as err:  # reported like a background failure, in one line
                written.set_exception(err)
        done: Future = Future()
        self._pending = done
        written.add_done_callback(lambda future: self._finish(future, done, tmp, path, metadata))
        if not self.async_checkpoint:
            self._wait_everywhere()

    def _write_in_background(self, state: dict[str, Any], tmp: Path) -> Future:
        """Stage `state` in CPU memory now; write it to `tmp` on a background thread (a gloo group of its own)."""
        if self._checkpoint_group is None:
            raise RuntimeError(f"{type(self).__name__}: async_checkpoint needs setup_environment() first")
        if self._stager is None:  # one stager for the run: it reuses its CPU copies from save to save
            self._stager = DefaultStager(StagingOptions(False, False, False, False))
        return dcp.async_save(
            state, checkpoint_id=tmp, process_group=self._checkpoint_group, async_stager=self._stager
        )

    def commit(self, tmp: Path, path: Path, metadata: dict[str, Any]) -> None:
        """Rank 0, once every rank's shards and `.metadata` are in `tmp`: write meta.pt, move `tmp` to `path`."""
        with open(tmp / SHARDED_METADATA, "wb") as f:
            torch.save(metadata, f)
            f.flush()
            os.fsync(f.fileno())
        move_into_place(tmp, path)

    def _finish(self, written: Future, done: Future, tmp: Path, path: Path, metadata: dict[str, Any]) -> None:
        """Runs when the background write completes (on its thread): commit on rank 0, then mark it done."""
        try:
            written.result()
            if self.is_global_zero:
                self.commit(tmp, path, metadata)
        except Exception as err:
            done.set_exception(CheckpointWriteError.of(path, err))
        else:
            done.set_result(None)

    def wait(self) -> None:
        """Block until the save in flight (if any) is in place on this rank's side; re-raise its error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _wait_everywhere(self) -> None:
        """`wait()` on every rank (a collective): a failure of rank 0's commit is raised on all ranks, which
        would otherwise wait for rank 0 in their next collective until the timeout."""
        error = None
        try:
            self.wait()
        except CheckpointWriteError as err:
            error = err
        said = self.broadcast(str(error) if error else None)
        if error is not None:
            raise error
        if said:
            raise CheckpointWriteError(said)

    def load_checkpoint(self, checkpoint_path, weights_only: bool | None = None) -> dict[str, Any]:
        self._wait_everywhere()
        path = Path(self.broadcast(str(checkpoint_path)))
        if self.is_global_zero:
            recover_checkpoint(path)
        self.barrier()  # every rank reads once rank 0's save (and any recovery) is in place
        return super().load_checkpoint(path, weights_only=weights_only)

    def remove_checkpoint(self, filepath) -> None:
        self.wait()
        super().remove_checkpoint(filepath)

    def teardown(self) -> None:
        try:
            self.wait()
        finally:
            if self._stager is not None:
                self._stager.close()
                self._stager = None
            self.checkpoint_io.teardown()  # ModelParallelStrategy.teardown leaves it out (an async IO would not finish)
            super().teardown()
