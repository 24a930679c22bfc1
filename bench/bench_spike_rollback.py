"""LossSpikeRollback cost: overhead on a normal step, time and memory to recover from one spike, disk per parameter.

    .venv/bin/python bench/bench_spike_rollback.py                       # ~3 min on 2 CPU cores
    .venv/bin/python bench/bench_spike_rollback.py --steps 60 --repeats 5 --threads 2

The tiny CPU config of configs/experiments/tiny_cpu.yaml (4 x 128 Llama, GQA 4/2, context 256,
batch 12, AdamW, clipping at 1.0), on a BPE shard folder built here; everything in this process,
with a plain Lightning Trainer (the rollback happens inside `trainer.fit`).
Printed:
- overhead on a normal step, two ways: (a) steps with the callback working vs idle, alternating
  step by step within each run (so machine-load drift hits both) and compared in pairs; (b) the
  time spent inside the callback's hooks, timed directly, over the median step time (the steadier
  figure on a shared machine). Target: under 1%. Periodic rollback checkpoints are not written
  there (they cost what a ModelCheckpoint save costs: the save time is printed separately).
- recovery from one planted spike (a corrupted span of data): the extra wall time of the step
  after the spike over a normal step (checkpoint load, in-place restore, data stream restart),
  the restore alone, the host memory it holds while restoring (the tensors it loaded), and the
  steps discarded.
- the clean baseline's cost per parameter: bytes on disk per checkpoint (weights + AdamW moments)
  and the memory the in-place restore needs, both per model parameter, so that a 1B or 8B run can
  be sized.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from lightning.pytorch import Callback, Trainer  # noqa: E402
from lit_llm.callbacks import spike_rollback  # noqa: E402
from lit_llm.callbacks.spike_rollback import LossSpikeRollback  # noqa: E402

from lit_llm import rollback  # noqa: E402
from lit_llm.data.datamodule import LitDataModule  # noqa: E402
from lit_llm.model import ModelConfig  # noqa: E402
from lit_llm.module import LitLLM, OptimizerConfig, ScheduleConfig  # noqa: E402
from lit_llm.spike_detector import SpikeDetector  # noqa: E402

ARCH = ModelConfig(n_layer=4, n_head=4, n_kv_head=2, d_model=128, max_seq_len=256)
SEQ_LEN, BATCH = 256, 12
DEVICE = {"accelerator": "cpu", "precision": "32-true"}  # --accelerator gpu --precision bf16-mixed on a GPU
HOOKS = ("on_before_backward", "on_before_optimizer_step", "on_train_batch_end")


class StepClock(Callback):
    """perf_counter() at the end of every training batch (before the rollback callback's own hook)."""

    def __init__(self) -> None:
        self.stamps: list[tuple[int, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.stamps.append((trainer.global_step, time.perf_counter()))


class MeasuredRestore:
    """Wraps the callback's in-place restore: its wall time and the bytes of the tensors it loaded."""

    def __init__(self) -> None:
        self.seconds, self.tensor_bytes = None, 0

    def __call__(self, trainer, pl_module, path):
        start = time.perf_counter()
        checkpoint = rollback.restore_in_place(trainer, pl_module, path)
        self.seconds = time.perf_counter() - start
        self.tensor_bytes = sum(t.numel() * t.element_size() for t in _tensors(checkpoint))
        return checkpoint


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


class AlternatingRollback(LossSpikeRollback):
    """LossSpikeRollback that works on odd steps only (even steps return at once), with a stopwatch.

    Odd and even steps of the same run interleave at the finest grain, so machine-load drift hits
    both alike; the stopwatch times the hooks directly.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.seconds, self.active_steps, self.on = 0.0, 0, False
        for name in HOOKS:
            setattr(self, name, self._timed(getattr(self, name)))

    def _timed(self, method):
        def run(trainer, *args, **kwargs):
            if not self.on:
                return None
            start = time.perf_counter()
            try:
                return method(trainer, *args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return run

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.on = trainer.global_step % 2 == 1  # the step's hooks all follow this
        self.active_steps += self.on
        if self.on:
            start = time.perf_counter()
            super().on_train_batch_start(trainer, pl_module, batch, batch_idx)
            self.seconds += time.perf_counter() - start


class Poison(Callback):
    """Random labels for global sample indices [start, end): a corrupted span of data."""

    def __init__(self, start: int, end: int) -> None:
        self.start, self.end = start, end

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        index = batch["sample_index"]
        bad = (index >= self.start) & (index < self.end)
        if bad.any():
            labels = batch["labels"][bad]
            batch["labels"][bad] = torch.randint(0, pl_module.model_config.vocab_size, labels.shape)


def build_data(folder: Path) -> Path:
    from tests.helpers import make_text_folder

    with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the JSON result
        return make_text_folder(folder, num_docs=600, vocab_size=512)


def run(data: Path, root: Path, steps: int, callbacks: list) -> tuple[Trainer, float]:
    datamodule = LitDataModule(str(data), seq_len=SEQ_LEN, batch_size=BATCH, verify_checksums=False)
    module = LitLLM(
        arch=ARCH,
        vocab_size=datamodule.vocab_size,
        optimizer=OptimizerConfig(lr=3e-3),
        schedule=ScheduleConfig(warmup_steps=10),
    )
    trainer = Trainer(
        max_steps=steps,
        devices=1,
        **DEVICE,
        default_root_dir=str(root),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        gradient_clip_val=1.0,
        limit_val_batches=4,
        val_check_interval=10_000,
        check_val_every_n_epoch=None,
        callbacks=callbacks,
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule)
    return trainer, time.perf_counter() - start


def median_step(clock: StepClock, skip: int = 3) -> float:
    times = [b - a for (_, a), (_, b) in zip(clock.stamps, clock.stamps[1:])][skip:]
    return statistics.median(times)


def overhead(data: Path, tmp: Path, steps: int, repeats: int) -> dict:
    """Steps with the callback working (odd) vs idle (even), paired within each run."""
    on, off, pairs, inside = [], [], [], []
    for i in range(repeats):
        clock = StepClock()
        callback = AlternatingRollback(every_n_steps=10**9)  # no periodic saves (the step-0 baseline only)
        run(data, tmp / f"overhead-{i}", steps, [callback, clock])  # the clock after the callback's hooks
        durations = [(step, b - a) for (_, a), (step, b) in zip(clock.stamps, clock.stamps[1:])][4:]
        times = dict(durations)  # step -> seconds; step s ended with global_step s, so it ran as s - 1
        for step, seconds in durations:
            (on if (step - 1) % 2 == 1 else off).append(seconds)
            if (step - 1) % 2 == 1 and step - 1 in times:
                pairs.append(seconds - times[step - 1])
        inside.append(callback.seconds / callback.active_steps)
    base = statistics.median(off)
    return {
        "step_ms_idle": round(base * 1e3, 2),
        "step_ms_working": round(statistics.median(on) * 1e3, 2),
        "paired_difference_pct": round(statistics.median(pairs) / base * 100, 2),
        "hook_ms_per_step": round(statistics.median(inside) * 1e3, 3),
        "hooks_pct_of_step": round(statistics.median(inside) / base * 100, 3),
        "steps_compared": len(pairs),
    }


def recovery(data: Path, tmp: Path, every: int) -> dict:
    spike_step = 2 * every + every // 2 + 1  # a few steps after a checkpoint that is not yet clean
    start = spike_step * BATCH
    clock, restore = StepClock(), MeasuredRestore()
    spike_rollback.restore_in_place = restore  # the name the callback calls
    callback = LossSpikeRollback(
        detector=SpikeDetector(window=every, min_history=every),
        every_n_steps=every,
        clean_after_steps=every // 2 + 2,
        extra_skip_batches=2,
        cooldown_steps=every,
    )
    callbacks = [Poison(start, start + BATCH), clock, callback]
    trainer, wall = run(data, tmp / "recovery", spike_step + 2 * every, callbacks)
    spike = next(e for e in callback.event_log.events if e["event"] == "spike")
    ends = dict(clock.stamps)  # global step after a step -> when it ended
    normal = median_step(clock)
    restore_step = ends[spike["step"] + 2] - ends[spike["step"] + 1]
    params = sum(p.numel() for p in trainer.lightning_module.parameters())
    saves = sorted(Path(callback.dirpath).glob("*.ckpt"))
    save_s = time_save(trainer, tmp / "save-timing.ckpt")
    disk = (tmp / "save-timing.ckpt").stat().st_size
    return {
        "spike_step": spike["step"],
        "action": spike["action"],
        "rolled_back_to": spike.get("checkpoint_step"),
        "skip": spike.get("skip"),
        "recovery_s": round(restore_step - normal, 3),
        "restore_in_place_s": round(restore.seconds, 3),
        "restore_loaded_mb": round(restore.tensor_bytes / 2**20, 2),
        "discarded_steps": spike.get("discarded_steps"),
        "discarded_s": round(spike.get("discarded_steps", 0) * normal, 2),
        "step_ms": round(normal * 1e3, 1),
        "checkpoint_save_s": round(save_s, 3),
        "checkpoints_on_disk": len(saves),
        "fit_wall_s": round(wall, 1),
        "parameters": params,
        "checkpoint_bytes_per_parameter": round(disk / params, 2),
        "restore_host_bytes_per_parameter": round(restore.tensor_bytes / params, 2),
    }


def time_save(trainer: Trainer, path: Path) -> float:
    start = time.perf_counter()
    trainer.save_checkpoint(path, weights_only=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per overhead run")
    parser.add_argument("--repeats", type=int, default=2, help="overhead runs")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is steadier on a shared machine)"
    )
    parser.add_argument(
        "--every", type=int, default=10, help="rollback checkpoint interval in the recovery run"
    )
    for name, default in (
        ("n_layer", 4),
        ("n_head", 4),
        ("n_kv_head", 2),
        ("d_model", 128),
        ("seq_len", 256),
        ("batch", 12),
    ):
        parser.add_argument(
            f"--{name}", type=int, default=default, help=f"model/data shape (default {default})"
        )
    parser.add_argument("--accelerator", default="cpu", help="cpu or gpu")
    parser.add_argument(
        "--precision", default="32-true", help="Lightning precision, e.g. bf16-mixed on a GPU"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    global ARCH, SEQ_LEN, BATCH
    ARCH = ModelConfig(
        n_layer=args.n_layer,
        n_head=args.n_head,
        n_kv_head=args.n_kv_head,
        d_model=args.d_model,
        max_seq_len=args.seq_len,
    )
    SEQ_LEN, BATCH = args.seq_len, args.batch
    DEVICE.update(accelerator=args.accelerator, precision=args.precision)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = build_data(tmp / "text")
        result = {
            "threads": args.threads,
            "device": {
                **DEVICE,
                "model": f"{ARCH.n_layer}x{ARCH.d_model}",
                "seq_len": SEQ_LEN,
                "batch": BATCH,
            },
            "overhead": overhead(data, tmp, args.steps, args.repeats),
            "recovery": recovery(data, tmp, args.every),
        }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
