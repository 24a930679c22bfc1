"""The share of `trainer.max_time` a run has spent: the LR schedule's clock "time".

spent = SpentTime(trainer)      # needs trainer.max_time
fraction = spent(step)          # 0.0 at the start of training, 1.0 when the budget is used up
"""

from __future__ import annotations

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Timer

from lit_llm.errors import UserError


def max_time_timer(trainer: Trainer | None) -> Timer | None:
    """The Timer callback Lightning adds for `max_time`, or None when the run has no time bound."""
    callbacks = getattr(trainer, "callbacks", None) or []
    return next(
        (c for c in callbacks if isinstance(c, Timer) and c.time_remaining("train") is not None), None
    )


class SpentTime:
    """Training time elapsed over the Trainer's max_time, read from its Timer once per step and broadcast
    from rank 0 (every rank must apply the same LR)."""

    def __init__(self, trainer: Trainer) -> None:
        timer = max_time_timer(trainer)
        if timer is None:
            raise UserError(
                "model.schedule.clock time needs trainer.max_time (the wall-clock budget the schedule spans)"
            )
        self.timer, self.strategy = timer, trainer.strategy
        self.step, self.fraction = None, 0.0

    def __call__(self, step: int) -> float:
        if step != self.step:  # LambdaLR asks once per parameter group: one read and broadcast per step
            elapsed = self.timer.time_elapsed("train")
            budget = elapsed + self.timer.time_remaining("train")
            self.step, self.fraction = step, self.strategy.broadcast(elapsed / budget if budget > 0 else 1.0)
        return self.fraction
