"""Tensor parallelism on CPU: step time of one process against two tensor-parallel ranks (gloo), and
the share of a TP step spent in communication, from real `lit-llm fit` runs of the same model.

    .venv/bin/python bench/bench_tensor_parallel.py            # ~3 minutes on an idle 2-core machine

Model: 8 x 512, 8 heads / 4 KV heads, vocabulary 4,096, context 256, micro-batch 4 (the same batch
in both runs: a tensor-parallel group shares it). Steps 3-7 of each run are timed; steps 8-10 of
the TP run are profiled (torch.profiler, CPU) and the self time of collective ops (all-gather,
reduce-scatter, all-reduce and the waits on them) is summed against the profiled wall time.

On this 2-core machine gloo moves activations through shared memory and each rank has one core, so
the figures say how much of a TP step its communication takes here, not what NVLink would give:
on GPUs, the all-gathers and reduce-scatters of sequence parallelism move 4 x micro-batch x context
x width bytes per block in bf16 over ~450 GB/s links.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lightning.pytorch import Callback

ROOT = Path(__file__).resolve().parents[1]
ARCH = {"n_layer": 8, "n_head": 8, "n_kv_head": 4, "d_model": 512, "max_seq_len": 256}
VOCAB = 4096  # small: the embedding and LM head, whole on every tensor-parallel rank, would dominate
COMMUNICATION = ("c10d", "all_gather", "reduce_scatter", "all_reduce", "wait_tensor", "broadcast")
TIMED, PROFILED = range(3, 8), range(8, 11)


class StepClock(Callback):
    """Writes OUT/rank{r}.json: the wall time of each timed step and, over the profiled steps, the wall
    time and the self CPU time of collective ops."""

    def __init__(self, out: str) -> None:
        self.out, self.starts, self.profile, self.record = out, {}, None, {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        import torch

        self.starts[batch_idx] = time.perf_counter()
        if batch_idx == PROFILED.start:
            self.profile = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            self.profile.__enter__()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx in TIMED:
            self.record.setdefault("step_seconds", []).append(time.perf_counter() - self.starts[batch_idx])
        if batch_idx == PROFILED[-1] and self.profile is not None:
            self.profile.__exit__(None, None, None)
            events = self.profile.key_averages()
            comm = sum(e.self_cpu_time_total for e in events if any(c in e.key for c in COMMUNICATION))
            self.record["profiled_seconds"] = time.perf_counter() - self.starts[PROFILED.start]
            self.record["communication_seconds"] = comm / 1e6
            self.record["collectives"] = sorted(
                {e.key for e in events if any(c in e.key for c in COMMUNICATION)}
            )
            Path(self.out, f"rank{trainer.global_rank}.json").write_text(json.dumps(self.record))


def run(data: Path, out: Path, tensor_parallel: int) -> list[dict]:
    out.mkdir(parents=True)
    arch = [arg for k, v in ARCH.items() for arg in (f"--model.arch.{k}", str(v))]
    strategy = [
        "--trainer.devices", str(tensor_parallel),
        "--trainer.strategy.class_path", "lightning.pytorch.strategies.ModelParallelStrategy",
        "--trainer.strategy.init_args.data_parallel_size", "1",
        "--trainer.strategy.init_args.tensor_parallel_size", str(tensor_parallel),
    ]  # fmt: off
    args = [
        "fit", *arch,
        "--data.path", str(data), "--data.seq_len", "256", "--data.batch_size", "4",
        "--data.verify_checksums", "false",
        "--trainer.accelerator", "cpu",
        *(strategy if tensor_parallel > 1 else []),
        "--trainer.max_steps", str(PROFILED[-1] + 1),
        "--trainer.limit_val_batches", "0",
        "--trainer.enable_checkpointing", "false",
        "--trainer.enable_progress_bar", "false",
        "--trainer.logger", "false",
        "--trainer.default_root_dir", str(out),
        "--trainer.callbacks+=bench_tensor_parallel.StepClock",
        "--trainer.callbacks.out", str(out),
    ]  # fmt: off
    threads = str(max(1, (os.cpu_count() or 2) // tensor_parallel))  # the same cores in all for both runs
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'bench'}:{ROOT}", "OMP_NUM_THREADS": threads}
    done = subprocess.run(
        [sys.executable, "-m", "lit_llm.cli", *args], env=env, capture_output=True, text=True
    )
    records = [json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))]
    if len(records) != tensor_parallel:
        raise SystemExit(f"run with tensor parallel {tensor_parallel} failed:\n{done.stderr[-3000:]}")
    return records


def main() -> None:
    from bench_init_memory import build_data

    with tempfile.TemporaryDirectory() as tmp:
        data = build_data(Path(tmp) / "data", VOCAB)
        one = run(data, Path(tmp) / "one", 1)[0]
        tp = run(data, Path(tmp) / "tp2", 2)
    step_one = statistics.median(one["step_seconds"])
    step_tp = statistics.median(s for r in tp for s in r["step_seconds"])
    print(f"model {ARCH}, vocabulary {VOCAB}, micro-batch 4 x 256 tokens, {os.cpu_count()} cores")
    print(
        f"  one process:       {step_one * 1000:7.1f} ms per step (median of steps {TIMED.start}-{TIMED[-1]})"
    )
    print(
        f"  tensor parallel 2: {step_tp * 1000:7.1f} ms per step = {step_one / step_tp:.2f}x the one-process speed"
    )
    for r, record in enumerate(tp):
        share = record["communication_seconds"] / record["profiled_seconds"]
        print(
            f"  TP rank {r}: {share:.0%} of profiled wall time in collectives "
            f"({record['communication_seconds']:.2f} of {record['profiled_seconds']:.2f} s over "
            f"{len(PROFILED)} steps; ops: {', '.join(record['collectives'])})"
        )


if __name__ == "__main__":
    main()
