"""Peak resident memory per rank of a real `lit-llm fit` of the llama-1b preset (1.04B parameters) up
to its first optimizer step: one process (unsharded) against two FSDP2 ranks and two tensor-parallel
ranks, on CPU (gloo).

    .venv/bin/python bench/bench_init_memory.py            # ~3 minutes, ~14 GB of RAM at most

The model is built on the meta device and materialized in `configure_model` after FSDP2 has sharded
it, so each rank should hold about half of the fp32 weights at train start (one fp32 copy of the
model is 3.9 GiB). Context 64 and micro-batch 1 keep activations small. Printed per rank: resident
memory when the callback is built (model still on the meta device), at train start (materialized)
and the peak before the first optimizer step (AdamW's state is created in that step, which the
run does not take: two 1B ranks with AdamW do not fit this 24 GB host).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from lightning.pytorch import Callback

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "configs" / "model" / "llama-1b.yaml"
VOCAB = 32000


def resident_gib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


class PeakMemory(Callback):
    """Writes this rank's resident memory at construction and its peak before the first optimizer step
    (or, with `stop_at_train_start`, at train start: building and materializing only)."""

    def __init__(self, out: str, stop_at_train_start: bool = False) -> None:
        self.out, self.at_start, self.stop_at_train_start = out, resident_gib(), stop_at_train_start

    def on_train_start(self, trainer, pl_module) -> None:
        self.materialized = resident_gib()  # after configure_model: the weights (or this rank's shard)
        self.peak_at_start = peak_gib()  # the most this rank held while building and materializing
        if self.stop_at_train_start:
            self.on_before_optimizer_step(trainer, pl_module, None)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        params = pl_module.model.num_params()
        record = {"rank": trainer.global_rank, "start_gib": self.at_start, "params": params}
        record |= {"materialized_gib": self.materialized, "peak_at_start_gib": self.peak_at_start}
        record |= {"peak_gib": peak_gib()}
        Path(self.out, f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
        raise MeasuredStop  # every rank stops here: AdamW's state would not fit two 1B ranks in 24 GB


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB


class MeasuredStop(RuntimeError):
    """Ends the run once the memory before the first optimizer step is recorded."""


def build_data(folder: Path, vocab: int = VOCAB) -> Path:
    """Random token shards with the preset's vocabulary (the content does not matter for memory)."""
    import numpy as np

    from lit_llm.data.shards import Manifest, token_dtype, write_shard

    rng = np.random.default_rng(0)
    dtype = token_dtype(vocab)
    shards = []
    for split in ("train", "val"):
        docs = [rng.integers(1, vocab, 512).astype(dtype) for _ in range(64)]
        entry = write_shard(folder / split / "x.bin", docs, dtype)
        shards.append({"file": f"{split}/x.bin", "split": split, "source": "x", **entry})
    tokenizer = {"path": None, "eos_id": 0, "pad_id": None}
    Manifest(folder, {"format_version": 1, "vocab_size": vocab, "dtype": dtype.name, "tokenizer": tokenizer,
                      "sources": [{"name": "x", "weight": 1.0}], "shards": shards}).save()  # fmt: off
    return folder


def run(
    data: Path, out: Path, ranks: int, tensor_parallel: int = 1, until_train_start: bool = False
) -> list[dict]:
    """Per-rank records of a fit on `ranks` processes (FSDP2 over them, or tensor parallel of that size)."""
    out.mkdir(parents=True)
    strategy = [
        "--trainer.strategy.class_path", "lightning.pytorch.strategies.ModelParallelStrategy",
        "--trainer.strategy.init_args.data_parallel_size", str(ranks // tensor_parallel),
        "--trainer.strategy.init_args.tensor_parallel_size", str(tensor_parallel),
    ]  # fmt: off
    args = [
        "fit",
        "--model.arch", str(PRESET),
        "--data.path", str(data),
        "--data.seq_len", "64",
        "--data.batch_size", "1",
        "--data.verify_checksums", "false",
        "--trainer.accelerator", "cpu",
        "--trainer.devices", str(ranks),
        *(strategy if ranks > 1 else []),
        "--trainer.max_steps", "1",
        "--trainer.limit_val_batches", "0",
        "--trainer.enable_checkpointing", "false",
        "--trainer.enable_progress_bar", "false",
        "--trainer.logger", "false",
        "--trainer.default_root_dir", str(out),  # config.yaml goes there, not to the working directory
        "--trainer.callbacks+=bench_init_memory.PeakMemory",
        "--trainer.callbacks.out", str(out),
        "--trainer.callbacks.stop_at_train_start", str(until_train_start).lower(),
    ]  # fmt: off
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'bench'}:{ROOT}", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "lit_llm.cli", *args], env=env, capture_output=True, text=True
    )
    records = [json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))]
    if len(records) != ranks:
        raise SystemExit(
            f"run with {ranks} rank(s) failed before its first optimizer step:\n{done.stderr[-3000:]}"
        )
    return records


def main() -> None:
    layouts = {"one process": (1, 1), "FSDP2 x 2": (2, 1), "TP 2": (2, 2)}
    with tempfile.TemporaryDirectory() as tmp:
        data = build_data(Path(tmp) / "data")
        results = {
            name: run(data, Path(tmp) / f"run{i}", *sizes) for i, (name, sizes) in enumerate(layouts.items())
        }
    full_copy = results["one process"][0]["params"] * 4 / 2**30
    print(
        f"llama-1b preset: {results['one process'][0]['params'] / 1e9:.3f}B parameters, "
        f"one fp32 copy {full_copy:.2f} GiB"
    )
    for name, records in results.items():
        for r in records:
            print(
                f"  {name}, rank {r['rank']}: {r['start_gib']:.2f} GiB at construction (meta), "
                f"{r['materialized_gib']:.2f} GiB at train start (materialized; peak so far "
                f"{r['peak_at_start_gib']:.2f} = {r['peak_at_start_gib'] / full_copy:.2f} copies), "
                f"peak before the first optimizer step {r['peak_gib']:.2f} GiB = "
                f"{r['peak_gib'] / full_copy:.2f} fp32 copies"
            )


if __name__ == "__main__":
    main()
