"""Training throughput: `lit-llm fit` against a minimal plain-PyTorch loop, same GPT, batch and data.

    .venv/bin/python bench/bench_training.py                  # ~200 s per side by default
    .venv/bin/python bench/bench_training.py --steps 100 --repeats 1

Both sides run as fresh processes over the same shard folder (a BPE tokenizer trained on
tinyshakespeare when ../shared/data is present, else on standard-library code), the same
Llama-style 4 x 128 model at context 256 and batch 12, AdamW with the kit's parameter groups,
the same LR schedule, gradient clipping and validation interval. Printed:
- per-step overhead: median step time of fit vs the plain loop (target: under 3%),
- end-to-end ratio: plain wall time / fit wall time for the whole run, start-up, data and
  validation included (target: >= 0.9),
- achieved FLOP/s of each against this machine's fp32 matmul peak, measured here.
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

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
ARCH = {"n_layer": 4, "n_head": 4, "n_kv_head": 4, "d_model": 128, "max_seq_len": 256}
SEQ_LEN, BATCH, LR, WARMUP, VAL_EVERY, VAL_BATCHES = 256, 12, 3e-3, 30, 100, 10


def build_data(folder: Path) -> Path:
    """Tokenizer + train/val shards written with the kit's own pieces."""
    import numpy as np

    from lit_llm.data.shards import Manifest, token_dtype, write_shard
    from lit_llm.data.sources import Source
    from lit_llm.data.tokenizer_training import train_tokenizer

    if SHAKESPEARE.exists():
        text = SHAKESPEARE.read_text(encoding="utf-8")
    else:
        import sysconfig

        files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:200]
        text = "\n".join(f.read_text(encoding="utf-8", errors="replace") for f in files)
    corpus = folder / "corpus.txt"
    corpus.write_text(text, encoding="utf-8")
    tok = train_tokenizer(
        [Source(paths=[str(corpus)], kind="text")], folder / "tokenizer", vocab_size=1024, progress=False
    )
    ids = np.array(tok.encode(text), dtype=token_dtype(tok.vocab_size))
    cut = int(len(ids) * 0.9)
    shards = []
    for split, part in (("train", ids[:cut]), ("val", ids[cut:])):
        entry = write_shard(folder / "data" / split / "text.bin", [part], part.dtype)
        shards.append({"file": f"{split}/text.bin", "split": split, "source": "text", **entry})
    Manifest(
        folder / "data",
        {
            "format_version": 1,
            "vocab_size": tok.vocab_size,
            "dtype": ids.dtype.name,
            "tokenizer": {
                "path": str(tok.path),
                "sha256": tok.sha256,
                "eos_id": tok.eos_id,
                "pad_id": tok.pad_id,
            },
            "sources": [{"name": "text", "weight": 1.0}],
            "shards": shards,
        },
    ).save()
    return folder / "data"


def plain_loop(data: str, steps: int, out: str) -> None:
    """The baseline: a bare loop over the same GPT, optimizer, schedule and data windows."""
    import torch
    import torch.nn.functional as F

    from lit_llm.batch import IGNORE_INDEX
    from lit_llm.data.datamodule import LitDataModule, TrainWindows, ValWindows
    from lit_llm.model import GPT, ModelConfig
    from lit_llm.module import LitLLM, ScheduleConfig, lr_factor

    torch.manual_seed(1234)
    dm = LitDataModule(data, seq_len=SEQ_LEN, batch_size=BATCH)
    dm.setup("fit")
    module = LitLLM(ModelConfig(**ARCH), vocab_size=dm.vocab_size)  # for its parameter groups only
    module.configure_model()  # built on the meta device: allocate and initialize the weights
    model: GPT = module.model
    opt = torch.optim.AdamW(module.parameter_groups(), lr=LR, betas=(0.9, 0.95), foreach=True)
    schedule = ScheduleConfig(warmup_steps=WARMUP)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps, schedule))
    train = TrainWindows(dm.train_sets, dm.source_weights, SEQ_LEN, BATCH, dm.seed, 0, 0, 1, [], dm.pad_id)
    val = torch.utils.data.DataLoader(
        ValWindows(dm.val_set, SEQ_LEN, None, None, dm.pad_id), batch_size=BATCH
    )
    stamps = []
    for step in range(steps):
        batch = train.batch(step)
        logits = model(batch["input_ids"])
        loss = F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORE_INDEX)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        stamps.append(time.perf_counter())
        if (step + 1) % VAL_EVERY == 0:
            model.eval()
            with torch.no_grad():
                for i, vb in enumerate(val):
                    if i == VAL_BATCHES:
                        break
                    model(vb["input_ids"])
            model.train()
    Path(out).write_text(json.dumps({"stamps": stamps, "loss": loss.item()}))


