"""Data-parallel scaling on this machine: tokens/s of 1 vs 2 processes (DDP, gloo) and the communication share.

    .venv/bin/python bench/bench_scaling.py --steps 60

Three `lit-llm fit` runs over the same data and model (4 x 128, context 256, micro-batch 12):
1. one process with 2 threads,
2. two DDP processes with 1 thread each (twice the global batch),
3. the same two processes with a DDP communication hook that skips the all-reduce.
The communication share is (2) - (3) over (2): the part of a step spent in gradient
all-reduce. On 2 cores, 2 processes compete for the same cores as 2 threads do, so the ideal
is parity with (1), not 2x; on GPUs each process has its own device.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_training import ARCH, BATCH, ROOT, SEQ_LEN, build_data  # noqa: E402


def skip_allreduce_hook(state, bucket):
    """A DDP communication hook that returns the local gradients unreduced (compute-only timing)."""
    import torch

    future = torch.futures.Future()
    future.set_result(bucket.buffer())
    return future


def run(
    data: Path, tmp: Path, name: str, steps: int, devices: int, threads: int, hook: bool
) -> tuple[float, float]:
    """Median step time (s) and wall time of one fit."""
    stamps = tmp / f"{name}.json"
    callbacks = [{"class_path": "step_timer.StepTimer", "init_args": {"path": str(stamps)}}]
    config = {"trainer": {"callbacks": callbacks}}
    if devices > 1:
        strategy = {
            "class_path": "lightning.pytorch.strategies.DDPStrategy",
            "init_args": {"process_group_backend": "gloo"},
        }
        if hook:
            strategy["init_args"]["ddp_comm_hook"] = "bench_scaling.skip_allreduce_hook"
        config["trainer"]["strategy"] = strategy
    (tmp / f"{name}.yaml").write_text(json.dumps(config))
    arch = [x for k, v in ARCH.items() for x in (f"--model.arch.{k}", str(v))]
    cmd = [
        sys.executable,
        "-m",
        "lit_llm.cli",
        "fit",
        *arch,
        "--config",
        str(tmp / f"{name}.yaml"),
        "--data.path",
        str(data),
        "--data.seq_len",
        str(SEQ_LEN),
        "--data.batch_size",
        str(BATCH),
        "--trainer.accelerator",
        "cpu",
        "--trainer.devices",
        str(devices),
        "--trainer.max_steps",
        str(steps),
        "--trainer.val_check_interval",
        str(10 * steps),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--trainer.enable_checkpointing",
        "false",
        "--trainer.default_root_dir",
        str(tmp / name),
    ]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'bench'}", "OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    wall = time.perf_counter() - started
    s = json.loads(stamps.read_text())["stamps"]
    return statistics.median(b - a for a, b in zip(s[5:], s[6:])), wall


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-scaling-"))
    data = build_data(tmp)
    one, one_wall = run(data, tmp, "one", args.steps, 1, 2, False)
    two, two_wall = run(data, tmp, "two", args.steps, 2, 1, False)
    two_local, _ = run(data, tmp, "two_nocomm", args.steps, 2, 1, True)
    tokens = SEQ_LEN * BATCH
    print(f"model 4x128 ctx {SEQ_LEN}, micro-batch {BATCH}, {args.steps} steps")
    print(
        f"1 process x 2 threads : {one * 1e3:7.1f} ms/step  {tokens / one:8.0f} tok/s  (wall {one_wall:.0f} s)"
    )
    print(
        f"2 processes x 1 thread: {two * 1e3:7.1f} ms/step  {2 * tokens / two:8.0f} tok/s  (wall {two_wall:.0f} s)"
    )
    print(f"2 processes, no all-reduce: {two_local * 1e3:7.1f} ms/step")
    print(f"scaling 2 vs 1 process: {(2 * tokens / two) / (tokens / one):.2f}x tokens/s")
    print(f"communication share of a 2-process step: {100 * max(two - two_local, 0) / two:.1f}%")


if __name__ == "__main__":
    main()
