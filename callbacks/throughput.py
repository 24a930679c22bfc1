"""TokenThroughput: tokens/s, samples/s, FLOP/s and MFU of training and validation, with a peak-FLOPs override.

Logs `train|validate/{batches,samples,tokens}_per_sec` (all ranks; `.../device/...` per device),
`.../device/flops_per_sec` and, where the
device's peak is known, `.../device/mfu` (LitLLM exposes `flops_per_batch`), through Lightning's
public `Throughput` meter and `LightningModule.log`. Lightning's peak table has no CPUs and misses
some GPUs: pass `peak_flops` (FLOP/s per device) to get MFU there. Validation time is not counted
as training time. The figures average the last `window_size` batches, so the first appear after that
many. `lit-llm fit` adds this callback by default.

    trainer:
      callbacks:
        - class_path: lit_llm.callbacks.TokenThroughput
          init_args: {peak_flops: 6.7e10}   # the measured fp32 matmul peak of a 2-core CPU
"""

from __future__ import annotations

import time

import torch
from lightning.fabric.utilities.throughput import Throughput, get_available_flops
from lightning.pytorch import Callback, LightningModule, Trainer

from lit_llm.batch import INPUT_IDS, data_parallel_rank_and_size


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype matmuls run in under a Lightning precision setting ("bf16-mixed", "32-true", ...)."""
    precision = str(precision)
    if precision.startswith("bf16"):
        return torch.bfloat16
    if precision.startswith("16"):
        return torch.float16
    return torch.float64 if precision.startswith("64") else torch.float32


class _Meter:
    """Running totals of one stage, fed to a `Throughput` window.

    Under tensor parallelism the `tensor_parallel` ranks of a group share each batch and its FLOPs, so
    a device does 1/tensor_parallel of them: the FLOPs fed in and the batch, sample and token rates read
    out are divided by it (global figures are then device figures x devices, as `Throughput` computes).
    """

    def __init__(
        self, flops: float | None, world_size: int, window_size: int, tensor_parallel: int = 1
    ) -> None:
        self.throughput = Throughput(available_flops=flops, world_size=world_size, window_size=window_size)
        self.start, self.paused, self.batches, self.samples, self.tokens = time.perf_counter(), 0.0, 0, 0, 0
        self.tensor_parallel = tensor_parallel

    def update(self, batch: dict, flops_per_batch: float | None) -> None:
        self.batches += 1
        self.samples += int(batch[INPUT_IDS].shape[0])
        self.tokens += int(batch[INPUT_IDS].numel())
        elapsed = time.perf_counter() - self.start - self.paused
        totals = {"batches": self.batches, "samples": self.samples, "lengths": self.tokens}
        if flops_per_batch is not None:
            flops_per_batch = flops_per_batch / self.tensor_parallel
        self.throughput.update(time=elapsed, flops=flops_per_batch, **totals)

    def metrics(self, prefix: str) -> dict[str, float]:
        """`Throughput`'s rates, its items (here tokens) named tokens: PREFIX/tokens_per_sec, ... (not its
        running totals: the module logs the tokens seen)."""
        rates = {k: v for k, v in self.throughput.compute().items() if k.endswith(("_per_sec", "mfu"))}
        shared = (
            "batches_per_sec",
            "samples_per_sec",
            "items_per_sec",
        )  # counted once per tensor-parallel rank
        rates = {k: v / self.tensor_parallel if k.endswith(shared) else v for k, v in rates.items()}
        return {f"{prefix}/{k.replace('items', 'tokens')}": float(v) for k, v in rates.items()}


class TokenThroughput(Callback):
    """Tokens/s, samples/s, FLOP/s and MFU of training and validation."""

    def __init__(self, peak_flops: float | None = None, window_size: int = 20) -> None:
        """
        Args:
            peak_flops: Peak FLOP/s of one device for the run's dtype; None uses Lightning's table (GPUs only).
            window_size: Batches averaged in each logged figure.
        """
        if peak_flops is not None and peak_flops <= 0:
            raise ValueError(f"peak_flops must be > 0, got {peak_flops}")
        self.peak_flops, self.window_size = peak_flops, window_size
        self._train: _Meter | None = None
        self._val: _Meter | None = None
        self._val_started = 0.0

    def _new_meter(self, trainer: Trainer) -> _Meter:
        flops = self.peak_flops or get_available_flops(
            trainer.strategy.root_device, compute_dtype(trainer.precision)
        )
        groups = data_parallel_rank_and_size(trainer)[1]
        return _Meter(flops, trainer.world_size, self.window_size, trainer.world_size // groups)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._train = self._new_meter(trainer)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx
    ) -> None:
        if self._train is None or not isinstance(batch, dict):
            return
        self._train.update(batch, getattr(pl_module, "flops_per_batch", None))
        if trainer.global_step % trainer.log_every_n_steps == 0:  # the steps Lightning writes to the logger
            metrics = self._train.metrics("train")
            # all ranks together (`Throughput` reports per-device figures only for one process)
            tokens_per_sec = metrics.pop("train/tokens_per_sec", metrics.get("train/device/tokens_per_sec"))
            pl_module.log_dict(metrics, on_step=True, on_epoch=False)
            if tokens_per_sec is not None:  # also on the progress bar
                pl_module.log(
                    "train/tokens_per_sec", tokens_per_sec, on_step=True, on_epoch=False, prog_bar=True
                )

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._val, self._val_started = self._new_meter(trainer), time.perf_counter()

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if self._val is not None and isinstance(batch, dict):
            self._val.update(batch, getattr(pl_module, "flops_per_batch", None))

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._val is not None and self._val.batches and not trainer.sanity_checking:
            pl_module.log_dict(self._val.metrics("validate"))

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._train is not None:  # validation inside fit: not training time
            self._train.paused += time.perf_counter() - self._val_started
