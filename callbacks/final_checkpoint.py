"""FinalCheckpoint: whatever ends `fit`, the final weights are validated (when there is validation data)
and saved as `last.ckpt` at the last completed optimizer step.

    trainer = Trainer(max_steps=60, val_check_interval=200, callbacks=[FinalCheckpoint()])

- `max_steps` reached: the callback sets `trainer.should_stop` at the final step, so Lightning
  runs its validation of the final weights (it validates whenever a run is asked to stop), then
  `last.ckpt` is written at train end. A `max_time` stop (the Timer sets `should_stop`) and an
  early stop go the same way.
- An exception after at least one completed step (SIGTERM/preemption, Ctrl-C, a crash): `last.ckpt`
  is written from `on_exception`, with the data position of the last completed step, so a resume
  trains the interrupted step's batches. No validation then. Under several processes only the
  exceptions every rank sees (SIGTERM, Ctrl-C) save: a crash on one rank would hang the others.

The save is complete on disk when the callback returns, also with background (async) checkpoint
writes. It is a `Checkpoint` callback, so Lightning runs it after every other callback (after a
LossSpikeRollback has lengthened the run, for instance). `lit-llm fit` adds it by default.
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lit_llm.checkpoint_io import wait_for_checkpoints


class FinalCheckpoint(Checkpoint):
    """Validate and save the final weights at the end of every fit (last.ckpt), also after an interruption."""

    def __init__(self, dirpath: str | None = None, validate: bool = True) -> None:
        """
        Args:
            dirpath: Folder of `last.ckpt` (default: the dirpath of a ModelCheckpoint with `save_last`,
                else `<default_root_dir>/checkpoints`), so `--ckpt_path last` finds it.
            validate: Ask Lightning to validate the final weights when `max_steps` is reached.
        """
        super().__init__()
        self.dirpath, self.validate = dirpath, validate
        self.last_model_path: str | None = None
        self._saved_step = -1
        self._position: int | None = None  # the datamodule's position after the last completed step
        self._step = 0

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit" and self.dirpath is None:
            keeping_last = [
                c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.save_last
            ]
            folder = keeping_last[0].dirpath if keeping_last and keeping_last[0].dirpath else None
            self.dirpath = str(folder or Path(trainer.default_root_dir) / "checkpoints")

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._step, self._position = trainer.global_step, getattr(trainer.datamodule, "position", None)
        params = sum(p.numel() for p in pl_module.parameters())
        slots = {  # optimizer state per parameter: AdamW keeps 2 moments, Muon 1 momentum buffer
            id(p): 1 if group.get("algorithm") == "muon" else 2
            for optimizer in trainer.optimizers
            for group in optimizer.param_groups
            for p in group["params"]
        }
        size = sum(p.numel() * p.element_size() * (1 + slots.get(id(p), 2)) for p in pl_module.parameters())
        kinds = "Muon momentum and AdamW moments" if 1 in slots.values() else "2 AdamW moments"
        folders = sorted(
            {str(c.dirpath) for c in trainer.checkpoint_callbacks if getattr(c, "dirpath", None)}
        )
        rank_zero_info(
            f"checkpoints: about {size / 2**20:,.1f} MiB each ({params:,} parameters: weights + {kinds}) "
            f"in {', '.join(folders)}"
        )

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx
    ) -> None:
        if trainer.global_step == self._step:  # accumulating micro-batches: no optimizer step yet
            return
        self._step, self._position = trainer.global_step, getattr(trainer.datamodule, "position", None)
        if self.validate and 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True  # Lightning validates a run that is asked to stop

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._save(trainer, "end of training")

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        everyone_sees_it = isinstance(exception, (SIGTERMException, KeyboardInterrupt))
        if trainer.world_size > 1 and not everyone_sees_it:
            return
        datamodule = trainer.datamodule
        if self._position is not None and hasattr(datamodule, "position"):
            datamodule.position = self._position  # the interrupted step's batches are trained on resume
        self._save(trainer, f"{type(exception).__name__}")

    def _save(self, trainer: Trainer, why: str) -> None:
        step = trainer.global_step
        if step == 0 or step == self._saved_step or self.dirpath is None:
            return
        path = str(Path(self.dirpath) / "last.ckpt")
        trainer.save_checkpoint(path, weights_only=False)
        wait_for_checkpoints(trainer)  # an async save is on disk, whole, before the run ends
        self._saved_step, self.last_model_path = step, path
        rank_zero_info(f"FinalCheckpoint: saved {path} at step {step} ({why})")
