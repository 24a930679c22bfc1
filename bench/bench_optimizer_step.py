"""Muon's per-step cost against AdamW, on CPU: the optimizer step alone and the whole training step.

    .venv/bin/python bench/bench_optimizer_step.py                         # the tiny preset (4 x 128)
    .venv/bin/python bench/bench_optimizer_step.py --n_layer 6 --d_model 256 --seq_len 256 --batch 8

Builds the GPT, then times `optimizer.step()` and a whole step (forward with the chunked loss,
backward, step) for each optimizer kind built by `lit_llm.optim.build_optimizer`, in this process,
median of the timed repeats after warm-up. Muon's extra work is five Newton-Schulz iterations per
hidden matrix (about 20 m^2 n + 10 m^3 FLOPs for an m x n matrix, m <= n); its expected cost at
1B / 8B on GPUs is written down in docs/training_recipe.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from lit_llm.model import GPT, ModelConfig
from lit_llm.optim import OptimizerConfig, build_optimizer


def time_steps(model: GPT, kind: str, x: torch.Tensor, repeats: int) -> tuple[float, float]:
    """Median seconds of optimizer.step() and of a whole training step."""
    optimizer = build_optimizer(model, OptimizerConfig(kind=kind))
    step_times, whole_times = [], []
    for i in range(repeats + 3):
        start = time.perf_counter()
        loss = model(x[:, :-1], labels=x[:, 1:])
        loss.backward()
        before_step = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad()
        end = time.perf_counter()
        if i >= 3:  # warm-up: state allocation, first matmuls
            step_times.append(end - before_step)
            whole_times.append(end - start)
    return float(np.median(step_times)), float(np.median(whole_times))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n_layer", type=int, default=4)
    p.add_argument("--n_head", type=int, default=4)
    p.add_argument("--d_model", type=int, default=128)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--seq_len", type=int, default=256)
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args()
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=args.vocab,
        n_layer=args.n_layer,
        n_head=args.n_head,
        d_model=args.d_model,
        max_seq_len=args.seq_len,
    )
    model = GPT(config)
    x = torch.randint(0, args.vocab, (args.batch, args.seq_len + 1))
    results = {kind: time_steps(model, kind, x, args.repeats) for kind in ("adamw", "muon")}
    print(
        f"GPT {args.n_layer}x{args.d_model}, vocabulary {args.vocab}, batch {args.batch} x {args.seq_len}, "
        f"{torch.get_num_threads()} threads, median of {args.repeats} steps"
    )
    print(f"{'optimizer':<9} {'optimizer.step ms':>18} {'whole step ms':>14}")
    for kind, (step, whole) in results.items():
        print(f"{kind:<9} {step * 1e3:>18.1f} {whole * 1e3:>14.1f}")
    (adam_step, adam_whole), (muon_step, muon_whole) = results["adamw"], results["muon"]
    print(
        f"Muon's optimizer step is {muon_step / adam_step:.1f}x AdamW's; the whole step {muon_whole / adam_whole:.2f}x "
        f"(+{(muon_whole - adam_whole) * 1e3:.1f} ms)"
    )


if __name__ == "__main__":
    main()
