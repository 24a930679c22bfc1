"""LossSpikeRollback: detect a loss spike per optimizer step, roll back to the last clean checkpoint, skip its data.

    trainer:
      callbacks:
        - class_path: lit_llm.callbacks.LossSpikeRollback
          init_args: {every_n_steps: 100, clean_after_steps: 50, warmup_steps: 200}

Per optimizer step (in `on_before_optimizer_step`: after backward and AMP unscaling, before
clipping and `optimizer.step()`) the step's loss (the sum of the micro-batch losses Lightning
hands to `on_before_backward`, averaged over ranks) and the total gradient norm are compared
with a window of recent steps. A non-finite loss is always a spike. On a spike every `p.grad`
is set to None, so the optimizer skips the update (no moments, no weight decay) and NaN/Inf
never reaches `optimizer.step()`; all ranks agree through `reduce_boolean_decision`.

Recovery: the callback saves its own checkpoints every `every_n_steps` into
RUN/checkpoints/clean/ (independent of ModelCheckpoint's `last.ckpt` and retention); one counts
as clean once `clean_after_steps` steps passed after it without a spike. On a spike it picks the
newest clean checkpoint, records a request (checkpoint, skipped global sample range from the
checkpoint's data position to the spike plus `extra_skip_batches`), and sets
`trainer.should_stop`. `continue_after_rollbacks` (called by `lit-llm fit` after `trainer.fit`)
re-enters `trainer.fit(..., ckpt_path=clean)` in the same process: Lightning's own resume
restores weights, optimizer, schedulers, loops, scaler, RNG and data position; on that load the
callback adds the skip range to the datamodule and arms an LR cool-down. `recovery="restart"`
raises `LossSpikeRollbackRequired` instead; `lit-llm fit --ckpt_path <clean>` then applies the
request saved in RUN/checkpoints/clean/rollback_request.json. Events go to the logger and to
RUN/spike_events.jsonl. See docs/spike_rollback.md.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import uuid
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only, rank_zero_warn

from lit_llm.data.sampling import merge_ranges, sample_index
from lit_llm.errors import UserError

REQUEST_FILE = "rollback_request.json"
_AT_LEAST_ONE = ("window", "every_n_steps", "keep_last", "max_rollbacks", "rollback_window")
_NON_NEGATIVE = ("warmup_steps", "clean_after_steps", "extra_skip_batches", "cooldown_steps")
_NON_NEGATIVE += ("loss_z", "loss_rise", "grad_norm_rise")


class LossSpikeEscalation(RuntimeError):
    """Too many spikes within `rollback_window` steps: the run stops instead of rolling back forever."""


class LossSpikeRollbackRequired(RuntimeError):
    """`recovery="restart"`: resume with `lit-llm fit ... --ckpt_path <checkpoint>` to apply the rollback."""

    def __init__(self, message: str, checkpoint: str, skip: tuple[int, int]) -> None:
        super().__init__(message)
        self.checkpoint, self.skip = checkpoint, skip


class LossSpikeRollback(Callback):
    """Loss-spike detection per optimizer step with automatic rollback to a clean checkpoint and data skipping."""

    def __init__(
        self,
        warmup_steps: int = 100,
        window: int = 128,
        loss_z: float = 6.0,
        loss_rise: float = 0.2,
        grad_norm_z: float | None = None,
        grad_norm_rise: float = 1.0,
        every_n_steps: int = 100,
        clean_after_steps: int = 50,
        keep_last: int = 2,
        extra_skip_batches: int = 100,
        lr_factor: float = 0.5,
        cooldown_steps: int = 100,
        max_rollbacks: int = 3,
        rollback_window: int = 1000,
        recovery: Literal["refit", "restart"] = "refit",
        dirpath: str | None = None,
        events_file: str | None = None,
    ) -> None:
        """
        Args:
            warmup_steps: No statistical test before this optimizer step (the early loss falls too fast to
                have a stable mean); non-finite losses are caught from step 0.
            window: Steps of loss and gradient-norm history the statistics use (OLMo-core uses 128).
            loss_z: A spike's loss is more than this many standard deviations above the window mean (6 as in
                OLMo-core: about one false alarm in 10^9 steps for Gaussian noise). 0 disables this test.
            loss_rise: ... and more than this fraction above the window mean (0.2 = 20%), so that a tiny
                fluctuation on a very flat curve never triggers an expensive rollback. 0 disables this test.
            grad_norm_z: Also test the pre-clip gradient norm (it often rises a few steps before the loss, as in
                BLOOM) with this z threshold; None = only the loss. A non-finite norm is always a spike (with a
                16-bit GradScaler an overflow is left to the scaler, which skips the step itself).
            grad_norm_rise: ... and more than this fraction above its window mean (1.0 = twice the mean).
            every_n_steps: Save a rollback checkpoint every this many optimizer steps (to `dirpath`).
            clean_after_steps: A checkpoint counts as clean once this many steps passed after it without a spike.
            keep_last: Clean checkpoints kept on disk (older ones are deleted; unconfirmed ones are kept too).
            extra_skip_batches: Global batches after the spike also skipped (PaLM skipped 200-500 batches
                around a spike); the range always starts at the clean checkpoint's data position.
            lr_factor: Learning-rate multiplier right after a rollback, rising linearly back to 1 over
                `cooldown_steps` (OPT lowered the LR after restarts); applied after the optimizer state is
                loaded, since loading restores the old param-group values. 1.0 disables the cool-down.
            cooldown_steps: Length of the LR cool-down in optimizer steps.
            max_rollbacks: Spikes handled within `rollback_window` steps before the run stops with
                `LossSpikeEscalation` and the event log.
            rollback_window: Window (in optimizer steps) over which `max_rollbacks` is counted.
            recovery: "refit": stop `fit` and re-enter it from the clean checkpoint in the same process (needs
                `continue_after_rollbacks`, which `lit-llm fit` calls). "restart": raise
                `LossSpikeRollbackRequired`; `lit-llm fit --ckpt_path <clean>` applies the saved request.
            dirpath: Folder of the rollback checkpoints (default: `<default_root_dir>/checkpoints/clean`).
            events_file: JSON-lines event log (default: `<default_root_dir>/spike_events.jsonl`).
        """
        super().__init__()
        options = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        for names, low in ((_AT_LEAST_ONE, 1), (_NON_NEGATIVE, 0)):
            for name in names:
                if options[name] < low:
                    raise UserError(f"LossSpikeRollback: {name} must be >= {low} (got {options[name]})")
        if not 0 < lr_factor <= 1:
            raise UserError(f"LossSpikeRollback: lr_factor must be in (0, 1] (got {lr_factor})")
        if recovery not in ("refit", "restart"):
            raise UserError(f"LossSpikeRollback: recovery must be 'refit' or 'restart' (got {recovery!r})")
        vars(self).update(options)  # every argument becomes the attribute of the same name
        self.min_history = max(2, min(window, 16))  # fewer values give a meaningless standard deviation
        # State (state_dict): detector windows, rollback checkpoints, skip ranges, events, cool-down.
        self.losses: deque[float] = deque(maxlen=window)
        self.grad_norms: deque[float] = deque(maxlen=window)
        self.checkpoints: list[dict] = []  # {"path", "step", "position", "status": "pending" | "clean"}
        self.skip_ranges: list[tuple[int, int]] = []
        self.events: list[dict] = []
        self.cooldown: dict | None = None  # {"start", "steps", "factor"}
        self.pending: dict | None = None  # the rollback request between the spike and the reload
        self.last_stats: dict = {}
        self._last_saved_step = -1
        self._last_step_end = -1
        self._loss_sum: torch.Tensor | None = None
        self._params: list[torch.nn.Parameter] = []
        self._hooks: list = []
        self._saved_lrs: list | None = None
        self._request_applied = False

    # ---- Lightning hooks (thin) -------------------------------------------------------

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._resolve_paths(trainer)
        self._check_compatible(trainer, pl_module)
        if self.pending is None and not self.events:  # a fresh process: pick up a saved request
            self._read_request()

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        self._apply_request(trainer, checkpoint)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._params = [p for p in pl_module.parameters() if p.requires_grad]
        self._last_step_end = trainer.global_step
        self._loss_sum = None
        for optimizer in trainer.optimizers:
            self._hooks += [
                optimizer.register_step_pre_hook(self._scale_lr),
                optimizer.register_step_post_hook(self._restore_lr),
            ]
        if self.pending is not None:  # a request whose checkpoint this fit did not load
            rank_zero_warn(
                f"LossSpikeRollback: dropping the rollback request to {self.pending['checkpoint']}: "
                f"this run resumed from {trainer.ckpt_path}"
            )
            self.pending = None
            self._delete_request()
        self._request_applied = False

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        loss = loss.detach()  # already divided by accumulate_grad_batches: the sum is the step's mean loss
        self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer) -> None:
        self._check_step(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx
    ) -> None:
        self._after_step(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._remove_hooks()
        if self.pending is not None and self.recovery == "refit":
            rank_zero_info(
                f"LossSpikeRollback: fit stopped to roll back to {self.pending['checkpoint']} "
                "(continue_after_rollbacks re-enters fit; `lit-llm fit` calls it)"
            )

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._remove_hooks()

    # ---- overridable decisions --------------------------------------------------------

    def is_spike(self, step: int, loss: float, grad_norm: float | None) -> str | None:
        """A reason when optimizer step `step` is a spike, else None. `self.losses` / `self.grad_norms` hold the window."""
        if not math.isfinite(loss):
            return f"non-finite loss {loss}"
        if grad_norm is not None and not math.isfinite(grad_norm):
            return f"non-finite gradient norm {grad_norm}"
        if step < self.warmup_steps:
            return None
        reason = self._outlier("loss", loss, self.losses, self.loss_z, self.loss_rise)
        if reason is None and self.grad_norm_z is not None and grad_norm is not None:
            reason = self._outlier(
                "grad_norm", grad_norm, self.grad_norms, self.grad_norm_z, self.grad_norm_rise
            )
        return reason

    def choose_checkpoint(self, spike_step: int) -> dict | None:
        """The clean checkpoint to roll back to: the newest, or an older one when the newest was already a target."""
        candidates = [
            c
            for c in self.checkpoints
            if c["status"] == "clean" and c["step"] <= spike_step and os.path.exists(c["path"])
        ]
        used = {e.get("checkpoint") for e in self.events if e.get("action") == "rollback"}
        for checkpoint in reversed(candidates):
            if checkpoint["path"] not in used:
                return checkpoint
        return candidates[-1] if candidates else None

    def recover(self, trainer: Trainer, pl_module: LightningModule, spike: dict) -> dict:
        """Act on a spike (the update is already skipped); return the event fields describing the action."""
        dropped = self._drop_unconfirmed()
        # Rank 0's choice for all ranks (each checks its own view of the files).
        target = trainer.strategy.broadcast(self.choose_checkpoint(spike["step"]), src=0)
        if target is None:
            return {"action": "skip_step", "dropped_checkpoints": dropped}
        skip = self._skip_range(trainer, target)
        self.pending = {
            "id": uuid.uuid4().hex[:12],
            "checkpoint": target["path"],
            "checkpoint_step": target["step"],
            "skip": list(skip),
            "spike_step": spike["step"],
        }
        self._write_request()
        trainer.should_stop = True
        return {
            "action": "rollback",
            "checkpoint": target["path"],
            "checkpoint_step": target["step"],
            "skip": list(skip),
            "skipped_samples": skip[1] - skip[0],
            "dropped_checkpoints": dropped,
        }

    # ---- state -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "losses": list(self.losses),
            "grad_norms": list(self.grad_norms),
            "last_saved_step": self._last_saved_step,
            "checkpoints": [dict(c) for c in self.checkpoints],
            "skip_ranges": [list(r) for r in self.skip_ranges],
            "events": [dict(e) for e in self.events],
            "cooldown": dict(self.cooldown) if self.cooldown else None,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Merge: detector windows from the checkpoint; events, skip ranges and checkpoints united with memory."""
        self.losses = deque(state_dict.get("losses", []), maxlen=self.window)
        self.grad_norms = deque(state_dict.get("grad_norms", []), maxlen=self.window)
        self._last_saved_step = int(state_dict.get("last_saved_step", -1))
        self._merge(state_dict)
        if not self._request_applied:  # a rollback just armed its own cool-down; keep it
            self.cooldown = state_dict.get("cooldown")

    def _merge(self, state: dict) -> None:
        known = {c["path"] for c in self.checkpoints}  # memory knows which were dropped or confirmed since
        self.checkpoints += [dict(c) for c in state.get("checkpoints", []) if c["path"] not in known]
        self.checkpoints.sort(key=lambda c: c["step"])
        self.skip_ranges = merge_ranges([*self.skip_ranges, *map(tuple, state.get("skip_ranges", []))])
        seen = {e["id"] for e in self.events}
        self.events = sorted(
            [*self.events, *(dict(e) for e in state.get("events", []) if e["id"] not in seen)],
            key=lambda e: e["time"],
        )

    # ---- detection -------------------------------------------------------------------

    def _check_step(self, trainer: Trainer, pl_module: LightningModule) -> None:
        loss, self._loss_sum = self._loss_sum, None
        if loss is None:
            return
        # A copy: DDP reduces in place. The mean over ranks gives every rank the same statistics.
        loss = trainer.strategy.reduce(loss.to(torch.float32, copy=True), reduce_op="mean")
        scale = _grad_scale(trainer)
        norm = _total_norm([p.grad for p in self._params if p.grad is not None])
        loss_value, norm_value = torch.stack([loss / scale, norm.to(loss.device, torch.float32)]).tolist()
        if scale != 1.0 and not math.isfinite(norm_value) and math.isfinite(loss_value):
            norm_value = None  # a 16-bit overflow: the GradScaler skips this step and lowers its scale
        step, self.last_stats = trainer.global_step, {}
        reason = self.is_spike(step, loss_value, norm_value)
        if not trainer.strategy.reduce_boolean_decision(reason is not None, all=False):
            self.losses.append(loss_value)
            if norm_value is not None:
                self.grad_norms.append(norm_value)
            return
        for p in self._params:  # the optimizer skips parameters without a gradient: no update at all
            p.grad = None
        self._on_spike(trainer, pl_module, step, loss_value, norm_value, reason or "spike on another rank")

    def _outlier(self, name: str, value: float, history: deque, z: float, rise: float) -> str | None:
        if len(history) < self.min_history:
            return None
        mean = math.fsum(history) / len(history)
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in history) / (len(history) - 1))
        score = (value - mean) / std if std > 0 else math.inf
        self.last_stats = {f"{name}_mean": mean, f"{name}_std": std, f"{name}_z": score}
        if score > z and value > mean * (1 + rise):
            return f"{name} {value:.4g} is {score:.1f} sigma and {value / mean - 1:+.0%} above the mean of {len(history)} steps"
        return None

    def _on_spike(self, trainer, pl_module, step: int, loss: float, norm: float | None, reason: str) -> None:
        recent = [
            e for e in self.events if e["event"] == "spike" and abs(e["step"] - step) <= self.rollback_window
        ]
        event = {
            "event": "spike",
            "step": step,
            "loss": loss,
            "grad_norm": norm,
            "reason": reason,
            **self.last_stats,
            "rollbacks_in_window": len(recent),
        }
        if len(recent) >= self.max_rollbacks:
            self._record(trainer, {**event, "event": "escalate", "action": "stop"})
            raise LossSpikeEscalation(
                f"{len(recent) + 1} loss spikes within {self.rollback_window} steps (max_rollbacks="
                f"{self.max_rollbacks}); stopping at step {step}: {reason}. Events: {self.events_file}\n"
                + "\n".join(json.dumps(e) for e in self.events[-self.max_rollbacks :])
            )
        self._record(trainer, {**event, **self.recover(trainer, pl_module, event)})

    # ---- checkpoints and rollback ------------------------------------------------------

    def _after_step(self, trainer: Trainer) -> None:
        step = trainer.global_step
        if step == self._last_step_end:  # accumulating micro-batches: no optimizer step yet
            return
        self._last_step_end = step
        self._confirm_clean(step)
        if self.pending is not None:
            if self.recovery == "restart":
                raise LossSpikeRollbackRequired(
                    f"loss spike at step {self.pending['spike_step']}: resume with `lit-llm fit <same arguments> "
                    f"--ckpt_path {self.pending['checkpoint']}` (skips samples {self.pending['skip']})",
                    self.pending["checkpoint"],
                    tuple(self.pending["skip"]),
                )
            return
        if step % self.every_n_steps == 0 and step != self._last_saved_step:
            self._save_checkpoint(trainer, step)
        if self.cooldown and step >= self.cooldown["start"] + self.cooldown["steps"]:
            self.cooldown = None

    def _save_checkpoint(self, trainer: Trainer, step: int) -> None:
        path = str(Path(self.dirpath) / f"step-{step:07d}.ckpt")
        self.checkpoints = [c for c in self.checkpoints if c["path"] != path]
        self.checkpoints.append(
            {"path": path, "step": step, "position": int(trainer.datamodule.position), "status": "pending"}
        )
        self._last_saved_step = step
        trainer.save_checkpoint(path)  # on every rank: the strategy decides who writes

    def _confirm_clean(self, step: int) -> None:
        for checkpoint in self.checkpoints:
            if checkpoint["status"] == "pending" and step >= checkpoint["step"] + self.clean_after_steps:
                checkpoint["status"] = "clean"
        clean = [c for c in self.checkpoints if c["status"] == "clean"]
        for checkpoint in clean[: max(0, len(clean) - self.keep_last)]:
            self.checkpoints.remove(checkpoint)
            _remove_file(checkpoint["path"])

    def _drop_unconfirmed(self) -> list[str]:
        dropped = [c["path"] for c in self.checkpoints if c["status"] == "pending"]
        self.checkpoints = [c for c in self.checkpoints if c["status"] != "pending"]
        for path in dropped:
            _remove_file(path)
        return dropped

    def _skip_range(self, trainer: Trainer, target: dict) -> tuple[int, int]:
        """Global sample indices from the checkpoint's data position to the spike plus extra_skip_batches."""
        datamodule = trainer.datamodule
        skips = list(datamodule.skip_ranges)
        global_batch = datamodule.batch_size * trainer.world_size * trainer.accumulate_grad_batches
        end_position = int(datamodule.position) + self.extra_skip_batches * global_batch
        start, last = sample_index([target["position"], end_position - 1], skips).tolist()
        return int(start), int(last) + 1

    def _apply_request(self, trainer: Trainer, checkpoint: dict) -> None:
        request, loaded = self.pending, os.path.realpath(trainer.ckpt_path or "")
        if request is None or loaded != os.path.realpath(request["checkpoint"]):
            return
        start, end = request["skip"]
        trainer.datamodule.skip(start, end)  # its state (position, older skips) was restored just before
        self.skip_ranges = merge_ranges([*self.skip_ranges, (start, end)])
        step = int(checkpoint["global_step"])
        cooldown = self.lr_factor < 1 and self.cooldown_steps > 0
        self.cooldown = (
            {"start": step, "steps": self.cooldown_steps, "factor": self.lr_factor} if cooldown else None
        )
        self.pending, self._request_applied = None, True
        self._delete_request()
        self._record(
            trainer,
            {
                "event": "resume",
                "step": step,
                "checkpoint": request["checkpoint"],
                "skip": [start, end],
                "skip_ranges": [list(r) for r in self.skip_ranges],
                "lr_factor": self.lr_factor if cooldown else 1.0,
                "cooldown_steps": self.cooldown_steps if cooldown else 0,
            },
        )

    # ---- LR cool-down: only while optimizer.step() runs, so schedulers never see the scaled value ----

    def _scale_lr(self, optimizer, args, kwargs) -> None:
        cooldown = self.cooldown
        if not cooldown or self._last_step_end >= cooldown["start"] + cooldown["steps"]:
            return
        progress = max(0, self._last_step_end - cooldown["start"]) / cooldown["steps"]
        factor = cooldown["factor"] + (1 - cooldown["factor"]) * progress
        self._saved_lrs = [group["lr"] for group in optimizer.param_groups]
        for group in optimizer.param_groups:
            group["lr"] = group["lr"] * factor

    def _restore_lr(self, optimizer, args, kwargs) -> None:
        if self._saved_lrs is not None:
            for group, lr in zip(optimizer.param_groups, self._saved_lrs):
                group["lr"] = lr
            self._saved_lrs = None

    def _remove_hooks(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks = []

    # ---- side effects (rank zero) ------------------------------------------------------

    def _record(self, trainer: Trainer, event: dict) -> None:
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        event = {"id": uuid.uuid4().hex[:12], "time": now, **{k: _json_safe(v) for k, v in event.items()}}
        self.events.append(event)
        self._write_event(trainer, event)

    @rank_zero_only
    def _write_event(self, trainer: Trainer, event: dict) -> None:
        Path(self.events_file).parent.mkdir(parents=True, exist_ok=True)
        with open(self.events_file, "a") as f:
            f.write(json.dumps(event) + "\n")
        metrics = {
            f"spike/{k}": float(v)
            for k, v in event.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step"
        }
        metrics[f"spike/{event['event']}"] = 1.0
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=event["step"])
            logger.save()

    @rank_zero_only
    def _write_request(self) -> None:
        path = Path(self.dirpath) / REQUEST_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"request": self.pending, "state": self.state_dict()}, indent=1))
        os.replace(tmp, path)

    def _resolve_paths(self, trainer: Trainer) -> None:
        root = Path(trainer.default_root_dir)
        self.dirpath = str(self.dirpath or root / "checkpoints" / "clean")
        self.events_file = str(self.events_file or root / "spike_events.jsonl")

    def _read_request(self) -> None:
        path = Path(self.dirpath) / REQUEST_FILE
        if path.exists():
            saved = json.loads(path.read_text())
            self._merge(saved["state"])
            self.cooldown = saved["state"].get("cooldown")
            self.pending = saved["request"]

    @rank_zero_only
    def _delete_request(self) -> None:
        _remove_file(str(Path(self.dirpath) / REQUEST_FILE))

    def _check_compatible(self, trainer: Trainer, pl_module: LightningModule) -> None:
        datamodule = trainer.datamodule
        if not all(hasattr(datamodule, a) for a in ("position", "skip_ranges", "skip", "batch_size")):
            raise UserError(
                "LossSpikeRollback needs a datamodule with a global `position`, `skip_ranges`, "
                "`skip(start, end)` and `batch_size` (lit_llm.data.LitDataModule)"
            )
        if not pl_module.automatic_optimization:
            raise UserError("LossSpikeRollback supports automatic optimization only")
        if trainer.min_steps or trainer.min_epochs:
            raise UserError(
                "LossSpikeRollback stops fit through trainer.should_stop, which trainer.min_steps / "
                "min_epochs would ignore: unset them"
            )


