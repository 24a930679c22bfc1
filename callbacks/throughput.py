"""TokenThroughput: Lightning's ThroughputMonitor set up for the kit's batches, with a peak-FLOPs override.

Logs `train|validate/{samples,items,batches}_per_sec`, `device/flops_per_sec` and, where the
device's peak is known, `device/mfu` (LitLLM exposes `flops_per_batch`). Lightning's table
has no CPUs and misses some GPUs: pass `peak_flops` (FLOP/s per device) to get MFU there.

    trainer:
      callbacks:
        - class_path: lit_llm.callbacks.TokenThroughput
          init_args: {peak_flops: 6.7e10}   # the measured fp32 matmul peak of a 2-core CPU
"""

from __future__ import annotations

from lightning.pytorch.callbacks import ThroughputMonitor
from lightning.pytorch.trainer.states import RunningStage, TrainerFn

from lit_llm.batch import INPUT_IDS


def batch_rows(batch: dict) -> int:
    return int(batch[INPUT_IDS].shape[0])


def batch_tokens(batch: dict) -> int:
    return int(batch[INPUT_IDS].numel())


class TokenThroughput(ThroughputMonitor):
    """Tokens/s, samples/s, FLOP/s and MFU of training and validation."""

    def __init__(self, peak_flops: float | None = None, window_size: int = 20) -> None:
        """
        Args:
            peak_flops: Peak FLOP/s of one device for the run's dtype; None uses Lightning's table (GPUs only).
            window_size: Batches averaged in each logged figure.
        """
        if peak_flops is not None and peak_flops <= 0:
            raise ValueError(f"peak_flops must be > 0, got {peak_flops}")
        super().__init__(batch_size_fn=batch_rows, length_fn=batch_tokens, window_size=window_size)
        self.peak_flops = peak_flops

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if self.peak_flops is None:
            return
        from lightning.fabric.utilities.throughput import Throughput

        self.available_flops = self.peak_flops
        stages = [trainer.state.stage]
        if stage == TrainerFn.FITTING and trainer.enable_validation:
            stages.append(RunningStage.VALIDATING)
        for running in stages:
            self._throughputs[running] = Throughput(
                available_flops=self.peak_flops, world_size=trainer.world_size, **self.kwargs
            )
