"""TrainingProgressBar: a tqdm bar over optimizer steps (of trainer.max_steps) with loss, tokens/s and ETA.

Lightning's bar counts batches of an epoch; pre-training runs one endless epoch bounded by
max_steps, so this bar counts optimizer steps instead and shows a real ETA, also after a resume.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import TQDMProgressBar


class TrainingProgressBar(TQDMProgressBar):
    """Progress in optimizer steps out of max_steps."""

    def on_train_epoch_start(self, trainer, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        if trainer.max_steps and trainer.max_steps > 0 and self.train_progress_bar is not None:
            self.train_progress_bar.reset(total=trainer.max_steps)
            self.train_progress_bar.initial = trainer.global_step
            self.train_progress_bar.set_description("step")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        bar = self.train_progress_bar
        if bar is None or not (trainer.max_steps and trainer.max_steps > 0):
            return super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        n = trainer.global_step
        if bar.total != trainer.max_steps:  # a LossSpikeRollback lengthened the run by its discarded steps
            bar.total = trainer.max_steps
        if self.is_enabled and not bar.disable and (n % self.refresh_rate == 0 or n == bar.total):
            bar.n = n
            bar.set_postfix(self.get_metrics(trainer, pl_module))  # refreshes the bar
