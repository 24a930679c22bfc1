"""How long a checkpoint save stalls training, synchronous vs asynchronous (`--checkpoint.async_save`),
in real `lit-llm fit` runs on CPU: one process (AtomicCheckpointIO) and two FSDP2 ranks (ShardedStrategy,
torch.distributed.checkpoint over gloo).

    .venv/bin/python bench/bench_checkpoint_stall.py                 # ~8 minutes on 2 CPU cores, ~8 GB RAM
    .venv/bin/python bench/bench_checkpoint_stall.py --steps 21 --every 5 --layouts one

The gpt2-124m preset (12 x 768, tied embeddings) at vocabulary 32000 is 110M parameters, so a
checkpoint (fp32 weights + two AdamW moments) is about 1.3 GB; context 64 and micro-batch 1 keep the
step short. A ModelCheckpoint saves every `--every` steps (one file or folder per save; `--with-last`
adds `last.ckpt`, the kit's default pair, whose second write waits for the first: at most one in
flight). Every run records a timestamp after each training batch; the interval that follows a save's
step holds the save. Printed per layout, medians over the saves:
- a step without a save (steps before the first save and well after each, in the synchronous run);
- the step holding a save, synchronous and asynchronous, and their ratios to the step without a save;
- asynchronous only: the next two steps, which share the CPU with the background write.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_init_memory import build_data
from lightning.pytorch import Callback

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "configs" / "model" / "gpt2-124m.yaml"
VOCAB = 32000


class BatchClock(Callback):
    """perf_counter() at the start and the end of every training batch, per rank, to OUT/clock-rank{r}.json.
    Checkpoint callbacks run after every other callback, so a save lies between a batch's end and the
    next batch's start."""

    def __init__(self, out: str) -> None:
        self.out, self.starts, self.ends = out, [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.starts.append(time.perf_counter())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.ends.append(time.perf_counter())

    def on_train_end(self, trainer, pl_module) -> None:
        params = sum(p.numel() for p in pl_module.parameters())  # the whole model (DTensors count all)
        record = {"starts": self.starts, "ends": self.ends, "params": params}
        Path(self.out, f"clock-rank{trainer.global_rank}.json").write_text(json.dumps(record))


def fit(data: Path, out: Path, ranks: int, async_save: bool, args: argparse.Namespace) -> dict:
    """Rank 0's batch timestamps of one run."""
    out.mkdir(parents=True)
    checkpoint = {
        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
        "init_args": {
            "dirpath": str(out / "checkpoints"),
            "every_n_train_steps": args.every,
            "save_top_k": -1,
            "save_last": args.with_last,
        },
    }
    callbacks = [
        checkpoint,
        {"class_path": "bench_checkpoint_stall.BatchClock", "init_args": {"out": str(out)}},
    ]
    fsdp2 = [
        "--trainer.strategy.class_path", "lightning.pytorch.strategies.ModelParallelStrategy",
        "--trainer.strategy.init_args.data_parallel_size", str(ranks),
        "--trainer.strategy.init_args.tensor_parallel_size", "1",
    ]  # fmt: off
    command = [
        "fit",
        "--model.arch", str(PRESET),
        "--data.path", str(data),
        "--data.seq_len", "64",
        "--data.batch_size", "1",
        "--data.verify_checksums", "false",
        "--trainer.accelerator", "cpu",
        "--trainer.devices", str(ranks),
        *(fsdp2 if ranks > 1 else []),
        "--trainer.max_steps", str(args.steps),
        "--trainer.limit_val_batches", "0",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.logger", "false",
        "--trainer.default_root_dir", str(out),
        "--trainer.callbacks", json.dumps(callbacks),
        "--checkpoint.async_save", str(async_save).lower(),
    ]  # fmt: off
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'bench'}:{ROOT}", "OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run(
        [sys.executable, "-m", "lit_llm.cli", *command], env=env, capture_output=True, text=True
    )
    clock = out / "clock-rank0.json"
    if done.returncode != 0 or not clock.exists():
        raise SystemExit(f"{out}: the run failed:\n{done.stderr[-3000:]}")
    record = json.loads(clock.read_text())
    saved = sorted(p.name for p in (out / "checkpoints").iterdir() if not p.name.startswith("."))
    print(f"  {out.name}: {record['params'] / 1e6:.1f}M parameters; wrote {', '.join(saved)}")
    return record


