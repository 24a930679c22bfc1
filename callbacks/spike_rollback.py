"""LossSpikeRollback: on a loss spike, roll back to the last clean checkpoint inside `fit`, skip the data, go on.

    trainer = Trainer(max_steps=1000, callbacks=[LossSpikeRollback()])
    trainer.fit(LitLLM(...), LitDataModule(...))     # or: lit-llm fit --config ... (the same path)

Per optimizer step (`on_before_optimizer_step`: after backward and AMP unscaling, before clipping
and `optimizer.step()`) the step's loss (averaged over ranks) and gradient norm go to a
`SpikeDetector`. On a spike every `p.grad` is set to None, so the optimizer skips the update.
At the end of that step the callback restores the newest clean checkpoint in place (weights,
optimizer, LR schedulers, GradScaler, RNG, data position), skips the samples from that checkpoint
to the spike plus `extra_skip_batches`, restarts the data stream, cools the LR down and lets `fit`
go on. `trainer.global_step` keeps counting the steps taken, discarded ones included, and
`max_steps` grows by the discarded steps, so the model still gets `max_steps` updates.
See docs/spike_rollback.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

from lit_llm.batch import data_parallel_rank_and_size
from lit_llm.checkpoint_io import wait_for_checkpoints
from lit_llm.errors import UserError
from lit_llm.module import LitLLM, total_gradient_norm
from lit_llm.rollback import (
    CleanCheckpoint,
    CleanCheckpoints,
    EventLog,
    LRCooldown,
    check_rollback_support,
    refresh_last_checkpoints,
    restore_in_place,
    step_signals,
)
from lit_llm.spike_detector import SpikeDetector

AT_LEAST = {"every_n_steps": 1, "keep_last": 1, "max_rollbacks": 1, "rollback_window": 1}
AT_LEAST |= {"clean_after_steps": 0, "extra_skip_batches": 0, "cooldown_steps": 0}


class LossSpikeEscalation(RuntimeError):
    """Too many spikes within `rollback_window` steps: the run stops instead of rolling back forever."""


class LossSpikeRollback(Callback):
    """Loss-spike detection per optimizer step with in-place rollback to a clean checkpoint and data skipping."""

    def __init__(
        self,
        detector: SpikeDetector | None = None,
        every_n_steps: int = 100,
        clean_after_steps: int = 50,
        keep_last: int = 2,
        extra_skip_batches: int = 100,
        lr_factor: float = 0.5,
        cooldown_steps: int = 100,
        max_rollbacks: int = 3,
        rollback_window: int = 1000,
        dirpath: str | None = None,
        events_file: str | None = None,
    ) -> None:
        """
        Args:
            detector: The spike test (window, z-score, gross blow-up ratio; see lit_llm.spike_detector).
            every_n_steps: Write a rollback checkpoint every this many optimizer steps (a baseline is
                written before the first step).
            clean_after_steps: A checkpoint counts as clean once this many steps passed after it without a spike.
            keep_last: Clean checkpoints kept on disk (older ones are deleted; unconfirmed ones are kept too).
            extra_skip_batches: Global batches after the spike also skipped (PaLM skipped 200-500 batches
                around a spike); the skipped range always starts at the clean checkpoint's data position.
            lr_factor: Learning-rate multiplier right after a rollback, rising linearly back to 1 over
                `cooldown_steps` (OPT lowered the LR after restarts). 1.0 disables the cool-down.
            cooldown_steps: Length of the LR cool-down in optimizer steps.
            max_rollbacks: Spikes handled within `rollback_window` steps before the run stops with
                `LossSpikeEscalation` and the event log.
            rollback_window: Window (in optimizer steps) over which `max_rollbacks` is counted.
            dirpath: Folder of the rollback checkpoints (default: `<default_root_dir>/checkpoints/clean`).
            events_file: JSON-lines event log (default: `<default_root_dir>/spike_events.jsonl`).
        """
        super().__init__()
        options = locals()
        for name, low in AT_LEAST.items():
            if options[name] < low:
                raise UserError(f"LossSpikeRollback: {name} must be >= {low} (got {options[name]})")
        if not 0 < lr_factor <= 1:
            raise UserError(f"LossSpikeRollback: lr_factor must be in (0, 1] (got {lr_factor})")
        self.detector = detector or SpikeDetector()
        self.every_n_steps, self.extra_skip_batches = every_n_steps, extra_skip_batches
        self.lr_factor, self.cooldown_steps = lr_factor, cooldown_steps
        self.max_rollbacks, self.rollback_window = max_rollbacks, rollback_window
        self.dirpath, self.events_file = dirpath, events_file
        self.checkpoints = CleanCheckpoints(clean_after_steps, keep_last)
        self.event_log, self.cooldown = EventLog(), LRCooldown()
        self.discarded_steps = 0  # optimizer steps thrown away by rollbacks: max_steps grows by these
        self._spike: dict | None = None  # the spike of the current step, recovered at its end
        self._max_steps: int | None = None
        self._loss_sum: torch.Tensor | None = None
        self._params: list[torch.nn.Parameter] = []
        self._fit_trainer: Trainer | None = None  # for load_state_dict, which Lightning calls without it

    # ---- Lightning hooks (thin) -------------------------------------------------------

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        root = Path(trainer.default_root_dir)
        self.dirpath = str(self.dirpath or root / "checkpoints" / "clean")
        self.events_file = self.event_log.path = str(self.events_file or root / "spike_events.jsonl")
        check_rollback_support(trainer, pl_module)
        if self._max_steps is None:
            self._max_steps = trainer.max_steps  # as configured; grown by the discarded steps
        self._fit_trainer = trainer

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # After configure_optimizers (whose LR schedule spans the configured max_steps) and before the
        # fit loop checks max_steps: a resumed run past the configured max_steps must not stop at once.
        self._set_max_steps(trainer)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._params = [p for p in pl_module.parameters() if p.requires_grad]
        self.cooldown.step, self._loss_sum, self._spike = trainer.global_step, None, None
        self.cooldown.attach(trainer.optimizers)
        self._set_max_steps(trainer)
        # A baseline, clean by definition: a spike before the first periodic save still rolls back.
        if trainer.strategy.broadcast(not self.checkpoints.clean(), src=0):  # rank 0 sees the files
            self._save_checkpoint(trainer, status="clean")

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx) -> None:
        self.cooldown.step = trainer.global_step

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        loss = loss.detach()  # already divided by accumulate_grad_batches: the sum is the step's mean loss
        self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer) -> None:
        self._check_step(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx
    ) -> None:
        if trainer.global_step == self.cooldown.step:  # accumulating micro-batches: no optimizer step yet
            return
        if self._spike is not None:
            spike, self._spike = self._spike, None
            event = self.event_log.record(trainer, {**spike, **self.recover(trainer, pl_module, spike)})
            if event.get("action") == "rollback":
                refresh_last_checkpoints(trainer)
        else:
            self.checkpoints.confirm(trainer.global_step)
            if trainer.global_step % self.every_n_steps == 0:
                self._save_checkpoint(trainer)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.cooldown.detach()

    # ---- overridable decisions --------------------------------------------------------

    def is_spike(self, step: int, loss: float, grad_norm: float | None) -> str | None:
        """A reason when optimizer step `step` is a spike, else None (default: `self.detector.check`)."""
        return self.detector.check(loss, grad_norm)

    def choose_checkpoint(self, spike_step: int) -> CleanCheckpoint | None:
        """The clean checkpoint to roll back to: the newest, or an older one when the newest was already a target."""
        candidates = [c for c in self.checkpoints.clean() if c.step <= spike_step]
        used = {e.get("checkpoint") for e in self.event_log.events if e.get("action") == "rollback"}
        fresh = [c for c in candidates if c.path not in used]
        return (fresh or candidates or [None])[-1]

    def recover(self, trainer: Trainer, pl_module: LightningModule, spike: dict) -> dict:
        """Act on a spike at the end of its (skipped) step; return the event fields describing the action."""
        wait_for_checkpoints(trainer)  # a clean checkpoint still being written in the background counts
        dropped = self.checkpoints.drop(lambda c: c.status == "clean")  # unconfirmed: possibly already bad
        target = trainer.strategy.broadcast(self.choose_checkpoint(spike["step"]), src=0)  # rank 0 decides
        if target is None:
            return {"action": "skip_step", "dropped_checkpoints": dropped}
        dropped += self.checkpoints.drop(lambda c: c.step <= target.step)  # a discarded future
        datamodule = trainer.datamodule
        step_samples = (
            datamodule.batch_size * data_parallel_rank_and_size(trainer)[1] * trainer.accumulate_grad_batches
        )
        end = datamodule.position + self.extra_skip_batches * step_samples
        skip = datamodule.skip_positions(target.position, end)
        checkpoint = restore_in_place(trainer, pl_module, target.path)
        datamodule.restart_stream()
        saved = checkpoint.get("callbacks", {}).get(self.state_key, {})
        self.detector.load_state_dict(saved.get("detector", {}))  # the statistics of that moment
        step = trainer.global_step
        discarded = step - target.step
        self.discarded_steps += discarded
        self._set_max_steps(trainer)
        self.cooldown.start(step, self.cooldown_steps, self.lr_factor)
        rank_zero_info(
            f"LossSpikeRollback: step {spike['step']}: {spike['reason']}; rolled back to {target.path} "
            f"(step {target.step}), skipping samples [{skip[0]}, {skip[1]}); {discarded} steps discarded"
            + (f", max_steps now {trainer.max_steps}" if self._max_steps and self._max_steps > 0 else "")
        )
        return {
            "action": "rollback",
            "checkpoint": target.path,
            "checkpoint_step": target.step,
            "skip": list(skip),
            "skipped_samples": skip[1] - skip[0],
            "discarded_steps": discarded,
            "max_steps": trainer.max_steps,
            "dropped_checkpoints": dropped,
        }

    # ---- state: replaced on load -------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": 2,
            "detector": self.detector.state_dict(),
            "checkpoints": self.checkpoints.state_dict(),
            "events": [dict(e) for e in self.event_log.events],
            "cooldown": dict(self.cooldown.state) if self.cooldown.state else None,
            "discarded_steps": self.discarded_steps,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.detector.load_state_dict(state_dict.get("detector", {}))
        self.checkpoints.load_state_dict(state_dict.get("checkpoints", []))
        self.event_log.events = [dict(e) for e in state_dict.get("events", [])]
        self.cooldown.state = dict(state_dict["cooldown"]) if state_dict.get("cooldown") else None
        self.discarded_steps = int(state_dict.get("discarded_steps", 0))
        trainer = self._fit_trainer
        if trainer is not None and trainer.optimizers:  # strategies that restore callbacks after on_fit_start
            self._set_max_steps(trainer)

    # ---- detection -------------------------------------------------------------------

    def _check_step(self, trainer: Trainer, pl_module: LightningModule) -> None:
        loss, self._loss_sum = self._loss_sum, None
        if loss is None:
            return
        norm = (
            pl_module.gradient_norm() if isinstance(pl_module, LitLLM) else total_gradient_norm(self._params)
        )
        loss_value, norm_value = step_signals(trainer, loss, norm)
        step = trainer.global_step
        reason = self.is_spike(step, loss_value, norm_value)
        if not trainer.strategy.reduce_boolean_decision(reason is not None, all=False):
            self.detector.observe(loss_value, norm_value)
            return
        for p in self._params:  # the optimizer skips parameters without a gradient: no update at all
            p.grad = None
        recent = self.event_log.spikes_within(step, self.rollback_window)
        self._spike = {
            "event": "spike",
            "step": step,
            "loss": loss_value,
            "grad_norm": norm_value,
            "reason": reason or "spike on another rank",
            **self.detector.last_stats,
            "rollbacks_in_window": len(recent),
        }
        if len(recent) >= self.max_rollbacks:
            self.event_log.record(trainer, {**self._spike, "event": "escalate", "action": "stop"})
            raise LossSpikeEscalation(
                f"{len(recent) + 1} loss spikes within {self.rollback_window} steps (max_rollbacks="
                f"{self.max_rollbacks}); stopping at step {step}: {self._spike['reason']}. Events: {self.events_file}"
            )

    # ---- checkpoints and max_steps --------------------------------------------------

    def _save_checkpoint(self, trainer: Trainer, status: str = "pending") -> None:
        step = trainer.global_step
        path = str(Path(self.dirpath) / f"step-{step:07d}.ckpt")
        self.checkpoints.add(CleanCheckpoint(path, step, int(trainer.datamodule.position), status))
        trainer.save_checkpoint(path, weights_only=False)  # on every rank: the strategy decides who writes

    def _set_max_steps(self, trainer: Trainer) -> None:
        if self._max_steps is not None and self._max_steps > 0:
            trainer.fit_loop.epoch_loop.max_steps = self._max_steps + self.discarded_steps
