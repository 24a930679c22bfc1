"""LossSpikeRollback cost: overhead on a normal step, and the time to recover from one spike.

    .venv/bin/python bench/bench_spike_rollback.py                       # ~3 min on 2 CPU cores
    .venv/bin/python bench/bench_spike_rollback.py --steps 60 --repeats 5 --threads 2

The tiny CPU config of configs/experiments/tiny_cpu.yaml (4 x 128 Llama, GQA 4/2, context 256,
batch 12, AdamW, clipping at 1.0), on a BPE shard folder built here; everything in this process.
Printed:
- overhead on a normal step, two ways: (a) steps with the callback working vs idle, alternating
  step by step within each run (so machine-load drift hits both) and compared in pairs; (b) the
  time spent inside the callback's hooks, timed directly, over the median step time (the steadier
  figure on a shared machine). Target: under 1%. Rollback
  checkpoints are not written here (they cost what a ModelCheckpoint save costs; the save time per
  checkpoint is printed separately).
- recovery from one planted spike (a corrupted span of data): the wall time from the end of the
  spiked step to the end of the first step after the reload (stop, validation, new fit set-up,
  checkpoint load), and the steps redone from the clean checkpoint.
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
from lit_llm.callbacks.spike_rollback import LossSpikeRollback, fit_with_rollbacks  # noqa: E402

from lit_llm.data.datamodule import LitDataModule  # noqa: E402
from lit_llm.model import ModelConfig  # noqa: E402
from lit_llm.module import LitLLM, OptimizerConfig, ScheduleConfig  # noqa: E402

ARCH = ModelConfig(n_layer=4, n_head=4, n_kv_head=2, d_model=128, max_seq_len=256)
SEQ_LEN, BATCH = 256, 12
HOOKS = ("on_before_backward", "on_before_optimizer_step", "on_train_batch_end")


class StepClock(Callback):
    """perf_counter() at the end of every training batch, and when fit was asked to stop."""

    def __init__(self) -> None:
        self.stamps: list[tuple[int, float]] = []
        self.stop_at: float | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        self.stamps.append((trainer.global_step, now))
        if trainer.should_stop and self.stop_at is None:
            self.stop_at = now


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
        self.on = trainer.global_step % 2 == 1  # the step's three hooks all follow this
        self.active_steps += self.on


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
        accelerator="cpu",
        devices=1,
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
    fit_with_rollbacks(trainer, module, datamodule)
    return trainer, time.perf_counter() - start


def median_step(clock: StepClock, skip: int = 3) -> float:
    times = [b - a for (_, a), (_, b) in zip(clock.stamps, clock.stamps[1:])][skip:]
    return statistics.median(times)


def overhead(data: Path, tmp: Path, steps: int, repeats: int) -> dict:
    """Steps with the callback working (odd) vs idle (even), paired within each run."""
    on, off, pairs, inside = [], [], [], []
    for i in range(repeats):
        clock = StepClock()
        callback = AlternatingRollback(warmup_steps=10, window=128, every_n_steps=10**9)  # no saves
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
    clock = StepClock()
    callback = LossSpikeRollback(
        warmup_steps=every,
        window=every,
        every_n_steps=every,
        clean_after_steps=every // 2 + 2,
        extra_skip_batches=2,
        cooldown_steps=every,
    )
    trainer, wall = run(
        data, tmp / "recovery", spike_step + 2 * every, [Poison(start, start + BATCH), clock, callback]
    )
    events = [json.loads(line) for line in Path(callback.events_file).read_text().splitlines()]
    spike = next(e for e in events if e["event"] == "spike")
    resumed = next(t for (step, t), (prev, _) in zip(clock.stamps[1:], clock.stamps) if step <= prev)
    normal = median_step(clock)
    saves = sorted(Path(callback.dirpath).glob("*.ckpt"))
    save_s = time_save(trainer, tmp / "save-timing.ckpt")
    return {
        "spike_step": spike["step"],
        "action": spike["action"],
        "rolled_back_to": spike.get("checkpoint_step"),
        "skip": spike.get("skip"),
        "recovery_s": round(resumed - clock.stop_at - normal, 2),
        "redone_steps": spike["step"] - spike.get("checkpoint_step", spike["step"]),
        "redone_s": round((spike["step"] - spike.get("checkpoint_step", spike["step"])) * normal, 2),
        "step_ms": round(normal * 1e3, 1),
        "checkpoint_save_s": round(save_s, 3),
        "checkpoints_on_disk": len(saves),
        "fit_wall_s": round(wall, 1),
    }


def time_save(trainer: Trainer, path: Path) -> float:
    start = time.perf_counter()
    trainer.save_checkpoint(path)
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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = build_data(tmp / "text")
        result = {
            "threads": args.threads,
            "overhead": overhead(data, tmp, args.steps, args.repeats),
            "recovery": recovery(data, tmp, args.every),
        }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