def split_steps(record: dict, every: int) -> dict[str, list[float]]:
    """Step times by what they hold. Batch j ends at optimizer step j + 1, whose save (when j + 1 is a
    multiple of `every`) runs before batch j + 1 starts; so step k, from the end of batch k - 1 to the end
    of batch k, holds the save of optimizer step k. Step 1 is warm-up."""
    starts, ends = record["starts"], record["ends"]
    steps = {k: ends[k] - ends[k - 1] for k in range(2, len(ends))}
    blocked = {k: starts[k] - ends[k - 1] for k in steps}  # hooks after batch k-1: the save itself
    saves = [k for k in steps if k % every == 0]
    after = [k + i for k in saves for i in (1, 2) if k + i in steps]
    plain = [k for k in steps if k not in saves and k not in after]
    return {
        "plain": [steps[k] for k in plain],
        "save": [steps[k] for k in saves],
        "blocked": [blocked[k] - statistics.median(blocked[p] for p in plain) for k in saves],
        "after": [steps[k] for k in after],
    }


def report(name: str, sync: dict, background: dict) -> None:
    runs = {"sync": sync, "async": background}
    median = {mode: {k: statistics.median(v) for k, v in run.items()} for mode, run in runs.items()}
    base = {mode: median[mode]["plain"] for mode in runs}
    print(f"{name}: step without a save {base['sync']:.3f} s (async run: {base['async']:.3f} s)")
    for mode in runs:
        step, blocked = median[mode]["save"], median[mode]["blocked"]
        print(
            f"  step with a save, {mode:<5} {step:.3f} s = {step / base[mode]:.2f}x its run's step without "
            f"(stall {step - base[mode]:+.3f} s, of which the save call blocks training {blocked:.3f} s)"
        )
    after = median["async"]["after"]
    print(
        f"  async: the next 2 steps {after:.3f} s = {after / base['async']:.2f}x (sharing the CPU with the write)"
    )
    stall = {mode: median[mode]["save"] - base[mode] for mode in runs}
    blocked = {mode: median[mode]["blocked"] for mode in runs}
    print(
        f"  async / sync: stall {stall['async'] / stall['sync']:.2f}, "
        f"time the save call blocks training {blocked['async'] / blocked['sync']:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=16, help="optimizer steps per run")
    parser.add_argument("--every", type=int, default=5, help="save every this many steps")
    parser.add_argument(
        "--with-last", action="store_true", help="also write last.ckpt at each save (kit default)"
    )
    parser.add_argument("--layouts", default="one,fsdp2", help="one (1 process) and/or fsdp2 (2 ranks)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per rank (torch/OpenMP)")
    args = parser.parse_args()
    layouts = {"one": ("one process, AtomicCheckpointIO", 1), "fsdp2": ("2 FSDP2 ranks, ShardedStrategy", 2)}
    with tempfile.TemporaryDirectory() as tmp:
        data = build_data(Path(tmp) / "data")
        print(
            f"gpt2-124m preset, vocabulary {VOCAB}, context 64, micro-batch 1, {args.steps} steps, "
            f"a save every {args.every}{' (+ last.ckpt)' if args.with_last else ''}"
        )
        for key in args.layouts.split(","):
            name, ranks = layouts[key]
            runs = {
                mode: split_steps(
                    fit(data, Path(tmp) / f"{key}-{mode}", ranks, mode == "async", args), args.every
                )
                for mode in ("sync", "async")
            }
            report(name, runs["sync"], runs["async"])


if __name__ == "__main__":
    main()