def continue_after_rollbacks(
    trainer: Trainer, model: LightningModule, datamodule: LightningDataModule | None = None
) -> int:
    """Re-enter `trainer.fit` from the chosen clean checkpoint while a LossSpikeRollback asks for it.

    Call it after `trainer.fit` (`lit-llm fit` does). Returns how many rollbacks it ran. The request
    is read from memory or, when fit ran in other processes (spawn launchers), from its file.
    """
    callback = next((c for c in trainer.callbacks if isinstance(c, LossSpikeRollback)), None)
    count = 0
    while callback is not None:
        if callback.pending is None:
            callback._resolve_paths(trainer)
            callback._read_request()
        request = callback.pending
        if request is None:
            break
        trainer.fit(model, datamodule=datamodule or trainer.datamodule, ckpt_path=request["checkpoint"])
        if callback.pending is request:  # applied in another process
            callback.pending = None
        count += 1
    if count:
        _refresh_last_checkpoints(trainer)
    return count


def fit_with_rollbacks(
    trainer: Trainer,
    model: LightningModule,
    datamodule: LightningDataModule | None = None,
    ckpt_path: str | None = None,
) -> int:
    """`trainer.fit` followed by `continue_after_rollbacks`; returns the number of rollbacks."""
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    return continue_after_rollbacks(trainer, model, datamodule)


def _refresh_last_checkpoints(trainer: Trainer) -> None:
    """Write ModelCheckpoint's last.ckpt once more after the final fit.

    ModelCheckpoint saves `last` at train end only if it saved nothing before in the object's life,
    so after a re-fit its last.ckpt could still hold the first fit's (pre-rollback) state.
    """
    from lightning.pytorch.callbacks import ModelCheckpoint

    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.save_last is True and callback.dirpath:
            path = callback.format_checkpoint_name({}, callback.CHECKPOINT_NAME_LAST)
            trainer.save_checkpoint(path)
            callback.last_model_path = path


def _total_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
    return norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # DTensor under FSDP2


def _grad_scale(trainer: Trainer) -> float:
    # 16-mixed: the loss reaching on_before_backward was multiplied by the scale
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    return float(scaler.get_scale()) if scaler is not None and scaler.is_enabled() else 1.0


def _json_safe(value):
    """NaN and Inf as strings ("nan", "inf"): strict JSON readers (jq, browsers) reject the bare tokens."""
    return str(value) if isinstance(value, float) and not math.isfinite(value) else value


@rank_zero_only
def _remove_file(path: str) -> None:
    if os.path.isdir(path):  # a sharded (distributed) checkpoint is a folder
        shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
