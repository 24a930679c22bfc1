"""Sampler cost per batch as the corpus grows: epoch sampling against random sampling, 1x / 10x / 100x.

    .venv/bin/python bench/bench_sampler.py                       # 4M / 40M / 400M tokens, 3 sources
    .venv/bin/python bench/bench_sampler.py --base_tokens 1000000 --batches 200

Writes synthetic shard folders (random uint16 tokens, three sources weighted 5:3:2, documents of
~2,000 tokens) under a temp folder, then times `TrainWindows.batch(n)` (which sample, which
window, the memory-mapped reads, the tensors) for consecutive batches of one rank, after a warm-up,
in this process. Epoch sampling should cost the same at every corpus size: nothing it computes
grows with the corpus, and it holds no index.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from lit_llm.data.datamodule import LitDataModule
from lit_llm.data.shards import Manifest, write_shard

SOURCES = {"web": 5.0, "code": 3.0, "books": 2.0}


def write_corpus(folder: Path, tokens: int, seed: int = 0) -> Path:
    """A shard folder with `tokens` training tokens split over SOURCES by weight, plus a small val shard."""
    rng = np.random.default_rng(seed)
    entries = []
    total_weight = sum(SOURCES.values())
    for name, weight in {**SOURCES, "val": 0.0}.items():
        count = int(tokens * weight / total_weight) if weight else 50_000
        split = "val" if name == "val" else "train"
        shard_tokens = 16_000_000  # several shards per source at the larger sizes
        for i, start in enumerate(range(0, count, shard_tokens)):
            n = min(shard_tokens, count - start)
            flat = rng.integers(0, 32000, size=n, dtype=np.uint16)
            docs = np.array_split(flat, max(1, n // 2000))
            file = f"{split}/{name}-{i:05d}.bin"
            entries.append(
                {"file": file, "split": split, "source": name, **write_shard(folder / file, docs, np.uint16)}
            )
    Manifest(
        folder,
        {
            "format_version": 1,
            "vocab_size": 32000,
            "dtype": "uint16",
            "num_tokens": sum(e["num_tokens"] for e in entries),
            "num_documents": sum(e["num_documents"] for e in entries),
            "tokenizer": {"path": None, "eos_id": 0, "pad_id": None},
            "sources": [{"name": n, "weight": w} for n, w in SOURCES.items()],
            "shards": entries,
            "filters": {},
            "dedup": {},
        },
    ).save()
    return folder


def time_batches(folder: Path, sampling: str, args) -> tuple[float, float]:
    """Median milliseconds per batch of one rank's stream: the whole batch, and choosing its windows only."""
    dm = LitDataModule(str(folder), seq_len=args.seq_len, batch_size=args.batch, sampling=sampling)
    dm.setup("fit")
    windows = dm.train_windows(0)
    for n in range(20):  # warm-up: maps the shards, fills caches
        windows.batch(n)
    times, choose = [], []
    for n in range(20, 20 + args.batches):
        start = time.perf_counter()
        windows.batch(n)
        times.append(time.perf_counter() - start)
        indices = np.arange(n * args.batch, (n + 1) * args.batch)
        start = time.perf_counter()
        windows.window_offsets(indices)
        choose.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3, float(np.median(choose)) * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base_tokens", type=int, default=4_000_000, help="training tokens of the 1x corpus")
    p.add_argument("--scales", default="1,10,100", help="corpus sizes as multiples of base_tokens")
    p.add_argument("--seq_len", type=int, default=1024)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--batches", type=int, default=300, help="timed batches per corpus and sampler")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-sampler-"))
    try:
        rows = []
        for scale in (int(s) for s in args.scales.split(",")):
            folder = write_corpus(tmp / f"x{scale}", args.base_tokens * scale)
            (epoch, choose), (random, _) = (
                time_batches(folder, "epoch", args),
                time_batches(folder, "random", args),
            )
            rows.append((scale, epoch, choose, random))
            shutil.rmtree(folder)
        print(
            f"batch {args.batch} x {args.seq_len + 1} tokens, 3 sources (5:3:2), median of {args.batches} batches"
        )
        print(
            "whole batch (choose + memory-mapped reads + tensors); 'choose' = the epoch sampler's arithmetic alone"
        )
        print(
            f"{'corpus':>14} {'epoch ms':>9} {'choose ms':>10} {'random ms':>10} {'epoch vs 1x':>12} {'choose vs 1x':>13}"
        )
        for scale, epoch, choose, random in rows:
            print(
                f"{args.base_tokens * scale / 1e6:>9,.1f}M tok {epoch:>9.2f} {choose:>10.2f} {random:>10.2f} "
                f"{epoch / rows[0][1]:>11.2f}x {choose / rows[0][2]:>12.2f}x"
            )
        print(
            f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
