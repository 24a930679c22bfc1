"""Tests only: a callback that kills its own process with SIGKILL when a given optimizer step starts, and
checkpoint writers that kill their run in the middle of a save."""

import io
import os
import signal
import threading
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from lit_llm.checkpoint_io import AtomicCheckpointIO, temp_path
from lit_llm.strategy import ShardedStrategy


class KillAtStep(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class RecordSamples(Callback):
    """Writes the global sample indices each rank trained on to DIR/rank{r}.json at the end of fit."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.seen: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen += batch["sample_index"].tolist()

    def on_train_end(self, trainer, pl_module) -> None:
        import json
        from pathlib import Path

        Path(self.path).mkdir(parents=True, exist_ok=True)
        (Path(self.path) / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.seen))


def _kill_run() -> None:
    """SIGKILL this run: every rank when the run leads its own process group (tests start it so), else this one."""
    if os.getpgid(0) == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


class KillingCheckpointIO(AtomicCheckpointIO):
    """Writes the `kill_at_save`-th checkpoint half, from the writer thread, and SIGKILLs its process there."""

    def __init__(self, kill_at_save: int, async_save: bool = True) -> None:
        super().__init__(async_save=async_save)
        self.kill_at_save, self.saves = kill_at_save, 0

    def write(self, checkpoint, path: Path) -> None:
        self.saves += 1
        if self.saves != self.kill_at_save:
            return super().write(checkpoint, path)
        if self.async_save:
            assert threading.current_thread() is not threading.main_thread()
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        with open(temp_path(path), "wb") as f:  # where the real write streams it
            f.write(buffer.getvalue()[: buffer.tell() // 2])
            f.flush()
            os.fsync(f.fileno())
        _kill_run()


class KillingShardedStrategy(ShardedStrategy):
    """At the `kill_at_commit`-th sharded checkpoint, whole in its temp folder (meta.pt written) but not yet
    renamed into place: kills the run (`how="kill"`), or fails as on a full disk (`how="disk_full"`)."""

    def __init__(
        self,
        kill_at_commit: int,
        how: str = "kill",
        data_parallel_size: int = 2,
        tensor_parallel_size: int = 1,
        async_checkpoint: bool = False,
    ) -> None:
        super().__init__(data_parallel_size, tensor_parallel_size, async_checkpoint=async_checkpoint)
        self.kill_at_commit, self.how, self.commits = kill_at_commit, how, 0

    def commit(self, tmp: Path, path: Path, metadata: dict) -> None:
        self.commits += 1
        if self.commits != self.kill_at_commit:
            return super().commit(tmp, path, metadata)
        torch.save(metadata, tmp / "meta.pt")  # the temp folder now looks whole
        if self.how == "disk_full":
            raise OSError(28, "No space left on device")
        _kill_run()