def fit_args(data: Path, steps: int, run: Path, timer_config: Path) -> list[str]:
    arch = [x for k, v in ARCH.items() for x in (f"--model.arch.{k}", str(v))]
    return [
        "fit",
        *arch,
        "--config",
        str(timer_config),
        "--data.path",
        str(data),
        "--data.seq_len",
        str(SEQ_LEN),
        "--data.batch_size",
        str(BATCH),
        "--model.optimizer.lr",
        str(LR),
        "--model.schedule.warmup_steps",
        str(WARMUP),
        "--trainer.accelerator",
        "cpu",
        "--trainer.max_steps",
        str(steps),
        "--trainer.val_check_interval",
        str(VAL_EVERY),
        "--trainer.limit_val_batches",
        str(VAL_BATCHES),
        "--trainer.gradient_clip_val",
        "1.0",
        "--trainer.enable_model_summary",
        "false",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.log_every_n_steps",
        "10",
        "--trainer.default_root_dir",
        str(run),
        "--seed_everything",
        "1234",
    ]


def timed(cmd: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'bench'}"}
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return time.perf_counter() - started


def step_time(stamps: list[float]) -> float:
    """Median time between consecutive steps, skipping the first 5 and validation steps."""
    gaps = [
        b - a for i, (a, b) in enumerate(zip(stamps, stamps[1:]), start=1) if i > 5 and (i + 1) % VAL_EVERY
    ]
    return statistics.median(gaps)


def matmul_peak() -> float:
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    for _ in range(3):
        a @ b
    started = time.perf_counter()
    for _ in range(20):
        a @ b
    return 20 * 2 * 2048**3 / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=400, help="optimizer steps per run")
    parser.add_argument("--repeats", type=int, default=1, help="alternating fit/plain pairs")
    parser.add_argument("--plain", nargs=3, metavar=("DATA", "STEPS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain:
        return plain_loop(args.plain[0], int(args.plain[1]), args.plain[2])
    import torch

    from lit_llm.model import GPT, ModelConfig

    tmp = Path(tempfile.mkdtemp(prefix="bench-training-"))
    data = build_data(tmp)
    vocab = json.loads((data / "manifest.json").read_text())["vocab_size"]
    with torch.device("meta"):
        flops_per_step = GPT(ModelConfig(vocab_size=vocab, **ARCH)).flops_per_token(SEQ_LEN) * SEQ_LEN * BATCH
    timer = tmp / "timer.yaml"
    timer.write_text(
        json.dumps(
            {
                "trainer": {
                    "callbacks": [
                        {
                            "class_path": "step_timer.StepTimer",
                            "init_args": {"path": str(tmp / "fit_stamps.json")},
                        }
                    ]
                }
            }
        )
    )
    rows = []
    for r in range(args.repeats):
        fit_wall = timed(
            [sys.executable, "-m", "lit_llm.cli", *fit_args(data, args.steps, tmp / f"run{r}", timer)]
        )
        fit_step = step_time(json.loads((tmp / "fit_stamps.json").read_text())["stamps"])
        plain_wall = timed(
            [sys.executable, __file__, "--plain", str(data), str(args.steps), str(tmp / "plain.json")]
        )
        plain_step = step_time(json.loads((tmp / "plain.json").read_text())["stamps"])
        rows.append((fit_wall, fit_step, plain_wall, plain_step))
    peak = matmul_peak()
    fit_wall, fit_step, plain_wall, plain_step = (statistics.median(c) for c in zip(*rows))
    tokens = SEQ_LEN * BATCH
    print(
        f"model 4x128 ctx {SEQ_LEN} batch {BATCH}, vocab {vocab}, {args.steps} steps, {args.repeats} repeat(s)"
    )
    print(
        f"plain loop  : {plain_step * 1e3:7.1f} ms/step  {tokens / plain_step:8.0f} tok/s  wall {plain_wall:6.1f} s"
    )
    print(
        f"lit-llm fit : {fit_step * 1e3:7.1f} ms/step  {tokens / fit_step:8.0f} tok/s  wall {fit_wall:6.1f} s"
    )
    print(f"per-step overhead of fit: {100 * (fit_step / plain_step - 1):+.1f}%")
    print(f"end-to-end ratio (plain wall / fit wall): {plain_wall / fit_wall:.3f}")
    print(f"fp32 matmul peak here: {peak / 1e9:.1f} GFLOP/s")
    print(
        f"achieved: fit {flops_per_step / fit_step / 1e9:.1f} GFLOP/s = {flops_per_step / fit_step / peak:.2f} of peak;"
        f" plain {flops_per_step / plain_step / 1e9:.1f} GFLOP/s = {flops_per_step / plain_step / peak:.2f}"
    )


if __name__ == "__main__":
    main()
