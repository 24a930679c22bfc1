"""Record the per-step loss and gradient norm of normal runs, for the spike detector's false-positive test.

    .venv/bin/python bench/record_loss_curves.py                 # ~40 min on one core; needs runs/demo/data
    .venv/bin/python bench/record_loss_curves.py --only tiny_cpu_seed1 --steps 100

Runs, each as a fresh `lit-llm fit` process with `log_every_n_steps=1` and no spike callback:
- `demo`: the demo's training command (`lit_llm.demo.fit_args`, 1000 steps) on runs/demo/data;
- `tiny_cpu_seed{1,2,3}`: configs/experiments/tiny_cpu.yaml (600 steps) on runs/demo/data, three seeds;
- `time_to_quality`: the time-to-quality recipe of bench/bench_time_to_quality.py (tinyshakespeare, 700 steps).

Writes tests/data/loss_curves/<name>.csv (step, loss, grad_norm): the exact values the detector
sees on one process without accumulation (the step's loss and the pre-clip gradient norm).
tests/test_spike_detector.py replays them through `SpikeDetector` and asserts zero detections.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "tests" / "data" / "loss_curves"
QUIET = ["--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false"]


def runs(demo_data: Path, steps: int | None) -> dict[str, callable]:
    def demo(run: Path) -> list[str]:
        from lit_llm.demo import fit_args

        args = fit_args(run, demo_data, steps or 1000, 60)
        return [sys.executable, "-m", "lit_llm.cli", *args, *QUIET, "--trainer.enable_checkpointing", "false"]

    def tiny(seed: int):
        def command(run: Path) -> list[str]:
            config = ROOT / "configs" / "experiments" / "tiny_cpu.yaml"
            return [
                *[sys.executable, "-m", "lit_llm.cli", "fit", "--config", str(config)],
                *["--data.path", str(demo_data), "--seed_everything", str(seed)],
                *["--trainer.default_root_dir", str(run), "--trainer.enable_checkpointing", "false", *QUIET],
                *(["--trainer.max_steps", str(steps)] if steps else []),
            ]

        return command

    def time_to_quality(run: Path) -> list[str]:
        from bench.bench_time_to_quality import fit_command, parse_args, prepare

        data = prepare(Path(tempfile.mkdtemp(prefix="curve-ttq-")), 1024)
        return [*fit_command(parse_args([]), data, steps or 700, run), *QUIET]

    named = {"demo": demo, "time_to_quality": time_to_quality}
    named.update({f"tiny_cpu_seed{s}": tiny(s) for s in (1, 2, 3)})
    return named


def record(name: str, command, threads: int) -> Path:
    from lit_llm.plot import read_metrics, series

    run = Path(tempfile.mkdtemp(prefix=f"curve-{name}-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run(command(run), env=env, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        raise SystemExit(f"{name}: fit failed\n{proc.stderr[-3000:]}")
    rows = read_metrics(run)
    steps, losses = series(rows, "train/loss")
    norms = dict(zip(*series(rows, "train/grad_norm")))
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "loss", "grad_norm"])
        writer.writerows(
            (s, f"{loss:.5f}", f"{norms.get(s, float('nan')):.5f}") for s, loss in zip(steps, losses)
        )
    print(f"{name}: {len(steps)} steps -> {path.relative_to(ROOT)}", flush=True)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demo_data", type=Path, default=ROOT / "runs" / "demo" / "data")
    p.add_argument("--only", nargs="*", help="record only these curves")
    p.add_argument("--steps", type=int, help="override every run's length (for a quick try)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    if not (args.demo_data / "manifest.json").exists():
        raise SystemExit(f"{args.demo_data}: no data folder (run `make demo` first)")
    for name, command in runs(args.demo_data, args.steps).items():
        if not args.only or name in args.only:
            record(name, command, args.threads)


if __name__ == "__main__":
    main()
