"""What a loss-spike rollback needs besides the detector: the list of clean checkpoints, and restoring
one in place in the middle of `fit` through the public strategy API (no `trainer._*`).

    restore_in_place(trainer, pl_module, "RUN/checkpoints/clean/step-0000200.ckpt")

restores the weights, optimizer moments, LR schedulers, precision-plugin (GradScaler) state, the
module's own extras (`on_load_checkpoint`: RNG, tokens seen) and the datamodule's data position,
exactly the pieces Lightning's resume restores, except the loop counters: `trainer.global_step`
keeps counting optimizer steps taken, including discarded ones.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import shutil
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only

from lit_llm.checkpoint_io import wait_for_checkpoints
from lit_llm.errors import UserError
from lit_llm.safe_pickle import check_sharded_checkpoint


@dataclass
class CleanCheckpoint:
    path: str
    step: int
    """trainer.global_step when it was written."""
    position: int
    """The datamodule's stream position when it was written."""
    status: str = "pending"
    """pending (not yet confirmed) or clean (`clean_after_steps` passed after it without a spike)."""


class CleanCheckpoints:
    """Rollback targets: written every N steps, confirmed clean after K quiet steps, the last M clean kept."""

    def __init__(self, clean_after_steps: int, keep_last: int) -> None:
        self.clean_after_steps, self.keep_last = clean_after_steps, keep_last
        self.entries: list[CleanCheckpoint] = []

    def add(self, entry: CleanCheckpoint) -> None:
        self.entries = [e for e in self.entries if e.path != entry.path] + [entry]

    def clean(self) -> list[CleanCheckpoint]:
        return [e for e in self.entries if e.status == "clean" and os.path.exists(e.path)]

    def confirm(self, step: int) -> None:
        """Mark as clean those `clean_after_steps` old; delete clean ones beyond `keep_last`."""
        for entry in self.entries:
            if entry.status == "pending" and step >= entry.step + self.clean_after_steps:
                entry.status = "clean"
        clean = [e for e in self.entries if e.status == "clean"]
        for entry in clean[: max(0, len(clean) - self.keep_last)]:
            self.entries.remove(entry)
            remove_checkpoint(entry.path)

    def drop(self, keep) -> list[str]:
        """Delete the entries (and files) for which `keep(entry)` is false; return their paths."""
        dropped = [e for e in self.entries if not keep(e)]
        self.entries = [e for e in self.entries if keep(e)]
        for entry in dropped:
            remove_checkpoint(entry.path)
        return [e.path for e in dropped]

    def state_dict(self) -> list[dict]:
        return [asdict(e) for e in self.entries]

    def load_state_dict(self, state: list[dict]) -> None:
        self.entries = [CleanCheckpoint(**e) for e in state]


def restore_in_place(trainer: Trainer, pl_module: LightningModule, path: str) -> dict[str, Any]:
    """Load the training state of the checkpoint at `path` into the running fit; return the checkpoint dict.

    Checkpoints still being written in the background are finished first. Under FSDP2
    (ModelParallelStrategy) `load_checkpoint` fills the sharded model and optimizers itself; the
    `load_*_state_dict` calls that follow are then no-ops, as in Lightning's resume.
    """
    strategy = trainer.strategy
    wait_for_checkpoints(trainer)  # a checkpoint written in the background is read whole
    check_sharded_checkpoint(path)  # a sharded folder's metadata is a pickle
    checkpoint = strategy.load_checkpoint(path, weights_only=True)
    pl_module.on_load_checkpoint(checkpoint)
    strategy.load_model_state_dict(checkpoint, strict=pl_module.strict_loading)
    strategy.load_optimizer_state_dict(checkpoint)
    for config, state in zip(trainer.lr_scheduler_configs, checkpoint.get("lr_schedulers", [])):
        config.scheduler.load_state_dict(state)
    precision = trainer.precision_plugin
    if type(precision).__qualname__ in checkpoint:
        precision.load_state_dict(checkpoint[type(precision).__qualname__])
    datamodule = trainer.datamodule
    if datamodule is not None and type(datamodule).__qualname__ in checkpoint:
        datamodule.load_state_dict(checkpoint[type(datamodule).__qualname__])
    return checkpoint


def step_signals(trainer: Trainer, loss: torch.Tensor, norm: torch.Tensor) -> tuple[float, float | None]:
    """(the step's loss averaged over ranks, the total pre-clip gradient norm) as Python floats.

    `loss` is the sum of the step's micro-batch losses as Lightning hands them to `on_before_backward`
    (multiplied by the GradScaler's scale under 16-bit AMP). The norm is None for a 16-bit overflow
    with a finite loss: the GradScaler skips that step itself and lowers its scale.
    """
    # A copy: DDP reduces in place. The mean over ranks gives every rank the same statistics.
    loss = trainer.strategy.reduce(loss.to(torch.float32, copy=True), reduce_op="mean")
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    scale = float(scaler.get_scale()) if scaler is not None and scaler.is_enabled() else 1.0
    loss_value, norm_value = torch.stack([loss / scale, norm.to(loss.device, torch.float32)]).tolist()
    if scale != 1.0 and not math.isfinite(norm_value) and math.isfinite(loss_value):
        return loss_value, None
    return loss_value, norm_value


class LRCooldown:
    """After a rollback: LR x `factor`, rising linearly back to x 1 over `steps` optimizer steps.

    Applied only while `optimizer.step()` runs (a step pre-hook scales, a post-hook restores), so LR
    schedulers never see, and never compound, the scaled value; loading an optimizer's state (which
    restores its old param-group LRs) does not undo it either.
    """

    def __init__(self) -> None:
        self.state: dict | None = None  # {"start", "steps", "factor"}
        self.step = 0  # the optimizer step about to run; the owner keeps it current
        self._saved: list | None = None
        self._hooks: list = []

    def start(self, step: int, steps: int, factor: float) -> None:
        self.state = {"start": step, "steps": steps, "factor": factor} if factor < 1 and steps > 0 else None

    def attach(self, optimizers) -> None:
        for optimizer in optimizers:
            self._hooks += [
                optimizer.register_step_pre_hook(self._scale),
                optimizer.register_step_post_hook(self._restore),
            ]

    def detach(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks = []

    def factor(self) -> float:
        state = self.state
        if not state or self.step >= state["start"] + state["steps"]:
            return 1.0
        progress = max(0, self.step - state["start"]) / state["steps"]
        return state["factor"] + (1 - state["factor"]) * progress

    def _scale(self, optimizer, args, kwargs) -> None:
        factor = self.factor()
        if factor != 1.0:
            self._saved = [group["lr"] for group in optimizer.param_groups]
            for group in optimizer.param_groups:
                group["lr"] = group["lr"] * factor

    def _restore(self, optimizer, args, kwargs) -> None:
        if self._saved is not None:
            for group, lr in zip(optimizer.param_groups, self._saved):
                group["lr"] = lr
            self._saved = None


class EventLog:
    """Spike events: kept in memory (checkpointed), appended to a JSON-lines file and sent to the loggers."""

    def __init__(self) -> None:
        self.path: str | None = None
        self.events: list[dict] = []

    def record(self, trainer: Trainer, event: dict) -> dict:
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        event = {"id": uuid.uuid4().hex[:12], "time": now, **{k: _json_safe(v) for k, v in event.items()}}
        self.events.append(event)
        self._write(trainer, event)
        return event

    def spikes_within(self, step: int, window: int) -> list[dict]:
        """The spike events of the last `window` steps before `step`."""
        return [e for e in self.events if e["event"] == "spike" and step - e["step"] <= window]

    @rank_zero_only
    def _write(self, trainer: Trainer, event: dict) -> None:
        if self.path:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:
                f.write(json.dumps(event) + "\n")
        numbers = {k: v for k, v in event.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        metrics = {f"spike/{k}": float(v) for k, v in numbers.items() if k != "step"}
        metrics[f"spike/{event.get('action', event['event'])}"] = 1.0
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=event["step"])


def _json_safe(value):
    """NaN and Inf as strings ("nan", "inf"): strict JSON readers (jq, browsers) reject the bare tokens."""
    return str(value) if isinstance(value, float) and not math.isfinite(value) else value


DATAMODULE_API = (
    "position",
    "batch_size",
    "skip_positions",
    "restart_stream",
    "state_dict",
    "load_state_dict",
)


def check_rollback_support(trainer: Trainer, pl_module: LightningModule) -> None:
    """One line naming what stops an in-place rollback: the data module's API, manual optimization, ..."""
    missing = [a for a in DATAMODULE_API if not hasattr(trainer.datamodule, a)]
    if missing:
        raise UserError(
            f"LossSpikeRollback needs a datamodule with {', '.join(DATAMODULE_API)} "
            f"(lit_llm.data.datamodule.LitDataModule; missing: {', '.join(missing)})"
        )
    if not pl_module.automatic_optimization:
        raise UserError("LossSpikeRollback supports automatic optimization only")
    if "dataloader_iter" in inspect.signature(pl_module.training_step).parameters:
        raise UserError("LossSpikeRollback needs batches passed to training_step (not a dataloader_iter)")


def refresh_last_checkpoints(trainer: Trainer) -> None:
    """Rewrite each ModelCheckpoint's last.ckpt now: after a rollback it holds the discarded timeline, and a
    crash before its next save would resume there, without the new skip range."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.save_last and callback.dirpath:
            path = callback.format_checkpoint_name({}, callback.CHECKPOINT_NAME_LAST)
            trainer.save_checkpoint(path, weights_only=False)
            callback.last_model_path = path


@rank_zero_only
def remove_checkpoint(path: str) -> None:
    """Delete a checkpoint file or a sharded checkpoint folder (rank 0 only)."""
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError, IsADirectoryError):
        os.remove(path)
